// Runtime messages (schema/bundle.hpp): round trips, and corrupt or truncated bytes give errors,
// never crashes.
#define BOOST_TEST_MODULE bundle_test
#include <boost/test/unit_test.hpp>

#include <cstring>
#include <random>

#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"

namespace {

const d3::graph& resnet18() {
  static const d3::graph g = [] {
    auto m = d3::builtin_model("resnet18");
    BOOST_REQUIRE_MESSAGE(m.is_ok(), m.message());
    return std::move(m.value());
  }();
  return g;
}

std::vector<int> layers_between(const d3::graph& g, const std::string& first, const std::string& last) {
  auto order = d3::topological_order(g);
  BOOST_REQUIRE(order.is_ok());
  std::vector<int> out;
  bool inside = false;
  for (int l : order.value()) {
    if (g.layers[size_t(l)].name == first) inside = true;
    if (inside) out.push_back(l);
    if (g.layers[size_t(l)].name == last) break;
  }
  return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(bundle_round_trip) {
  d3::tensor a = d3::random_tensor({1, 5, 7, 3}, 1);
  d3::tensor b = d3::random_tensor({2, 1, 1, 10}, 2);
  auto bytes = d3::encode_bundle(0x123456789abcull, 7, {{"a", &a}, {"layer1.0.add@tile1", &b}});
  BOOST_REQUIRE(!bytes.empty());
  BOOST_CHECK_EQUAL(bytes.size() % 8, 0u);
  auto decoded = d3::decode_bundle(bytes.data(), bytes.size());
  BOOST_REQUIRE_MESSAGE(decoded.is_ok(), decoded.message());
  BOOST_CHECK_EQUAL(decoded->request_id, 0x123456789abcull);
  BOOST_CHECK_EQUAL(decoded->plan_version, 7u);
  BOOST_REQUIRE_EQUAL(decoded->tensors.size(), 2u);
  BOOST_CHECK_EQUAL(decoded->tensors[0].name, "a");
  BOOST_CHECK(d3::bitwise_equal(decoded->tensors[0].value, a));
  BOOST_CHECK_EQUAL(decoded->tensors[1].name, "layer1.0.add@tile1");
  BOOST_CHECK(d3::bitwise_equal(decoded->tensors[1].value, b));
  BOOST_CHECK(d3::peek_request_id(bytes.data(), bytes.size()) == 0x123456789abcull);
  BOOST_CHECK_EQUAL(decoded->virtual_ms, 0.0);  // the virtual clock's stamp defaults to 0

  auto stamped = d3::encode_bundle(5, 2, {{"a", &a}}, 1234.5625);
  auto stamped_back = d3::decode_bundle(stamped.data(), stamped.size());
  BOOST_REQUIRE_MESSAGE(stamped_back.is_ok(), stamped_back.message());
  BOOST_CHECK_EQUAL(stamped_back->virtual_ms, 1234.5625);
  BOOST_CHECK(d3::bitwise_equal(stamped_back->tensors[0].value, a));

  auto empty = d3::encode_bundle(1, 1, {});
  auto e = d3::decode_bundle(empty.data(), empty.size());
  BOOST_REQUIRE(e.is_ok());
  BOOST_CHECK(e->tensors.empty());
}

// The virtual clock stamps a bundle after encoding it: the stamp changes and nothing else does.
BOOST_AUTO_TEST_CASE(a_bundle_is_stamped_in_place) {
  d3::tensor a = d3::random_tensor({1, 9, 4, 5}, 3);
  for (double at : {0.0, 17.25, 1e9, -3.5}) {
    auto bytes = d3::encode_bundle(42, 3, {{"a", &a}}, 99.0);
    const std::vector<uint8_t> before = bytes;
    BOOST_REQUIRE(d3::set_bundle_virtual_ms(bytes, at).is_ok());
    auto back = d3::decode_bundle(bytes.data(), bytes.size());
    BOOST_REQUIRE_MESSAGE(back.is_ok(), back.message());
    BOOST_CHECK_EQUAL(back->virtual_ms, at);
    BOOST_CHECK_EQUAL(back->request_id, 42u);
    BOOST_CHECK(d3::bitwise_equal(back->tensors.at(0).value, a));
    size_t differing = 0;
    for (size_t i = 0; i < bytes.size(); ++i) differing += bytes[i] != before[i];
    BOOST_CHECK_LE(differing, sizeof(double));
  }
  std::vector<uint8_t> junk(24, 0xff);
  BOOST_CHECK(!d3::set_bundle_virtual_ms(junk, 1.0).is_ok());
  std::vector<uint8_t> none;
  BOOST_CHECK(!d3::set_bundle_virtual_ms(none, 1.0).is_ok());
}

BOOST_AUTO_TEST_CASE(corrupt_bundles_are_errors) {
  d3::tensor a = d3::random_tensor({1, 4, 4, 8}, 3);
  auto bytes = d3::encode_bundle(99, 1, {{"x", &a}, {"y", &a}});
  BOOST_CHECK(!d3::decode_bundle(nullptr, 0).is_ok());
  for (size_t cut = 0; cut < bytes.size(); cut += 1) {
    auto r = d3::decode_bundle(bytes.data(), cut);
    BOOST_CHECK_MESSAGE(!r.is_ok(), "a bundle cut to " << cut << " bytes decoded");
  }
  std::mt19937 rng(5);
  int decoded = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    auto copy = bytes;
    for (int k = 0; k < 1 + trial % 4; ++k) copy[rng() % copy.size()] ^= uint8_t(1u << (rng() % 8));
    auto r = d3::decode_bundle(copy.data(), copy.size());
    if (r.is_ok()) {
      ++decoded;  // a flip in the floats is still a valid bundle; sizes must stay consistent
      for (const auto& t : r->tensors) BOOST_CHECK_EQUAL(t.value.bytes(), t.value.shape().bytes());
    }
  }
  BOOST_TEST_MESSAGE(decoded << " of 3000 mutated bundles still decoded (flips inside the data)");
  // The same tensor twice is refused.
  auto twice = d3::encode_bundle(1, 1, {{"x", &a}, {"x", &a}});
  BOOST_CHECK(!d3::decode_bundle(twice.data(), twice.size()).is_ok());
}

BOOST_AUTO_TEST_CASE(layer_shipment_round_trip) {
  const d3::graph& g = resnet18();
  const uint64_t hash = d3::model_hash(g);
  const std::vector<int> layers = layers_between(g, "layer1.0.conv1", "layer1.1.add");
  auto bytes = d3::encode_layers(g, layers, hash, layers);
  BOOST_REQUIRE(!bytes.empty());
  auto s = d3::decode_shipment(bytes.data(), bytes.size());
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  BOOST_CHECK_EQUAL(s->model_hash, hash);
  // One stand-in input (maxpool), then the layers; the fragment is a valid graph.
  BOOST_REQUIRE_EQUAL(s->fragment.layers.size(), layers.size() + 1);
  BOOST_CHECK_EQUAL(s->fragment.layers[0].name, "maxpool");
  BOOST_CHECK(s->fragment.layers[0].kind == d3::layer_kind::input);
  BOOST_REQUIRE(d3::infer_shapes(s->fragment).is_ok());
  for (size_t i = 0; i < layers.size(); ++i) {
    const d3::layer& want = g.layers[size_t(layers[i])];
    const d3::layer& got = s->fragment.layers[i + 1];
    BOOST_CHECK_EQUAL(got.name, want.name);
    BOOST_CHECK(got.output_shape == want.output_shape);
    BOOST_REQUIRE_EQUAL(got.weights.size(), want.weights.size());
    if (!want.weights.empty())  // memcmp of null pointers is undefined even for 0 bytes
      BOOST_CHECK(std::memcmp(got.weights.data(), want.weights.data(), want.weights.size() * 4) == 0);
    BOOST_CHECK(s->weights_included[i + 1]);
  }
  BOOST_REQUIRE_EQUAL(s->fragment.outputs.size(), 1u);
  BOOST_CHECK_EQUAL(s->fragment.layers[size_t(s->fragment.outputs[0])].name, "layer1.1.add");

  // Without weights: structure only.
  auto light = d3::encode_layers(g, layers, hash, {});
  BOOST_CHECK_LT(light.size(), 8192u);
  auto l = d3::decode_shipment(light.data(), light.size());
  BOOST_REQUIRE(l.is_ok());
  for (size_t i = 0; i < l->fragment.layers.size(); ++i) {
    BOOST_CHECK(!l->weights_included[i]);
    BOOST_CHECK(l->fragment.layers[i].weights.empty());
  }

  for (size_t cut = 0; cut < light.size(); cut += 8)
    BOOST_CHECK(!d3::decode_shipment(light.data(), cut).is_ok());
  std::mt19937 rng(9);
  for (int trial = 0; trial < 2000; ++trial) {
    auto copy = light;
    copy[rng() % copy.size()] ^= uint8_t(1u << (rng() % 8));
    auto r = d3::decode_shipment(copy.data(), copy.size());
    if (r.is_ok()) (void)d3::infer_shapes(r->fragment);  // must not crash either
  }
}

BOOST_AUTO_TEST_CASE(model_hash_identifies_the_weights) {
  auto a = d3::builtin_model("resnet18", 1);
  auto b = d3::builtin_model("resnet18", 1);
  auto c = d3::builtin_model("resnet18", 2);
  BOOST_REQUIRE(a.is_ok() && b.is_ok() && c.is_ok());
  BOOST_CHECK_EQUAL(d3::model_hash(a.value()), d3::model_hash(b.value()));
  BOOST_CHECK_NE(d3::model_hash(a.value()), d3::model_hash(c.value()));
}

BOOST_AUTO_TEST_CASE(stage_spec_round_trip) {
  const d3::graph& g = resnet18();
  d3::stage_spec spec;
  spec.stage_id = 3;
  spec.type = d3::stage_kind::tile;
  spec.plan_version = 2;
  spec.model_hash = 77;
  spec.inputs = {"maxpool@tile1"};
  spec.outputs = {"layer2.1.add@tile1"};
  spec.fragment = d3::make_fragment(g, layers_between(g, "layer1.0.conv1", "layer2.1.add"), 77, {});
  spec.tile_index = 1;
  spec.grid_row_bounds = {0, 14, 28};
  spec.grid_col_bounds = {0, 28};
  spec.tile_input_regions = {d3::region{20, 56, 0, 56}};
  spec.tile_output_region = d3::region{14, 28, 0, 28};
  spec.copies = {{"a", "a@tile0", d3::region{0, 1, 0, 2}}};
  auto bytes = d3::encode_stage_spec(spec);
  BOOST_REQUIRE(!bytes.empty());
  auto s = d3::decode_stage_spec(bytes.data(), bytes.size());
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  BOOST_CHECK(s->type == d3::stage_kind::tile);
  BOOST_CHECK_EQUAL(s->stage_id, 3);
  BOOST_CHECK_EQUAL(s->plan_version, 2u);
  BOOST_CHECK(s->inputs == spec.inputs);
  BOOST_CHECK(s->outputs == spec.outputs);
  BOOST_CHECK(s->grid_row_bounds == spec.grid_row_bounds);
  BOOST_CHECK(s->tile_input_regions.at(0) == spec.tile_input_regions[0]);
  BOOST_CHECK(s->tile_output_region == spec.tile_output_region);
  BOOST_CHECK_EQUAL(s->fragment.fragment.layers.size(), spec.fragment.fragment.layers.size());
  BOOST_CHECK_EQUAL(s->copies.at(0).part, "a@tile0");
  for (size_t cut = 0; cut < bytes.size(); cut += 8) BOOST_CHECK(!d3::decode_stage_spec(bytes.data(), cut).is_ok());
}
