// The node's layer cache under a budget: least recently used layers that no stage holds are
// evicted to make room; layers a stage holds are never evicted, and a shipment that cannot fit
// is refused with the sizes, leaving the cache as it was.
#define BOOST_TEST_MODULE layer_cache
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cstring>

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

// What a node relays to a peer (layer_cache::extract): the cached layers, re-encoded with the
// tensors they read, store on the peer with the same weights, bit for bit, and the same shapes;
// a layer read by another extracted layer is wired to it, not duplicated as an input.
BOOST_AUTO_TEST_CASE(extracted_layers_store_on_another_cache_with_the_same_weights) {
  alexnet_layers a;
  // Every layer of the model, shipped in one piece (the weighted ones with their weights).
  std::vector<int> all, weighted;
  for (size_t l = 0; l < a.g.layers.size(); ++l)
    if (a.g.layers[l].kind != layer_kind::input) {
      all.push_back(int(l));
      if (weight_bytes(a.g.layers[l]) > 0) weighted.push_back(int(l));
    }
  const std::vector<uint8_t> bytes = encode_layers(a.g, all, 7, weighted);
  auto decoded = decode_shipment(bytes.data(), bytes.size());
  BOOST_REQUIRE(decoded.is_ok());
  layer_cache source;
  BOOST_REQUIRE(source.store(std::move(decoded.value())).is_ok());
  // The last three weighted layers (alexnet's fully connected ones, each reading the one before
  // through an activation or directly).
  std::vector<std::string> names;
  for (size_t k = weighted.size() - 3; k < weighted.size(); ++k) names.push_back(a.g.layers[size_t(weighted[k])].name);
  auto extracted = source.extract(7, names);
  BOOST_REQUIRE_MESSAGE(extracted.is_ok(), extracted.message());
  const std::vector<uint8_t> wire = encode_shipment(extracted.value());
  auto received = decode_shipment(wire.data(), wire.size());
  BOOST_REQUIRE_MESSAGE(received.is_ok(), received.message());
  layer_cache peer;
  auto stored = peer.store(std::move(received.value()));
  BOOST_REQUIRE_MESSAGE(stored.is_ok(), stored.message());
  BOOST_TEST(stored.value() == names.size());
  for (const std::string& name : names) {
    const layer& original = a.g.layers[size_t(a.g.find(name))];
    auto copy = peer.find(7, name);
    BOOST_REQUIRE(copy.has_value());
    BOOST_TEST(copy->output_shape.c == original.output_shape.c);
    BOOST_REQUIRE_EQUAL(copy->weights.size(), original.weights.size());
    BOOST_TEST(std::memcmp(copy->weights.data(), original.weights.data(), original.weights.size() * sizeof(float)) == 0);
    BOOST_REQUIRE_EQUAL(copy->bias.size(), original.bias.size());
    BOOST_TEST(std::memcmp(copy->bias.data(), original.bias.data(), original.bias.size() * sizeof(float)) == 0);
  }
  // Inputs: only tensors produced outside the three layers.
  for (size_t i = 0; i < extracted->fragment.layers.size(); ++i)
    if (extracted->fragment.layers[i].kind == layer_kind::input)
      BOOST_TEST(std::count(names.begin(), names.end(), extracted->fragment.layers[i].name) == 0);
  // What is not cached, or out of execution order, is named.
  auto missing = peer.extract(7, {a.g.layers[size_t(weighted[0])].name});
  BOOST_REQUIRE(!missing.is_ok());
  BOOST_TEST(missing.message().find(a.g.layers[size_t(weighted[0])].name) != std::string::npos);
  const std::vector<std::string> reversed(names.rbegin(), names.rend());
  auto disordered = source.extract(7, reversed);
  BOOST_TEST(!disordered.is_ok());
}
