// The node's layer cache under a budget: least recently used layers that no stage holds are
// evicted to make room; layers a stage holds are never evicted, and a shipment that cannot fit
// is refused with the sizes, leaving the cache as it was.
#define BOOST_TEST_MODULE layer_cache
#include <boost/test/unit_test.hpp>

#include <algorithm>

#include "actors/layer_cache.hpp"
#include "tests/test_models.hpp"
#include "schema/bundle.hpp"

using namespace d3;

namespace {

struct alexnet_layers {
  graph g;
  std::vector<int> convolutions;  // computed layers with weights, smallest first
  alexnet_layers() {
    g = d3::testing::load_model("alexnet");
    for (size_t l = 0; l < g.layers.size(); ++l)
      if (g.layers[l].kind == layer_kind::convolution) convolutions.push_back(int(l));
    BOOST_REQUIRE(convolutions.size() >= 3);
    std::sort(convolutions.begin(), convolutions.end(),
              [&](int x, int y) { return weight_bytes(g.layers[size_t(x)]) < weight_bytes(g.layers[size_t(y)]); });
  }
  // As a node gets it: decoded from the wire (its own copy of the weights).
  layer_shipment ship(int l) const {
    const std::vector<uint8_t> bytes = encode_layers(g, {l}, 7, {l});
    auto decoded = decode_shipment(bytes.data(), bytes.size());
    BOOST_REQUIRE(decoded.is_ok());
    return std::move(decoded.value());
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(the_least_recently_used_free_layer_is_evicted_first) {
  alexnet_layers a;
  layer_cache cache;
  const auto& c = a.convolutions;
  const size_t b1 = weight_bytes(a.g.layers[size_t(c[1])]), b2 = weight_bytes(a.g.layers[size_t(c[2])]);
  cache.set_budget(b1 + b2);  // c0 and c1 fit; with c2, one of them must go
  BOOST_REQUIRE(cache.store(a.ship(c[0])).is_ok());
  BOOST_REQUIRE(cache.store(a.ship(c[1])).is_ok());
  BOOST_REQUIRE(cache.find(7, a.g.layers[size_t(c[0])].name).has_value());  // c0 used since: c1 is older now
  auto third = cache.store(a.ship(c[2]));
  BOOST_REQUIRE_MESSAGE(third.is_ok(), third.message());
  BOOST_TEST(cache.evicted() >= 1u);
  BOOST_TEST(!cache.find(7, a.g.layers[size_t(c[1])].name).has_value());
  BOOST_TEST(cache.weight_bytes() <= cache.budget());
}

BOOST_AUTO_TEST_CASE(layers_a_stage_holds_are_kept_and_a_shipment_that_cannot_fit_is_refused) {
  alexnet_layers a;
  layer_cache cache;
  const auto& c = a.convolutions;
  const size_t b1 = weight_bytes(a.g.layers[size_t(c[1])]), b2 = weight_bytes(a.g.layers[size_t(c[2])]);
  cache.set_budget(b1 + b2);
  BOOST_REQUIRE(cache.store(a.ship(c[1])).is_ok());
  BOOST_REQUIRE(cache.store(a.ship(c[2])).is_ok());
  // A stage built from both holds their weights (shared with the cache).
  auto held1 = cache.find(7, a.g.layers[size_t(c[1])].name);
  auto held2 = cache.find(7, a.g.layers[size_t(c[2])].name);
  BOOST_REQUIRE(held1 && held2);
  const size_t before = cache.weight_bytes();
  auto refused = cache.store(a.ship(c[0]));
  BOOST_REQUIRE(!refused.is_ok());
  BOOST_TEST(refused.message().find("budget") != std::string::npos, refused.message());
  BOOST_TEST(cache.weight_bytes() == before);
  BOOST_TEST(cache.find(7, a.g.layers[size_t(c[1])].name).has_value());
  // The stage goes: its layers can go too.
  held1.reset();
  held2.reset();
  BOOST_TEST(cache.store(a.ship(c[0])).is_ok());
}

BOOST_AUTO_TEST_CASE(no_budget_keeps_everything) {
  alexnet_layers a;
  layer_cache cache;
  for (int l : a.convolutions) BOOST_REQUIRE(cache.store(a.ship(l)).is_ok());
  BOOST_TEST(cache.layer_count() == a.convolutions.size());
  BOOST_TEST(cache.evicted() == 0u);
}
