// The planner's codec choice (planner/codec_choice.hpp) on resnet18 with measured ratios and codec
// costs: encoded crossings where links are slow, none where they are fast, 8-bit images as u8 on
// the first hop, and never a plan predicted slower with its codecs than without; the cost model
// prices the encoded bytes.
#define BOOST_TEST_MODULE codec_choice_test
#include <boost/test/unit_test.hpp>

#include "kernels/model_zoo.hpp"
#include "planner/codec_choice.hpp"
#include "planner/cost_model.hpp"
#include "profiling/message_costs.hpp"

using namespace d3;

namespace {

struct fixture_model {
  graph g;
  layer_profile profile;
};

fixture_model resnet18(bool images) {
  fixture_model m;
  auto g = builtin_model("resnet18");
  BOOST_REQUIRE(g.is_ok());
  m.g = std::move(g.value());
  if (images) BOOST_REQUIRE(add_image_preprocess(m.g).is_ok());
  m.profile = profile_from_flops(m.g, 50.0);
  auto costs = measure_message_costs(3);
  BOOST_REQUIRE_MESSAGE(costs.is_ok(), costs.message());
  m.profile.messages = costs.value();
  BOOST_REQUIRE(measure_codec_ratios(m.g, m.profile).is_ok());
  return m;
}

// device conv1..maxpool (with preprocess when there), edge1 layer1..layer2, cloud the rest.
deployment_plan three_tier(bool images) {
  deployment_plan p;
  p.segments = {{"device", images ? "preprocess" : "conv1", "maxpool"},
                {"edge1", "layer1.0.conv1", "layer2.1.add"},
                {"cloud", "layer3.0.conv1", "fc"}};
  return p;
}

cluster_model cluster_with(double device_edge_mbit, double edge_cloud_mbit) {
  testbed t;
  t.device_edge = {device_edge_mbit, 5.0};
  t.edge_cloud = {edge_cloud_mbit, 20.0};
  return cluster_model::evaluation(t, 2);
}

const plan_codec* find(const std::vector<plan_codec>& codecs, const std::string& tensor, const std::string& to) {
  for (const plan_codec& c : codecs)
    if (c.tensor == tensor && c.to == to) return &c;
  return nullptr;
}

}  // namespace

BOOST_AUTO_TEST_CASE(ratios_are_measured_per_tensor) {
  fixture_model m = resnet18(true);
  // A convolution with its ReLU fused: about half its values are exact zeros.
  const int relu = m.g.find("layer1.0.conv1");
  BOOST_REQUIRE(relu >= 0);
  BOOST_TEST(m.profile.fraction(relu, tensor_codec::sparse) > 0.3);
  BOOST_TEST(m.profile.fraction(relu, tensor_codec::sparse) < 0.6);
  BOOST_TEST(m.profile.fraction(relu, tensor_codec::u8) == 0.0);  // not 8-bit values
  // Max pooling keeps few zeros (a window's maximum): sparse does not shrink it, zstd a little.
  const int pool = m.g.find("maxpool");
  BOOST_TEST(m.profile.fraction(pool, tensor_codec::sparse) > 1.0);
  BOOST_TEST(m.profile.fraction(pool, tensor_codec::zstd) < 1.0);
  const int input = m.g.input_layers()[0];
  BOOST_TEST(m.profile.fraction(input, tensor_codec::u8) == 0.25);  // pixels
  BOOST_TEST(m.profile.fraction(input, tensor_codec::raw) == 1.0);
  BOOST_TEST(m.profile.messages.codec_encode_ms_per_mb[size_t(tensor_codec::sparse)] > 0.0);
}

BOOST_AUTO_TEST_CASE(slow_links_get_codecs_fast_links_none) {
  fixture_model m = resnet18(false);
  auto sg = build_stage_graph(m.g, three_tier(false));
  BOOST_REQUIRE(sg.is_ok());
  // 1 Mbit/s everywhere: every post-ReLU crossing is worth encoding.
  auto slow = choose_codecs(m.g, *sg, m.profile, cluster_with(1.0, 1.0));
  BOOST_REQUIRE(slow.is_ok());
  const plan_codec* first = find(*slow, "maxpool", "edge1");
  BOOST_REQUIRE(first != nullptr);
  BOOST_TEST(first->codec != tensor_codec::raw);
  // 10 Gbit/s links: the transfer takes less than the codec's own work, so raw.
  auto fast = choose_codecs(m.g, *sg, m.profile, cluster_with(10000.0, 10000.0));
  BOOST_REQUIRE(fast.is_ok());
  BOOST_TEST(fast->empty());
}

BOOST_AUTO_TEST_CASE(codecs_are_never_predicted_slower) {
  fixture_model m = resnet18(true);
  for (double mbit : {0.13, 1.1, 5.85, 18.88, 100.0, 1000.0, 10000.0}) {
    const cluster_model cluster = cluster_with(mbit, mbit);
    for (bool device_first : {true, false}) {
      deployment_plan plan = three_tier(true);
      if (!device_first) {  // everything offloaded: the image crosses the first hop
        plan.segments = {{"edge1", "preprocess", "layer2.1.add"}, {"cloud", "layer3.0.conv1", "fc"}};
      }
      auto encoded = with_codecs(m.g, plan, m.profile, cluster);
      BOOST_REQUIRE_MESSAGE(encoded.is_ok(), encoded.message());
      auto raw_sg = build_stage_graph(m.g, plan);
      auto enc_sg = build_stage_graph(m.g, *encoded);
      BOOST_REQUIRE(raw_sg.is_ok());
      BOOST_REQUIRE(enc_sg.is_ok());
      auto raw = predict_plan(m.g, *raw_sg, m.profile, cluster);
      auto with = predict_plan(m.g, *enc_sg, m.profile, cluster);
      BOOST_REQUIRE(raw.is_ok());
      BOOST_REQUIRE(with.is_ok());
      BOOST_TEST(with->latency_ms <= raw->latency_ms, mbit << " Mbit/s");
      if (!device_first && mbit <= 100.0) {
        // The 8-bit image on the first hop: 4x fewer bytes.
        const plan_codec* image = find(encoded->codecs, m.g.layers[size_t(m.g.input_layers()[0])].name, "edge1");
        BOOST_REQUIRE_MESSAGE(image != nullptr, mbit << " Mbit/s");
        BOOST_TEST((image->codec == tensor_codec::u8));
        size_t first_hop_raw = 0, first_hop_encoded = 0;
        for (const link_bytes& b : raw->bytes)
          if (b.from == "device" && b.to == "edge1") first_hop_raw = b.bytes;
        for (const link_bytes& b : with->bytes)
          if (b.from == "device" && b.to == "edge1") first_hop_encoded = b.bytes;
        BOOST_TEST(first_hop_raw == 4 * first_hop_encoded);
      }
    }
  }
}
