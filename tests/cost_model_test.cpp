#define BOOST_TEST_MODULE cost_model
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <map>

#include "plan/plan.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/cost_model.hpp"

using namespace d3;

namespace {

graph load(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

stage_graph stages(const graph& g, const std::string& json) {
  auto plan = parse_plan_json(json);
  BOOST_REQUIRE_MESSAGE(plan.is_ok(), plan.message());
  auto sg = build_stage_graph(g, *plan);
  BOOST_REQUIRE_MESSAGE(sg.is_ok(), sg.message());
  return std::move(sg.value());
}

plan_prediction predict(const graph& g, const stage_graph& sg, const layer_profile& p, const cluster_model& c) {
  auto prediction = predict_plan(g, sg, p, c);
  BOOST_REQUIRE_MESSAGE(prediction.is_ok(), prediction.message());
  return prediction.value();
}

}  // namespace

BOOST_AUTO_TEST_CASE(single_tier_plans_match_hand_arithmetic) {
  graph g = load("resnet18");
  const layer_profile profile = profile_from_flops(g, 100.0);  // 100 GFLOP/s at speed 1
  const cluster_model wifi = cluster_model::evaluation(*testbed::with_uplink("WiFi"));
  // Device only: no transfer, compute at speed 0.1.
  plan_prediction device = predict(g, stages(g, R"({"segments": [{"node": "device", "first": "conv1", "last": "fc"}]})"),
                                   profile, wifi);
  BOOST_TEST(std::fabs(device.latency_ms - profile.total() / 0.1) < 1e-6 * device.latency_ms);
  BOOST_TEST(device.bytes.empty());
  // Cloud only: the image over the uplink and backbone (18.88 Mbit/s, 5 + 20 ms), compute at
  // speed 4, logits back the same way.
  plan_prediction cloud = predict(g, stages(g, R"({"segments": [{"node": "cloud", "first": "conv1", "last": "fc"}]})"),
                                  profile, wifi);
  const double up = 25.0 + 8.0 * 602112 / 18880.0, down = 25.0 + 8.0 * 4000 / 18880.0;
  const double expected = up + profile.total() / 4.0 + down;
  BOOST_TEST(std::fabs(cloud.latency_ms - expected) < 1e-6 * expected, cloud.latency_ms << " vs " << expected);
  // A slower uplink makes the cloud worse and leaves the device alone.
  const cluster_model cat1 = cluster_model::evaluation(*testbed::with_uplink("CAT1"));
  BOOST_TEST(predict(g, stages(g, R"({"segments": [{"node": "cloud", "first": "conv1", "last": "fc"}]})"), profile, cat1)
                 .latency_ms > 10 * cloud.latency_ms);
}

BOOST_AUTO_TEST_CASE(three_tier_bytes_agree_with_the_stage_graph) {
  graph g = load("resnet18");
  const layer_profile profile = profile_from_flops(g, 100.0);
  const cluster_model wifi = cluster_model::evaluation(*testbed::with_uplink("WiFi"));
  stage_graph sg = stages(g, R"({
    "segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                 {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
                 {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}],
    "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer2.1.add", "grid": "2x1", "nodes": ["edge1", "edge2"]}]})");
  plan_prediction p = predict(g, sg, profile, wifi);
  std::map<std::pair<std::string, std::string>, size_t> predicted, counted;
  for (const link_bytes& b : p.bytes) predicted[{b.from, b.to}] = b.bytes;
  for (const link_bytes& b : bytes_between_nodes(g, sg, "device")) counted[{b.from, b.to}] = b.bytes;
  BOOST_TEST((predicted == counted));
  // The two tiles run in parallel on two edges: the edge part takes about half the untiled time.
  stage_graph untiled = stages(g, R"({
    "segments": [{"node": "device", "first": "conv1", "last": "maxpool"},
                 {"node": "edge1", "first": "layer1.0.conv1", "last": "layer2.1.add"},
                 {"node": "cloud", "first": "layer3.0.conv1", "last": "fc"}]})");
  plan_prediction q = predict(g, untiled, profile, wifi);
  BOOST_TEST(p.stage_finish_ms.size() == sg.stages.size());
  // Both start the edge part at the same time once the device is done; compare edge finish times.
  const double tiled_edge = std::max(p.stage_finish_ms[2], p.stage_finish_ms[3]) - p.stage_finish_ms[0];
  const double untiled_edge = q.stage_finish_ms[1] - q.stage_finish_ms[0];
  BOOST_TEST(tiled_edge < 0.75 * untiled_edge, tiled_edge << " vs " << untiled_edge);
}

BOOST_AUTO_TEST_CASE(unknown_nodes_are_named) {
  graph g = load("alexnet");
  auto sg = stages(g, R"({"segments": [{"node": "phone", "first": "features.0", "last": "classifier.6"}]})");
  auto p = predict_plan(g, sg, profile_from_flops(g, 100), cluster_model::evaluation(*testbed::with_uplink("4G")));
  BOOST_TEST(!p.is_ok());
  BOOST_TEST(p.message().find("'phone'") != std::string::npos);
}

// Moving tensors costs the nodes what their profile says, per bundle and per byte, at their speed:
// device|cloud resnet18 split after layer1 (one bundle each way between them, the app's input
// and the logits), and a tiled run's scatter and gather copies.
BOOST_AUTO_TEST_CASE(bundles_and_copies_are_priced_per_message_and_byte) {
  graph g = load("resnet18");
  layer_profile profile = profile_from_flops(g, 100.0);
  const cluster_model wifi = cluster_model::evaluation(*testbed::with_uplink("WiFi"));
  const stage_graph split = stages(g, R"({"segments": [{"node": "device", "first": "conv1", "last": "layer1.1.add"},
                                                      {"node": "cloud", "first": "layer2.0.conv1", "last": "fc"}]})");
  const double free_ms = predict(g, split, profile, wifi).latency_ms;
  profile.messages = {0.5, 2.0, 0.25, 3.0, 7.0};  // encode 0.5 ms + 2 ms/MB, decode 0.25 + 3 ms/MB
  const double priced_ms = predict(g, split, profile, wifi).latency_ms;
  const double image = 602112e-6, boundary = 56 * 56 * 64 * 4e-6, logits = 4000e-6;  // MB
  const double device = (0.25 + 3.0 * image) + (0.5 + 2.0 * boundary);  // decode the input, encode the cut
  const double cloud = (0.25 + 3.0 * boundary) + (0.5 + 2.0 * logits);  // decode the cut, encode the logits
  const double expected = device / 0.1 + cloud / 4.0;
  BOOST_TEST(std::fabs((priced_ms - free_ms) - expected) < 1e-9 * priced_ms, priced_ms - free_ms << " vs " << expected);

  // A tiled run's scatter copies the tiles' input regions, its gather fills the run's output.
  const stage_graph tiled = stages(g, R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}],
      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer1.1.add", "grid": "2x1", "nodes": ["edge1", "edge2"]}]})");
  profile.messages = {};
  const plan_prediction before = predict(g, tiled, profile, wifi);
  profile.messages.copy_ms_per_mb = 10.0;
  const plan_prediction after = predict(g, tiled, profile, wifi);
  size_t scattered = 0;
  for (const stage& s : tiled.stages)
    if (s.kind == stage_kind::scatter)
      for (const std::string& part : s.outputs) scattered += tensor_bytes(g, tiled, part);
  const double copies = 10.0 * (double(scattered) + 56 * 56 * 64 * 4) * 1e-6 / 0.5;  // at edge speed 0.5
  BOOST_TEST(scattered > size_t(56 * 56 * 64 * 4));  // halos: the parts overlap
  BOOST_TEST(std::fabs((after.latency_ms - before.latency_ms) - copies) < 1e-9 * after.latency_ms,
             after.latency_ms - before.latency_ms << " vs " << copies);
}

BOOST_AUTO_TEST_CASE(the_receivers_transport_work_is_paid_while_the_bytes_arrive) {
  graph g = load("resnet18");
  layer_profile profile = profile_from_flops(g, 100.0);
  const cluster_model wifi = cluster_model::evaluation(*testbed::with_uplink("WiFi"));
  const stage_graph device = stages(g, R"({"segments": [{"node": "device", "first": "conv1", "last": "fc"}]})");
  const stage_graph cloud = stages(g, R"({"segments": [{"node": "cloud", "first": "conv1", "last": "fc"}]})");
  const double device_free = predict(g, device, profile, wifi).latency_ms;
  const double cloud_free = predict(g, cloud, profile, wifi).latency_ms;
  const double image = 602112e-6, logits = 4000e-6;  // MB
  // 2 ms per MB at speed 1: the app's input to the device (speed 0.1) costs it 20 ms per MB and
  // crosses no link; the cloud's uplink (18.88 Mbit/s) is far slower than the cloud (speed 4)
  // and the device receive.
  profile.messages.receive_ms_per_mb = 2.0;
  const plan_prediction on_device = predict(g, device, profile, wifi);
  BOOST_TEST(on_device.latency_ms - device_free == image * 2.0 / 0.1, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(on_device.bytes.empty());  // no link carried it
  BOOST_TEST(predict(g, cloud, profile, wifi).latency_ms == cloud_free, boost::test_tools::tolerance(1e-12));
  // 2000 ms per MB: the cloud receives the image at 500 ms per MB (301 ms, the link's 255 ms) and
  // the device the logits at 20000 ms per MB (80 ms, the link's 1.7 ms).
  profile.messages.receive_ms_per_mb = 2000.0;
  const double up = 25.0 + image * 500.0, down = 25.0 + logits * 20000.0;
  const double expected = up + profile.total() / 4.0 + down;
  BOOST_TEST(predict(g, cloud, profile, wifi).latency_ms == expected, boost::test_tools::tolerance(1e-9));
}

// A tile's layers cost their share of the output plus the run's measured overhead on the rest
// (layer_profile::tile_overhead); segments are untouched by it.
BOOST_AUTO_TEST_CASE(tiles_cost_their_share_plus_the_measured_overhead) {
  graph g = load("resnet18");
  layer_profile profile = profile_from_flops(g, 100.0);
  const cluster_model wifi = cluster_model::evaluation(*testbed::with_uplink("WiFi"));
  const stage_graph tiled = stages(g, R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}],
      "tiled_runs": [{"first": "layer1.0.conv1", "last": "layer1.1.add", "grid": "2x2",
                      "nodes": ["edge1", "edge2", "edge3", "edge4"]}]})");
  const plan_prediction area = predict(g, tiled, profile, wifi);
  const double a = 0.2;
  profile.tile_overhead.assign(g.layers.size(), a);
  const plan_prediction overhead = predict(g, tiled, profile, wifi);
  // Every tile stage finishes later by its layers' a * (1 - share) * ms / speed, its own start
  // unchanged (the scatter before it is not a tile); the edges run at 0.5.
  int tiles = 0;
  for (const stage& s : tiled.stages) {
    if (s.kind != stage_kind::tile) continue;
    ++tiles;
    const std::vector<double> shares = layer_shares(g, tiled, s);
    double extra = 0;
    for (size_t k = 0; k < shares.size(); ++k) {
      BOOST_TEST(shares[k] < 1.0);
      extra += profile.milliseconds[size_t(s.layers[k])] * a * (1.0 - shares[k]) / 0.5;
    }
    const double got = overhead.stage_finish_ms[size_t(s.id)] - area.stage_finish_ms[size_t(s.id)];
    BOOST_TEST(std::fabs(got - extra) < 1e-9 * overhead.latency_ms, "tile " << s.tile << ": " << got << " vs " << extra);
  }
  BOOST_TEST(tiles == 4);
  BOOST_TEST(overhead.latency_ms > area.latency_ms);
  // Untiled, nothing changes.
  const stage_graph whole = stages(g, R"({"segments": [{"node": "edge1", "first": "conv1", "last": "fc"}]})");
  profile.tile_overhead.clear();
  const double before = predict(g, whole, profile, wifi).latency_ms;
  profile.tile_overhead.assign(g.layers.size(), a);
  BOOST_TEST(predict(g, whole, profile, wifi).latency_ms == before);
}

BOOST_AUTO_TEST_CASE(a_tiles_cost_is_bounded) {
  layer_profile profile;
  profile.milliseconds = {0.0, 1.0, 1.0};
  BOOST_TEST(profile.tile_cost(1, 0.25) == 0.25);  // not measured: the area share
  profile.tile_overhead = {0.0, 0.2, -0.9};
  BOOST_TEST(std::fabs(profile.tile_cost(1, 0.25) - (0.25 + 0.2 * 0.75)) < 1e-12);
  BOOST_TEST(profile.tile_cost(1, 1.0) == 1.0);
  BOOST_TEST(profile.tile_cost(2, 0.25) == 0.125);  // at least half the share
  profile.tile_overhead[1] = 5.0;
  BOOST_TEST(profile.tile_cost(1, 0.25) == 1.0);  // at most the whole layer
  BOOST_TEST(profile.tile_cost(7, 0.5) == 0.5);   // a layer beyond the vector
}
