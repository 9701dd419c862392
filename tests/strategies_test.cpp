#define BOOST_TEST_MODULE strategies
#include <boost/test/unit_test.hpp>

#include "kernels/model_zoo.hpp"
#include "planner/strategies.hpp"

using namespace d3;

namespace {

graph load(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

double latency(const result<planned>& p) {
  BOOST_REQUIRE_MESSAGE(p.is_ok(), p.message());
  return p->prediction.latency_ms;
}

}  // namespace

// Each search's plan space contains the simpler ones, so on the same cost model it can only be as
// fast or faster: three tiers >= Neurosurgeon's two tiers >= device-only and cloud-only.
BOOST_AUTO_TEST_CASE(searches_beat_the_plans_they_contain) {
  graph g = load("resnet18");
  const layer_profile profile = profile_from_flops(g, 100.0);
  for (const std::string uplink : {"CAT1", "3G", "4G", "WiFi"}) {
    const cluster_model cluster = cluster_model::evaluation(*testbed::with_uplink(uplink));
    const double device = latency(single_node_strategy(g, profile, cluster, "device"));
    const double cloud = latency(single_node_strategy(g, profile, cluster, "cloud"));
    const double edge = latency(single_node_strategy(g, profile, cluster, "edge1"));
    auto ns = neurosurgeon_strategy(g, profile, cluster);
    auto three = three_tier_exhaustive(g, profile, cluster);
    BOOST_TEST(latency(ns) <= std::min(device, cloud) * (1 + 1e-12), uplink);
    BOOST_TEST(latency(three) <= std::min({latency(ns), edge}) * (1 + 1e-12), uplink);
    BOOST_TEST_MESSAGE(uplink << ": device " << device << " ms, edge " << edge << " ms, cloud " << cloud
                              << " ms, neurosurgeon " << latency(ns) << " ms (" << ns->plan.segments.size()
                              << " segments), three-tier " << latency(three) << " ms ("
                              << three->plan.segments.size() << " segments)");
  }
}

BOOST_AUTO_TEST_CASE(a_slow_uplink_keeps_work_on_the_device) {
  graph g = load("resnet18");
  const layer_profile profile = profile_from_flops(g, 100.0);
  auto cat1 = neurosurgeon_strategy(g, profile, cluster_model::evaluation(*testbed::with_uplink("CAT1")));
  auto wifi = neurosurgeon_strategy(g, profile, cluster_model::evaluation(*testbed::with_uplink("WiFi")));
  BOOST_REQUIRE(cat1.is_ok() && wifi.is_ok());
  // At 0.13 Mbit/s the 602 KB image alone takes 37 s: the device keeps everything.
  BOOST_TEST(cat1->plan.segments.size() == 1u);
  BOOST_TEST(cat1->plan.segments[0].node == "device");
  // At WiFi speed the cloud (40x the device's speed) takes work.
  bool uses_cloud = false;
  for (const plan_segment& s : wifi->plan.segments) uses_cloud |= s.node == "cloud";
  BOOST_TEST(uses_cloud);
}

// FTP's space holds edge-only (no tiling), and tiling over four edges of speed 0.5 must pay off
// for a compute-heavy model whose first layers tile well.
BOOST_AUTO_TEST_CASE(ftp_tiles_the_first_layers_over_all_edges) {
  for (const std::string name : {"vgg16", "resnet18"}) {
    graph g = load(name);
    const layer_profile profile = profile_from_flops(g, 100.0);
    const cluster_model cluster = cluster_model::evaluation(*testbed::with_uplink("WiFi"), 4);
    auto ftp = ftp_strategy(g, profile, cluster);
    const double edge = latency(single_node_strategy(g, profile, cluster, "edge1"));
    BOOST_TEST(latency(ftp) <= edge * (1 + 1e-12), name);
    BOOST_REQUIRE(ftp->plan.tiled_runs.size() == 1u);
    BOOST_TEST(ftp->plan.tiled_runs[0].grid == "2x2");
    BOOST_TEST(ftp->plan.tiled_runs[0].nodes.size() == 4u);
    BOOST_TEST(latency(ftp) < edge, name << ": " << latency(ftp) << " vs edge-only " << edge);
    // VGG-16's 31 GFLOP dominate its latency (the uplink carries only the image): tiling its
    // first layers over four edges must take a large share off; resnet18 is uplink-bound on WiFi.
    if (name == "vgg16") BOOST_TEST(latency(ftp) < 0.8 * edge, name << ": " << latency(ftp) << " vs edge-only " << edge);
    for (const plan_segment& s : ftp->plan.segments) BOOST_TEST(s.node == "edge1");
  }
}

BOOST_AUTO_TEST_CASE(plans_cover_the_model) {
  graph g = load("googlenet");
  deployment_plan p = three_tier_plan(g, 10, 40);
  BOOST_REQUIRE(p.segments.size() == 3u);
  BOOST_TEST(p.segments[0].first == "conv1.conv");
  BOOST_TEST(p.segments[2].last == "fc");
  BOOST_TEST(build_stage_graph(g, p).is_ok());
  BOOST_TEST(three_tier_plan(g, 0, 0).segments.size() == 1u);  // cloud only
}
