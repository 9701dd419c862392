// The adaptive planner on simulated runs: every request's observations come from a true testbed
// (the cost model's transfers and stage compute times, with measurement noise), the planner
// decides after each answer, and its decisions are counted. Checks that decisions settle: no
// migration on a stable testbed with noisy measurements, few migrations per change, none when
// the gain does not pay for the weights it ships.
#define BOOST_TEST_MODULE adaptation
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdlib>
#include <random>
#include <set>

#include "emulation/emulation_trace.hpp"
#include "emulation/testbed_file.hpp"
#include "tests/test_models.hpp"
#include "planner/adaptation.hpp"
#include "planner/standby.hpp"
#include "planner/strategies.hpp"
#include "profiling/message_costs.hpp"

using namespace d3;
using d3::testing::load_model;

namespace {

node_role role_of(const cluster_model& c, const std::string& node) {
  auto it = c.nodes.find(node);
  return it == c.nodes.end() ? node_role::device : it->second.role;  // "app": the device
}

// One run of requests against a true testbed that changes at given requests.
struct simulation {
  const graph& g;
  layer_profile profile;
  double noise = 0.0;  // relative, uniform in [-noise, +noise] on every observed time
  // On transfers, this instead where set (the virtual clock's links are exact; its compute times
  // are the host's CPU times, as noisy as the host).
  std::optional<double> link_noise{};
  int probe_every = 1;
  // The cloud's clock as the app maps it, off by this much: times of transfers to the cloud read
  // that much late and those from it that much early (an offset estimated from late pongs),
  // declared uncertain by cloud_clock_error_ms.
  double cloud_clock_skew_ms = 0, cloud_clock_error_ms = 0;
  // A tc-shaped link lets a burst through at the line rate: transfers of at most this many bytes
  // take the latency plus their bytes at burst_mbit (0: none; the netns cluster's htb links pass
  // a 1 KB probe in 0.5-1.1 ms at 2 Mbit/s).
  size_t burst_bytes = 0;
  double burst_mbit = 1000;
  bool probe_device_cloud = false;  // the runtime probes the device<->cloud path too
  // Nodes that computed nothing for a request run a probe (deployment::probe_idle_nodes, here its
  // fragment is the model's longest layer), so a node that speeds up again while idle is seen.
  bool probe_idle_nodes = false;
  // The device's stage times of request i times device_pattern[i % size] (none: 1): a device
  // whose answers alternate fast and slow, as an emulated 0.1-speed device's do on a shared host.
  std::vector<double> device_pattern{};
  std::mt19937 random{7};

  double link_ms(const link_profile& link, size_t bytes) const {
    if (bytes <= burst_bytes) return link.latency_ms + 8.0 * double(bytes) / (burst_mbit * 1e3);
    return transfer_ms(link, bytes);
  }

  double noisy(double ms, std::optional<double> relative = {}) {
    const double r = relative.value_or(noise);
    std::uniform_real_distribution<double> u(-r, r);
    return ms * (1.0 + u(random));
  }

  // The observations one request of `plan` yields on `truth`, fed to `planner`; its decision.
  // `serving`: the version that answered, told the planner first (as the planner actor does).
  std::optional<adaptation_decision> request(adaptive_planner& planner, const deployment_plan& plan,
                                             const cluster_model& truth, int index, std::optional<int> serving = {}) {
    if (serving) planner.note_serving(*serving);
    auto sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(sg.is_ok());
    std::vector<link_sample> links;
    // The bytes each link carries (encoded ones where the plan has codecs), as the cost model has them.
    auto carried = predict_plan(g, *sg, profile, truth);
    BOOST_REQUIRE(carried.is_ok());
    for (const link_bytes& l : carried->bytes) {
      const node_role from = role_of(truth, l.from), to = role_of(truth, l.to);
      links.push_back({from, to, l.bytes, noisy(link_ms(truth.links.link(from, to), l.bytes), link_noise)});
    }
    // Links are probed after every request (1 and 16 KB), as the runtime probes idle ones by
    // default (here every link: more noisy samples than the runtime's).
    if (index % probe_every == 0)
      for (auto [from, to] : {std::pair{node_role::device, node_role::edge}, {node_role::edge, node_role::cloud},
                              {node_role::edge, node_role::edge}})
        for (size_t bytes : {size_t(1024), size_t(16384)})
          links.push_back({from, to, bytes, noisy(link_ms(truth.links.link(from, to), bytes), link_noise)});
    if (index % probe_every == 0 && probe_device_cloud)
      for (size_t bytes : {size_t(1024), size_t(16384)})
        links.push_back({node_role::device, node_role::cloud, bytes,
                         noisy(link_ms(truth.links.link(node_role::device, node_role::cloud), bytes), link_noise)});
    for (link_sample& l : links) {
      const double skew = (l.to == node_role::cloud) - (l.from == node_role::cloud);
      l.ms += skew * cloud_clock_skew_ms;
      if (skew != 0) l.clock_error_ms = cloud_clock_error_ms;
    }
    std::vector<compute_observation> computes;
    for (const stage& st : sg->stages) {
      if (st.kind != stage_kind::segment && st.kind != stage_kind::tile) continue;
      const std::vector<double> shares = layer_shares(g, *sg, st);
      double ms = 0;
      for (size_t k = 0; k < shares.size(); ++k) ms += profile.milliseconds[size_t(st.layers[k])] * shares[k];
      const double pattern = st.node == "device" && !device_pattern.empty()
                                 ? device_pattern[size_t(index) % device_pattern.size()]
                                 : 1.0;
      computes.push_back({st.node, st.layers, shares, noisy(ms / truth.nodes.at(st.node).speed) * pattern});
    }
    if (probe_idle_nodes) {
      const int longest = int(std::max_element(profile.milliseconds.begin(), profile.milliseconds.end()) -
                              profile.milliseconds.begin());
      for (const auto& [node, spec] : truth.nodes) {
        const bool busy = std::any_of(computes.begin(), computes.end(),
                                      [&](const compute_observation& c) { return c.node == node; });
        if (!busy)
          computes.push_back({node, {longest}, {1.0}, noisy(profile.milliseconds[size_t(longest)] / spec.speed), true});
      }
    }
    planner.observe_compute(computes);
    planner.observe(links);
    return planner.decide();
  }
};

cluster_model d3_cluster(const std::string& scenario) {
  const testbed_file bed = testbed_file::d3_setting();
  return cluster_model::evaluation(bed.with(*bed.scenario(scenario)), bed.edge_nodes);
}

// D3's setting with the backbone (edge<->cloud) at `mbit` Mbit/s, 20 ms.
cluster_model d3_backbone(double mbit) {
  testbed_file bed = testbed_file::d3_setting();
  testbed t = bed.base;
  t.edge_cloud = {mbit, 20.0};
  return cluster_model::evaluation(t, bed.edge_nodes);
}

// 100 GFLOP/s, but fully connected layers run at the speed of memory, not of arithmetic (each
// weight read once per request, here at 10 GB/s).
layer_profile memory_bound_profile(const graph& g) {
  layer_profile profile = profile_from_flops(g, 100.0);
  for (size_t l = 0; l < g.layers.size(); ++l)
    profile.milliseconds[l] = std::max(profile.milliseconds[l], double(weight_bytes(g.layers[l])) / 10e6);
  return profile;
}

struct run_result {
  int migrations = 0;
  size_t bytes = 0;
  std::vector<size_t> migration_bytes;  // per migration, in order
  std::vector<int> migrated_at;         // per migration: the request whose answer decided it
  deployment_plan start, plan;  // the plan deployed first, the plan at the end
};

// Runs `requests` requests; `truth_at(i)` is the testbed of request i.
template <class Truth>
run_result run(simulation& sim, const cluster_model& start_cluster, int requests, Truth truth_at,
               adaptation_options options = {}) {
  three_tier_choice start;
  hpa_options search;
  search.codecs = options.codecs;
  auto planned = hpa_strategy(sim.g, sim.profile, start_cluster, search, &start);
  BOOST_REQUIRE(planned.is_ok());
  adaptive_planner planner(sim.g, sim.profile, start_cluster, start, planned->plan, options);
  run_result r;
  r.start = r.plan = planned->plan;
  for (int i = 0; i < requests; ++i) {
    auto d = sim.request(planner, r.plan, truth_at(i), i);
    if (std::getenv("D3_TRACE_ADAPT"))
      BOOST_TEST_MESSAGE("  request " << i << ": uncertainty " << planner.uncertainty() << " ("
                                      << planner.uncertainty_source() << "), backbone "
                                      << planner.estimate().links.edge_cloud.bandwidth_mbit_per_s << " Mbit/s, LAN " << planner.estimate().links.device_edge.bandwidth_mbit_per_s << " Mbit/s, device-cloud "
                                      << planner.estimate().links.link(node_role::device, node_role::cloud).bandwidth_mbit_per_s
                                      << "; edge1 speed " << planner.estimate().nodes.at("edge1").speed << "; "
                                      << planner.verdict());
    if (d && std::getenv("D3_TRACE_ADAPT"))
      BOOST_TEST_MESSAGE("  from " << describe(r.plan) << "\n  to " << describe(d->plan) << "\n  estimates "
                                   << describe(planner.estimate()));
    if (d) {
      BOOST_TEST_MESSAGE("  request " << i << ": migrate (" << (d->partial ? "partial" : "full") << ") "
                                      << d->current_ms << " -> " << d->predicted_ms << " ms, ships " << d->cost.bytes
                                      << " B in " << d->cost.total_ms() << " ms; uncertainty " << planner.uncertainty());
      ++r.migrations;
      r.bytes += d->cost.bytes;
      r.migration_bytes.push_back(d->cost.bytes);
      r.migrated_at.push_back(i);
      r.plan = d->plan;
    }
  }
  return r;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_stable_testbed_with_noisy_measurements_causes_no_migration) {
  for (const std::string name : {"alexnet", "resnet18", "googlenet"})
    for (const std::string scenario : {"3G", "WiFi"}) {
      const graph g = load_model(name);
      simulation sim{g, profile_from_flops(g, 100.0), 0.2};
      const cluster_model truth = d3_cluster(scenario);
      const run_result r = run(sim, truth, 200, [&](int) { return truth; });
      BOOST_TEST(r.migrations == 0, name << " " << scenario << ": " << r.migrations << " migrations over 200 requests");
    }
}

// The setting of netns_test: slow device and edges, a fast cloud, so plans start on the cloud.
cluster_model fast_cloud(int edge_nodes = 2) {
  testbed t;
  t.device_speed = 0.1, t.edge_speed = 0.2, t.cloud_speed = 0.9;
  t.device_edge = {100, 0.2}, t.edge_edge = {1000, 0.2}, t.edge_cloud = {200, 0.5};
  return cluster_model::evaluation(t, edge_nodes);
}

// The cloud's clock mapped 25 ms early (its pongs all waited, the offset's error bound is 26 ms):
// its answers take 25 ms longer than they did and its inputs 25 ms less (the netns cluster's
// first requests: a 4 KB answer timed at 28 ms). Told the error, the planner sets those samples
// aside and stays; trusting them, it prices the cloud's links far off and moves.
BOOST_AUTO_TEST_CASE(samples_the_clocks_cannot_time_cause_no_migration) {
  for (const std::string name : {"resnet18", "alexnet", "googlenet"}) {
    const graph g = load_model(name);
    const cluster_model truth = fast_cloud();
    simulation told{g, profile_from_flops(g, 100.0), 0.05};
    told.cloud_clock_skew_ms = -25, told.cloud_clock_error_ms = 26;
    const run_result r = run(told, truth, 60, [&](int) { return truth; });
    BOOST_TEST(describe(r.start).find("cloud") != std::string::npos, name << " starts off the cloud: " << describe(r.start));
    BOOST_TEST(r.migrations == 0, name << ": " << r.migrations << " migrations on samples the clocks cannot time");
    simulation trusting{g, profile_from_flops(g, 100.0), 0.05};
    trusting.cloud_clock_skew_ms = -25;
    const run_result misled = run(trusting, truth, 60, [&](int) { return truth; });
    BOOST_TEST_MESSAGE(name << ": trusting the skewed samples: " << misled.migrations << " migrations");
    BOOST_TEST(misled.migrations >= 1, name << ": the skew misleads nothing, so this case tests nothing");
  }
}

// netns_test's drop as a sanitized build sees it: the backbone falls from 200 to 2 Mbit/s under
// a cloud-only plan, with compute ~10x slower than the plain build's (ASan), so a plan off the
// cloud is ~2x faster rather than ~20x. The links are shaped like tc's: 1 KB probes cross within
// the burst. Those probes must not widen the bound of a link the plan's own 602 KB inputs time
// at 2 Mbit/s: counted in full, they priced staying at half its time, and the plan never moved.
BOOST_AUTO_TEST_CASE(small_probes_within_a_burst_do_not_hide_a_slowed_link) {
  const graph g = load_model("resnet18");
  simulation sim{g, profile_from_flops(g, 6.0), 0.05};
  sim.burst_bytes = 2048;
  sim.probe_device_cloud = true;
  const cluster_model before = fast_cloud();
  cluster_model after = before;
  after.links.edge_cloud.bandwidth_mbit_per_s = 2;
  const run_result r = run(sim, before, 60, [&](int i) { return i < 10 ? before : after; });
  BOOST_TEST(describe(r.start).find("cloud") != std::string::npos, "starts off the cloud: " << describe(r.start));
  BOOST_TEST(r.migrations >= 1, "stayed on the dropped backbone");
  BOOST_TEST(r.migrations <= 2, r.migrations << " migrations after one backbone drop");
  auto end_sg = build_stage_graph(g, r.plan), start_sg = build_stage_graph(g, r.start);
  BOOST_REQUIRE(end_sg.is_ok() && start_sg.is_ok());
  auto end_ms = predict_plan(g, *end_sg, sim.profile, after), start_ms = predict_plan(g, *start_sg, sim.profile, after);
  BOOST_REQUIRE(end_ms.is_ok() && start_ms.is_ok());
  BOOST_TEST(end_ms->latency_ms < 0.8 * start_ms->latency_ms,
             "ends at " << end_ms->latency_ms << " ms, started at " << start_ms->latency_ms << " ms on the dropped backbone");
}

BOOST_AUTO_TEST_CASE(a_backbone_drop_causes_at_most_two_migrations) {
  for (const std::string name : {"alexnet", "resnet18", "vgg16", "googlenet", "mobilenet_v2"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    // The issue's trace: a 100 Mbit/s backbone drops to 5 Mbit/s.
    const cluster_model before = d3_backbone(100), after = d3_backbone(5);
    const run_result r = run(sim, before, 120, [&](int i) { return i < 20 ? before : after; });
    BOOST_TEST_MESSAGE(name << ": backbone 100 -> 5 Mbit/s: " << r.migrations << " migrations, " << r.bytes
                            << " weight bytes shipped");
    BOOST_TEST(r.migrations <= 2, name << ": " << r.migrations << " migrations after one backbone drop");
    // Where it ends is no slower on the new testbed than where it started (it may stay put).
    auto end_sg = build_stage_graph(g, r.plan);
    auto start_sg = build_stage_graph(g, r.start);
    BOOST_REQUIRE(end_sg.is_ok() && start_sg.is_ok());
    auto end_ms = predict_plan(g, *end_sg, sim.profile, after), start_ms = predict_plan(g, *start_sg, sim.profile, after);
    BOOST_REQUIRE(end_ms.is_ok() && start_ms.is_ok());
    BOOST_TEST(end_ms->latency_ms <= start_ms->latency_ms * 1.001, name << ": ends at " << end_ms->latency_ms << " ms, started at " << start_ms->latency_ms << " ms on the new testbed");
  }
}

// d3-bench adapt's alexnet on D3's setting: a plan running the fully connected layers (234 MB)
// on the cloud, and the backbone drops to 3 Mbit/s. With one edge node the best plan runs them on
// the edge: ~21 s of shipping over the LAN. (With two, tiling the convolutions over both and
// sending their halves over both backbone links is faster and ships 20 MB; at 5 Mbit/s, the quick
// move alone comes within the hysteresis of the slow one, which then is not worth its 20 s.)
// Requests meanwhile stay on the dropped backbone unless a quicker move goes first (one that ships
// a few MB and serves within a request or two); the slow one follows as a second migration.
BOOST_AUTO_TEST_CASE(a_move_that_ships_for_long_is_preceded_by_a_quick_one) {
  const graph g = load_model("alexnet");
  const layer_profile profile = memory_bound_profile(g);  // what puts the fully connected layers on a fast cloud
  cluster_model before = fast_cloud(1);
  before.links.edge_cloud = {100, 20};
  cluster_model after = before;
  after.links.edge_cloud = {3, 20};
  auto truth = [&](int i) { return i < 10 ? before : after; };
  simulation staged_sim{g, profile, 0.05};
  const run_result staged = run(staged_sim, before, 80, truth);
  adaptation_options direct_options;
  direct_options.quick_requests = 1e9;  // whatever a move ships, it goes at once
  simulation direct_sim{g, profile, 0.05};
  const run_result direct = run(direct_sim, before, 80, truth, direct_options);
  auto ms_on = [&](const deployment_plan& plan, const cluster_model& cluster) {
    auto sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(sg.is_ok());
    auto p = predict_plan(g, *sg, staged_sim.profile, cluster);
    BOOST_REQUIRE(p.is_ok());
    return p->latency_ms;
  };
  BOOST_TEST_MESSAGE("start " << describe(staged.start) << ": " << ms_on(staged.start, after) << " ms after the drop");
  BOOST_TEST(describe(staged.start).find("cloud") != std::string::npos, "starts off the cloud: " << describe(staged.start));
  BOOST_REQUIRE(!direct.migration_bytes.empty());
  BOOST_TEST(direct.migration_bytes[0] > size_t(100e6), "the direct move ships " << direct.migration_bytes[0]
                                                          << " B: no slow move to precede, so this case tests nothing");
  BOOST_REQUIRE(staged.migrations >= 1);
  BOOST_TEST(staged.migrations <= 2, staged.migrations << " migrations after one backbone drop");
  BOOST_TEST(staged.migration_bytes[0] < size_t(20e6), "the first move ships " << staged.migration_bytes[0] << " B");
  // It ends where the direct move went (or as fast), and its first move already took most of the way.
  BOOST_TEST(ms_on(staged.plan, after) <= ms_on(direct.plan, after) * 1.05,
             "staged ends at " << ms_on(staged.plan, after) << " ms, direct at " << ms_on(direct.plan, after) << " ms");
}

// The runtime's side of a slow move, for the tests below: a decided plan that ships weights
// serves only `crossing_requests` answers later (its weights on the links meanwhile); one that
// ships nothing serves at once. Tells the planner which version answered.
struct serving_run {
  simulation& sim;
  adaptive_planner& planner;
  deployment_plan serving;  // answering the requests
  int serving_version;
  std::optional<deployment_plan> pending{};
  int pending_version = 0, pending_left = 0;
  int crossing_requests = 40;
  std::vector<adaptation_decision> decisions{};

  std::optional<adaptation_decision> request(const cluster_model& truth, int index) {
    if (pending && --pending_left <= 0) serving = *pending, serving_version = pending_version, pending.reset();
    auto d = sim.request(planner, serving, truth, index, serving_version);
    if (std::getenv("D3_TRACE_ADAPT")) BOOST_TEST_MESSAGE("  request " << index << ": " << planner.verdict());
    if (!d) return d;
    decisions.push_back(*d);
    if (d->cost.bytes == 0) {
      serving = d->plan, serving_version = d->plan.version, pending.reset();
    } else {
      pending = d->plan, pending_version = d->plan.version, pending_left = crossing_requests;
    }
    return d;
  }
};

// vgg16 in d3-bench adapt (d3-all), D3's setting: everything on the cloud, the backbone drops,
// and every plan the searches find needs the fully connected weights (494.6 MB) on an edge, ~40 s
// of LAN. The convolutions were copied onto the edges beforehand (standby copies, whose cap
// stops before the fully connected layers): the first move runs them on the copies and ships
// nothing (before: it was the 494.6 MB move, and requests stayed on the dropped backbone while it
// crossed).
BOOST_AUTO_TEST_CASE(a_slow_move_is_preceded_by_a_plan_on_weights_in_place) {
  const graph g = load_model("vgg16");
  const layer_profile profile = memory_bound_profile(g);
  const cluster_model before = d3_backbone(100), after = d3_backbone(5);
  three_tier_choice start;
  auto planned = hpa_strategy(g, profile, before, {}, &start);
  BOOST_REQUIRE(planned.is_ok());
  BOOST_TEST_MESSAGE("start: " << describe(planned->plan));
  BOOST_TEST_REQUIRE(describe(planned->plan).find("cloud features") != std::string::npos,
                     "not a plan with the fully connected layers on the cloud: " << describe(planned->plan));
  const standby_options copies;  // the convolutions (58.9 MB), not fc6 (411 MB)
  auto ms_on = [&](const deployment_plan& plan, const cluster_model& cluster) {
    auto sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(sg.is_ok());
    auto p = predict_plan(g, *sg, profile, cluster);
    BOOST_REQUIRE(p.is_ok());
    return p->latency_ms;
  };
  auto first_move = [&](size_t ready_candidates) {
    adaptation_options options;
    options.ready_candidates = ready_candidates;
    adaptive_planner planner(g, profile, before, start, planned->plan, options);
    planner.note_cached(standby_copies(g, planned->plan, before, copies));
    simulation sim{g, profile, 0.05};
    serving_run run{sim, planner, planned->plan, planned->plan.version};
    int i = 0;
    for (; i < 30 && run.decisions.empty(); ++i) run.request(i < 10 ? before : after, i);
    BOOST_REQUIRE(!run.decisions.empty());
    BOOST_TEST_MESSAGE("ready_candidates " << ready_candidates << ": first move to " << describe(run.decisions.front().plan)
                                           << ", ships " << run.decisions.front().cost.bytes << " B");
    // The slow move decided from the quick plan, if any (it ships while the quick plan serves).
    for (int end = i + 30; i < end && run.decisions.size() < 2 && ready_candidates > 0; ++i) run.request(after, i);
    return run.decisions;
  };
  const adaptation_decision without = first_move(0).front();
  BOOST_TEST(without.cost.bytes > size_t(100e6),
             "without ready candidates the first move ships " << without.cost.bytes << " B: nothing to precede");
  const std::vector<adaptation_decision> moves = first_move(3);
  const adaptation_decision& with = moves.front();
  const double stay_ms = ms_on(planned->plan, after), quick_ms = ms_on(with.plan, after);
  BOOST_TEST_MESSAGE("after the drop: " << stay_ms << " ms staying, " << quick_ms << " ms on " << describe(with.plan)
                                        << ", " << ms_on(without.plan, after) << " ms once the slow move has arrived");
  BOOST_TEST(with.cost.bytes == 0u, "the first move ships " << with.cost.bytes << " B");
  BOOST_TEST(quick_ms < 0.75 * stay_ms);
  // The slow move then ships the fully connected weights to an edge, and they share the link
  // from the device with every request of the quick plan sent to that edge meanwhile: of the
  // edges that lack as much, one the quick plan sends nothing to is chosen.
  BOOST_REQUIRE_EQUAL(moves.size(), 2u);
  const adaptation_decision& slow = moves[1];
  BOOST_TEST(slow.cost.bytes > size_t(100e6));
  auto quick_sg = build_stage_graph(g, with.plan);
  auto slow_sg = build_stage_graph(g, slow.plan);
  BOOST_REQUIRE(quick_sg.is_ok() && slow_sg.is_ok());
  std::set<std::string> fed;  // nodes the quick plan sends to from the device
  for (const link_bytes& b : bytes_between_nodes(g, *quick_sg, "device"))
    if (b.from == "device" && b.bytes > 0) fed.insert(b.to);
  std::string fc6;
  for (const stage& st : slow_sg->stages)
    for (int l : st.layers)
      if (g.layers[size_t(l)].name == "classifier.0") fc6 = st.node;
  BOOST_TEST_MESSAGE("then to " << describe(slow.plan) << ", shipping " << slow.cost.bytes << " B; fc6 on " << fc6);
  BOOST_TEST(!fc6.empty());
  BOOST_TEST(!fed.count(fc6), "fc6's weights go to " << fc6 << ", which the quick plan's requests are sent to");
}

// While a slow move's weights cross, the requests run on the plan before it: when that one
// degrades (an edge it tiles on slows to a fifth), a move from it that ships nothing is taken,
// measured against it, not against the plan still waiting; without being told which version
// answers, the planner prices the plan it decided and stays.
BOOST_AUTO_TEST_CASE(a_plan_serving_while_weights_cross_is_adjusted_when_it_degrades) {
  const graph g = load_model("vgg16");  // as in the test above
  const layer_profile profile = memory_bound_profile(g);
  const cluster_model before = d3_backbone(100), dropped = d3_backbone(5);
  three_tier_choice start;
  auto planned = hpa_strategy(g, profile, before, {}, &start);
  BOOST_REQUIRE(planned.is_ok());
  adaptive_planner planner(g, profile, before, start, planned->plan);
  planner.note_cached(standby_copies(g, planned->plan, before));
  simulation sim{g, profile, 0.05};
  serving_run run{sim, planner, planned->plan, planned->plan.version};
  run.crossing_requests = 1000;  // the slow move never arrives here
  int i = 0;
  for (; i < 60 && !run.pending; ++i) run.request(i < 10 ? before : dropped, i);
  BOOST_REQUIRE_MESSAGE(run.pending.has_value(), "no slow move decided after the drop");
  for (const adaptation_decision& d : run.decisions)
    BOOST_TEST_MESSAGE("decided " << describe(d.plan) << ", ships " << d.cost.bytes << " B");
  BOOST_REQUIRE(run.decisions.size() == 2u);  // the quick move, then the slow one
  // The serving plan's busiest edge slows to a fifth.
  auto sg = build_stage_graph(g, run.serving);
  BOOST_REQUIRE(sg.is_ok());
  std::string busiest;
  size_t most = 0;
  for (const stage& st : sg->stages)
    if (before.nodes.at(st.node).role == node_role::edge && st.layers.size() > most) busiest = st.node, most = st.layers.size();
  BOOST_REQUIRE(!busiest.empty());
  cluster_model slowed = dropped;
  slowed.nodes.at(busiest).speed /= 5;
  const deployment_plan degraded = run.serving, waiting = *run.pending;
  const size_t decided = run.decisions.size();
  for (int k = 0; k < 40 && run.decisions.size() == decided; ++k, ++i) run.request(slowed, i);
  BOOST_REQUIRE_MESSAGE(run.decisions.size() > decided, busiest << " slowed: no move from the serving plan ("
                                                               << planner.verdict() << ")");
  const adaptation_decision& interim = run.decisions.back();
  auto ms_on = [&](const deployment_plan& plan) {
    auto s = build_stage_graph(g, plan);
    BOOST_REQUIRE(s.is_ok());
    auto p = predict_plan(g, *s, profile, slowed);
    BOOST_REQUIRE(p.is_ok());
    return p->latency_ms;
  };
  const double serving_ms = ms_on(degraded), interim_ms = ms_on(interim.plan), waiting_ms = ms_on(waiting);
  BOOST_TEST_MESSAGE(busiest << " at a fifth: serving " << serving_ms << " ms, moved to " << interim_ms << " ms ("
                             << describe(interim.plan) << "); the plan waiting " << waiting_ms << " ms; priced now at "
                             << interim.current_ms << " ms");
  BOOST_TEST(interim.cost.bytes == 0u);
  BOOST_TEST(interim_ms < 0.9 * serving_ms);
  // Measured against the serving plan (within the estimates' noise of its true price), not the
  // plan waiting.
  BOOST_TEST(std::abs(interim.current_ms - serving_ms) < std::abs(interim.current_ms - waiting_ms));
}

// One answer in three 1.8x slow on the node running the plan (an emulated 0.1-speed device on a
// shared host: measured, mobilenet_v2's device-only plan answered at 47 to 83 ms) says the node
// may be slower, not that it may be faster: the plan must not be priced under its fast answers.
// D3's setting with the LAN at 5 Mbit/s 10 ms keeps the model on the device; then the LAN comes
// back, to a rate where a plan with edges is faster by 15-30% (by its prediction on the truth).
// The planner must leave the device within the few answers its estimates take to follow the LAN.
BOOST_AUTO_TEST_CASE(a_slow_outlier_does_not_price_the_plan_running_there_fast) {
  int cases = 0;
  for (const std::string name : {"alexnet", "resnet18", "googlenet", "mobilenet_v2"}) {
    const graph g = load_model(name);
    const layer_profile profile = profile_from_flops(g, 100.0);
    const testbed_file bed = testbed_file::d3_setting();
    testbed slow_lan = bed.base;
    slow_lan.device_edge = {5.0, 10.0};
    const cluster_model before = cluster_model::evaluation(slow_lan, bed.edge_nodes);
    auto start = hpa_strategy(g, profile, before);
    BOOST_REQUIRE(start.is_ok());
    auto start_sg = build_stage_graph(g, start->plan);
    BOOST_REQUIRE(start_sg.is_ok());
    if (describe(start->plan).find("edge") != std::string::npos) continue;  // not on the device alone
    std::optional<cluster_model> after;
    double gain = 0;
    for (double mbit : {100.0, 60.0, 40.0, 30.0, 20.0, 15.0}) {
      testbed t = bed.base;
      t.device_edge = {mbit, 2.0};
      const cluster_model c = cluster_model::evaluation(t, bed.edge_nodes);
      auto best = hpa_strategy(g, profile, c);
      auto staying = predict_plan(g, *start_sg, profile, c);
      BOOST_REQUIRE(best.is_ok() && staying.is_ok());
      gain = 1.0 - best->prediction.latency_ms / staying->latency_ms;
      if (gain >= 0.15 && gain <= 0.30) {
        after = c;
        break;
      }
    }
    if (!after) continue;
    ++cases;
    simulation sim{g, profile, 0.0};
    sim.device_pattern = {1.0, 1.0, 1.8};
    adaptation_options options;
    options.horizon_requests = 1e6;  // what the move ships is not the question here
    const run_result r = run(sim, before, 40, [&](int i) { return i < 10 ? before : *after; }, options);
    BOOST_TEST_MESSAGE(name << ": LAN back at " << after->links.device_edge.bandwidth_mbit_per_s << " Mbit/s ("
                            << 100 * gain << "% gain): " << r.migrations << " migrations, the first after answer "
                            << (r.migrated_at.empty() ? -1 : r.migrated_at[0]) << ", to " << describe(r.plan));
    BOOST_TEST(!r.migrated_at.empty(), name << ": stayed on the device");
    if (!r.migrated_at.empty()) {
      BOOST_TEST(r.migrated_at[0] >= 10, name << ": moved before the LAN came back");
      BOOST_TEST(r.migrated_at[0] <= 10 + 4, name << ": left the device after answer " << r.migrated_at[0]);
    }
  }
  BOOST_TEST(cases >= 2);
}

BOOST_AUTO_TEST_CASE(a_gain_smaller_than_the_shipping_cost_causes_no_migration) {
  // An edge node slowing to a fifth moves work: worth it over a long horizon, not over one
  // request when the move ships weights over the LAN.
  const graph g = load_model("vgg16");
  simulation sim{g, profile_from_flops(g, 100.0), 0.0};
  const cluster_model before = d3_cluster("WiFi");
  cluster_model after = before;
  for (auto& [name, node] : after.nodes)
    if (node.role == node_role::edge) node.speed /= 5;
  adaptation_options long_horizon, one_request;
  long_horizon.horizon_requests = 1e7;
  one_request.horizon_requests = 1;
  const run_result paid = run(sim, before, 40, [&](int i) { return i < 5 ? before : after; }, long_horizon);
  BOOST_TEST(paid.migrations >= 1, "slower edges: no migration even over 1e7 requests");
  BOOST_TEST(paid.bytes > 0u);
  const run_result unpaid = run(sim, before, 40, [&](int i) { return i < 5 ? before : after; }, one_request);
  BOOST_TEST(unpaid.migrations == 0, unpaid.migrations << " migrations whose gain over one request is below their cost");
}

BOOST_AUTO_TEST_CASE(a_migration_needs_confirming_answers) {
  // One answer with a slow backbone, then the old testbed again: no migration.
  const graph g = load_model("alexnet");
  simulation sim{g, profile_from_flops(g, 100.0), 0.0};
  const cluster_model before = d3_cluster("WiFi"), blip = d3_cluster("CAT1");
  adaptation_options options;
  options.window = 1;  // even with no median: one sample decides nothing
  const run_result r = run(sim, before, 30, [&](int i) { return i == 10 ? blip : before; }, options);
  BOOST_TEST(r.migrations == 0);
}

BOOST_AUTO_TEST_CASE(a_testbed_that_keeps_changing_is_followed_with_damping) {
  // netns_test's backbone toggles between 200 and 2 Mbit/s every 8 answers for 240 answers:
  // each state has its own plan (the cloud, the edges), so an undamped planner chases every
  // toggle it can confirm. Damped, a migration within damping_requests answers of another needs
  // twice the confirmations, and a state that lasts 8 answers (cooldown and the estimates'
  // window included) cannot confirm the 8 the third one needs. (Measured: 17 migrations damped,
  // 29 undamped, with damping_requests 20.)
  const graph g = load_model("resnet18");
  const cluster_model fast = fast_cloud();
  cluster_model slow = fast;
  slow.links.edge_cloud.bandwidth_mbit_per_s = 2;
  auto toggling = [&](int i) { return (i / 8) % 2 == 0 ? fast : slow; };
  simulation damped_sim{g, profile_from_flops(g, 100.0), 0.05};
  const run_result damped = run(damped_sim, fast, 240, toggling);
  adaptation_options undamped_options;
  undamped_options.damping_requests = 0;
  simulation undamped_sim{g, profile_from_flops(g, 100.0), 0.05};
  const run_result undamped = run(undamped_sim, fast, 240, toggling, undamped_options);
  BOOST_TEST_MESSAGE("toggling backbone: " << damped.migrations << " migrations damped, " << undamped.migrations
                                           << " undamped");
  BOOST_TEST(undamped.migrations >= 10, "the toggles are not worth chasing, so this case tests nothing");
  // At most two migrations per damping window (the third needs 8 in a row).
  const int window = adaptation_options{}.damping_requests;
  BOOST_TEST(damped.migrations <= 2 * (240 / window + 1), damped.migrations << " migrations");
  BOOST_TEST(damped.migrations * 3 <= undamped.migrations * 2, "damping spared too few migrations");
}

BOOST_AUTO_TEST_CASE(an_edge_node_slowing_to_a_fifth_moves_work_off_it) {
  for (const std::string name : {"alexnet", "resnet18"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    const cluster_model before = d3_cluster("WiFi");
    cluster_model after = before;
    after.nodes.at("edge1").speed /= 5;
    const run_result r = run(sim, before, 40, [&](int i) { return i < 10 ? before : after; });
    auto end_sg = build_stage_graph(g, r.plan);
    BOOST_REQUIRE(end_sg.is_ok());
    auto end_ms = predict_plan(g, *end_sg, sim.profile, after);
    auto best = hpa_strategy(g, sim.profile, after);
    BOOST_REQUIRE(end_ms.is_ok() && best.is_ok());
    BOOST_TEST_MESSAGE(name << ": edge1 at a fifth: " << r.migrations << " migrations; ends at " << end_ms->latency_ms
                            << " ms, the optimum " << best->prediction.latency_ms << " ms");
    BOOST_TEST(r.migrations >= 1, name);
    BOOST_TEST(r.migrations <= 2, name);
    BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10, name);
  }
}

BOOST_AUTO_TEST_CASE(with_codecs_a_backbone_drop_settles_with_its_crossings_encoded) {
  // 8-bit images in (a preprocess layer first), the codecs' ratios measured on resnet18 and their
  // costs on this machine: the planner adapts with codecs as it deploys with them.
  graph g = load_model("resnet18");
  BOOST_REQUIRE(add_image_preprocess(g).is_ok());
  layer_profile profile = profile_from_flops(g, 100.0);
  auto costs = measure_message_costs(3);
  BOOST_REQUIRE_MESSAGE(costs.is_ok(), costs.message());
  profile.messages = costs.value();
  BOOST_REQUIRE(measure_codec_ratios(g, profile).is_ok());
  const cluster_model before = d3_backbone(100), after = d3_backbone(5);
  adaptation_options encoded;
  encoded.codecs = codec_choice_options{};
  simulation sim{g, profile, 0.05};
  const run_result e = run(sim, before, 120, [&](int i) { return i < 20 ? before : after; }, encoded);
  auto priced = [&](const deployment_plan& plan) {
    auto sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(sg.is_ok());
    auto p = predict_plan(g, *sg, profile, after);
    BOOST_REQUIRE(p.is_ok());
    return p->latency_ms;
  };
  BOOST_TEST_MESSAGE("resnet18 with images, backbone 100 -> 5 Mbit/s, with codecs: " << e.migrations
                     << " migrations, ends at " << priced(e.plan) << " ms with " << e.plan.codecs.size()
                     << " encoded crossings");
  BOOST_TEST(!e.start.codecs.empty(), "the first plan has no encoded crossing");
  BOOST_TEST(!e.plan.codecs.empty(), "the plan after the drop has no encoded crossing");
  BOOST_TEST(e.migrations <= 2);
  BOOST_TEST(priced(e.plan) <= priced(e.start) * 1.001, "ends slower than it started on the new testbed");
  // Not asserted (issue 14's open goal line): the planner reaching the optimum with codecs. From
  // a cloud-only plan it stays put here: the device<->cloud path is sampled on every answer and
  // the LAN only by the probes of every third, so the LAN stays capped at the path's bandwidth
  // on two answers of three and an edge plan is never confirmed twice in a row.
}

BOOST_AUTO_TEST_CASE(a_link_that_carries_one_size_is_followed_when_it_gets_faster_than_its_latency) {
  // The LAN recovers (20 Mbit/s 5 ms -> 100 Mbit/s 2 ms) under a plan that sends one tensor size
  // over it: the samples are under the old latency, and the estimate must follow them.
  const graph g = load_model("resnet18");
  const layer_profile profile = profile_from_flops(g, 100.0);
  cluster_model slow = d3_cluster("WiFi");
  slow.links.device_edge = {20.0, 5.0};
  three_tier_choice choice;
  auto planned = hpa_strategy(g, profile, slow, {}, &choice);
  BOOST_REQUIRE(planned.is_ok());
  adaptive_planner planner(g, profile, slow, choice, planned->plan);
  const size_t bytes = 25000;
  const double now_ms = 2.0 + 8.0 * double(bytes) / 100e3;  // 4.0 ms on the recovered LAN: under 5
  for (int i = 0; i < 3; ++i) {
    planner.observe({{node_role::device, node_role::edge, bytes, now_ms}});
    planner.decide();
  }
  const link_profile lan = planner.estimate().links.device_edge;
  const double predicted = lan.latency_ms + 8.0 * double(bytes) / (lan.bandwidth_mbit_per_s * 1e3);
  BOOST_TEST(predicted == now_ms, boost::test_tools::tolerance(0.02));
  BOOST_TEST(lan.latency_ms < 5.0);
  BOOST_TEST(lan.bandwidth_mbit_per_s > 20.0);
  // A one-size link that slows keeps its latency and loses bandwidth (the median sample).
  for (double ms : {40.0, 41.0, 39.0}) {
    planner.observe({{node_role::device, node_role::edge, bytes, ms}});
    planner.decide();
  }
  const link_profile slower = planner.estimate().links.device_edge;
  BOOST_TEST(slower.latency_ms == lan.latency_ms, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(slower.latency_ms + 8.0 * double(bytes) / (slower.bandwidth_mbit_per_s * 1e3) == 40.0,
             boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(a_change_that_reverts_returns_to_a_plan_whose_weights_are_in_place) {
  // D3's setting, slow backbone: the LAN drops to 5 Mbit/s 5 ms and recovers. Going back ships
  // nothing: the plan that ran before the drop still has its weights on its nodes.
  for (const std::string name : {"alexnet", "resnet18", "googlenet"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    const cluster_model fast = d3_backbone(5);
    cluster_model slow = fast;
    slow.links.device_edge = {5.0, 5.0};
    const run_result r = run(sim, fast, 90, [&](int i) { return i >= 15 && i < 50 ? slow : fast; });
    BOOST_TEST_MESSAGE(name << ": LAN drop and recovery: " << r.migrations << " migrations, from " << describe(r.start)
                            << " to " << describe(r.plan) << "; bytes per migration:");
    for (size_t b : r.migration_bytes) BOOST_TEST_MESSAGE("  " << b);
    BOOST_TEST(r.migrations <= 4, name);
    if (r.migrations > 0) BOOST_TEST(r.migration_bytes.back() == 0u, name << ": the way back ships " << r.migration_bytes.back() << " B");
    auto end_sg = build_stage_graph(g, r.plan);
    BOOST_REQUIRE(end_sg.is_ok());
    auto end_ms = predict_plan(g, *end_sg, sim.profile, fast);
    auto best = hpa_strategy(g, sim.profile, fast);
    BOOST_REQUIRE(end_ms.is_ok() && best.is_ok());
    BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10, name << ": ends at " << end_ms->latency_ms << " ms, the optimum " << best->prediction.latency_ms);
  }
}

// Every weighted layer of g on every node of `cluster`: the model provisioned everywhere (what the
// app reports the nodes hold, passed to note_cached).
std::map<std::string, std::set<int>> held_everywhere(const graph& g, const cluster_model& cluster) {
  std::map<std::string, std::set<int>> held;
  for (const auto& [node, spec] : cluster.nodes)
    for (size_t l = 0; l < g.layers.size(); ++l)
      if (weight_bytes(g.layers[l]) > 0) held[node].insert(int(l));
  return held;
}

BOOST_AUTO_TEST_CASE(with_the_model_on_every_node_moves_ship_nothing_and_come_at_once) {
  // vgg16 in D3's setting, the backbone dropping from 100 to 5 Mbit/s at answer 10. Nodes
  // provisioned with the model (d3-node's INI `models`; the app reports what they hold, which
  // the planner actor passes to note_cached): the move ships nothing and is decided within a few
  // answers of the change, and the plan it ends on is within 10% of the new optimum. Without
  // the held layers the same run ships the fully connected weights.
  const graph g = load_model("vgg16");
  const cluster_model fast = d3_backbone(100), slow = d3_backbone(5);
  auto truth = [&](int i) { return i < 10 ? fast : slow; };
  for (const bool provisioned : {true, false}) {
    simulation sim{g, memory_bound_profile(g), 0.05};
    three_tier_choice start;
    auto planned = hpa_strategy(g, sim.profile, fast, {}, &start);
    BOOST_REQUIRE(planned.is_ok());
    adaptive_planner planner(g, sim.profile, fast, start, planned->plan);
    if (provisioned) planner.note_cached(held_everywhere(g, fast));
    deployment_plan plan = planned->plan;
    std::vector<int> moved_at;
    size_t shipped = 0;
    for (int i = 0; i < 40; ++i)
      if (auto d = sim.request(planner, plan, truth(i), i)) {
        moved_at.push_back(i);
        shipped += d->cost.bytes;
        plan = d->plan;
      }
    auto sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(sg.is_ok());
    auto end_ms = predict_plan(g, *sg, sim.profile, slow);
    auto best = hpa_strategy(g, sim.profile, slow);
    BOOST_REQUIRE(end_ms.is_ok() && best.is_ok());
    BOOST_TEST_MESSAGE("vgg16, backbone drop, " << (provisioned ? "provisioned" : "not provisioned") << ": "
                                                << moved_at.size() << " migrations, the first at answer "
                                                << (moved_at.empty() ? -1 : moved_at.front()) << ", " << shipped
                                                << " B shipped; ends at " << end_ms->latency_ms << " ms, the optimum "
                                                << best->prediction.latency_ms << " ms");
    if (provisioned) {
      BOOST_TEST_REQUIRE(!moved_at.empty());
      BOOST_TEST(shipped == 0u);
      BOOST_TEST(moved_at.front() <= 10 + 4);
      BOOST_TEST(moved_at.size() <= 2u);
      BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10);
    } else {
      BOOST_TEST(shipped > 0u, "nothing to ship even unprovisioned: this case tests nothing");
    }
  }
}

BOOST_AUTO_TEST_CASE(a_second_change_soon_after_a_move_is_followed_at_once) {
  // vgg16 in D3's setting, provisioned: the backbone drops at answer 10 (the model moves onto an
  // edge node), and 8 answers later that edge node slows to a tenth. The second move goes
  // somewhere new, so damping lets it through as quickly as the first (before, it waited twice
  // the confirmations: 4); a move back to the choice the first one left would still be damped
  // (a_testbed_that_keeps_changing_is_followed_with_damping).
  const graph g = load_model("vgg16");
  const cluster_model fast = d3_backbone(100), slow = d3_backbone(5);
  simulation sim{g, memory_bound_profile(g), 0.05};
  three_tier_choice start;
  auto planned = hpa_strategy(g, sim.profile, fast, {}, &start);
  BOOST_REQUIRE(planned.is_ok());
  adaptive_planner planner(g, sim.profile, fast, start, planned->plan);
  planner.note_cached(held_everywhere(g, fast));
  deployment_plan plan = planned->plan;
  std::string slowed;  // the edge node the first move put work on
  cluster_model second = slow;
  std::vector<int> moved_at;
  for (int i = 0; i < 40; ++i) {
    const cluster_model& truth = i < 10 ? fast : i < 18 ? slow : second;
    if (auto d = sim.request(planner, plan, truth, i)) {
      moved_at.push_back(i);
      plan = d->plan;
      if (slowed.empty())
        for (const plan_segment& s : plan.segments)
          if (slowed.empty() && s.node.rfind("edge", 0) == 0) slowed = s.node;
      if (!slowed.empty()) second.nodes.at(slowed).speed = slow.nodes.at(slowed).speed / 10;
    }
  }
  auto sg = build_stage_graph(g, plan);
  BOOST_REQUIRE(sg.is_ok());
  auto end_ms = predict_plan(g, *sg, sim.profile, second);
  auto best = hpa_strategy(g, sim.profile, second);
  BOOST_REQUIRE(end_ms.is_ok() && best.is_ok());
  BOOST_TEST_MESSAGE("vgg16, backbone drop, then " << slowed << " at a tenth: migrations at answers "
                     << (moved_at.empty() ? -1 : moved_at.front()) << ", " << (moved_at.size() > 1 ? moved_at[1] : -1)
                     << " (" << moved_at.size() << " in all); ends at " << end_ms->latency_ms << " ms, the optimum "
                     << best->prediction.latency_ms << " ms");
  BOOST_TEST_REQUIRE(!slowed.empty(), "the first move put nothing on an edge node: this case tests nothing");
  BOOST_TEST_REQUIRE(moved_at.size() >= 2u);
  BOOST_TEST(moved_at.size() <= 3u);
  BOOST_TEST(moved_at[0] <= 10 + 4);
  // Measured: answer 19; with twice the confirmations (the damping before), 21.
  BOOST_TEST(moved_at[1] <= 18 + 2, "the second move came at answer " << moved_at[1]);
  BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10);
}

BOOST_AUTO_TEST_CASE(standby_copies_give_each_part_buddy_edges) {
  const graph g = load_model("resnet18");
  const cluster_model cluster = d3_cluster("WiFi");
  deployment_plan plan;
  plan.segments = {{"device", "conv1", "maxpool"}, {"edge1", "layer1.0.conv1", "layer2.1.add"},
                   {"cloud", "layer3.0.conv1", "fc"}};
  auto sg = build_stage_graph(g, plan);
  BOOST_REQUIRE(sg.is_ok());
  std::map<std::string, std::set<int>> runs;
  for (const stage& st : sg->stages)
    for (int l : st.layers)
      if (weight_bytes(g.layers[size_t(l)]) > 0) runs[st.node].insert(l);
  for (bool to_cloud : {false, true}) {
    standby_options options;
    options.cloud = to_cloud;
    options.edge_replicas = 1;
    const auto copies = standby_copies(g, plan, cluster, options);
    for (const auto& [node, set] : copies)
      for (int l : set) BOOST_TEST(!runs[node].count(l), node << " gets a copy of " << g.layers[size_t(l)].name << ", which it runs");
    auto holds = [&](const std::string& node, int l) {
      return runs[node].count(l) > 0 || (copies.count(node) && copies.at(node).count(l) > 0);
    };
    for (size_t l = 0; l < g.layers.size(); ++l) {
      if (weight_bytes(g.layers[l]) == 0) continue;
      const int id = int(l);
      const bool on_edge1 = runs["edge1"].count(id) > 0, on_cloud = runs["cloud"].count(id) > 0;
      const bool on_device = runs["device"].count(id) > 0;
      const std::string& name = g.layers[l].name;
      BOOST_TEST(holds("device", id), name);  // the app's node: everything
      BOOST_TEST(holds("edge2", id) == on_edge1, name);  // edge1's buddy
      // The cloud's buddy and the app's node's one: the first edge.
      BOOST_TEST(holds("edge1", id) == (on_edge1 || on_cloud || on_device), name);
      BOOST_TEST(!holds("edge3", id), name);
      BOOST_TEST(!holds("edge4", id), name);
      BOOST_TEST(holds("cloud", id) == (on_cloud || (to_cloud && on_edge1)), name);
    }
  }
  // By default every edge node holds what the plan runs off the device (within the cap), and the
  // first one what the device runs too.
  {
    const auto copies = standby_copies(g, plan, cluster);
    for (const std::string edge : {"edge1", "edge2", "edge3", "edge4"})
      for (size_t l = 0; l < g.layers.size(); ++l) {
        const int id = int(l);
        if (weight_bytes(g.layers[l]) == 0) continue;
        const bool off_device = !runs["device"].count(id);
        const bool holds = runs[edge].count(id) > 0 || (copies.count(edge) && copies.at(edge).count(id) > 0);
        BOOST_TEST(holds == (off_device || edge == "edge1"), edge << " " << g.layers[l].name);
      }
  }
  // The cap: at most this many bytes per node.
  standby_options small;
  small.max_bytes_per_node = 1 << 20;
  for (const auto& [node, set] : standby_copies(g, plan, cluster, small)) {
    size_t bytes = 0;
    for (int l : set) bytes += weight_bytes(g.layers[size_t(l)]);
    BOOST_TEST(bytes <= small.max_bytes_per_node, node);
  }
}

BOOST_AUTO_TEST_CASE(with_standby_copies_an_edge_slowing_down_moves_work_shipping_nothing) {
  // The moves an edge node slowing to a fifth makes ship weights without copies (the test above
  // with the same testbed); with the copies of planner/standby.hpp noted, none ships anything.
  for (const std::string name : {"alexnet", "resnet18", "googlenet"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    const cluster_model before = d3_cluster("WiFi");
    cluster_model after = before;
    three_tier_choice start;
    auto planned = hpa_strategy(g, sim.profile, before, {}, &start);
    BOOST_REQUIRE(planned.is_ok());
    // Slow the edge node that runs the most of the plan.
    auto sg = build_stage_graph(g, planned->plan);
    BOOST_REQUIRE(sg.is_ok());
    std::map<std::string, size_t> layers_on;
    for (const stage& st : sg->stages)
      if (before.nodes.at(st.node).role == node_role::edge) layers_on[st.node] += st.layers.size();
    if (layers_on.empty()) continue;  // no edge in the plan: nothing to test here
    const std::string busiest =
        std::max_element(layers_on.begin(), layers_on.end(), [](auto& a, auto& b) { return a.second < b.second; })->first;
    after.nodes.at(busiest).speed /= 5;
    adaptive_planner planner(g, sim.profile, before, start, planned->plan);
    standby_options all;  // alexnet's fully connected layers too (over the default cap)
    all.max_bytes_per_node = size_t(512) << 20;
    planner.note_cached(standby_copies(g, planned->plan, before, all));
    deployment_plan plan = planned->plan;
    int migrations = 0;
    for (int i = 0; i < 40; ++i) {
      auto d = sim.request(planner, plan, i < 10 ? before : after, i);
      if (!d) continue;
      ++migrations;
      BOOST_TEST(d->cost.bytes == 0u, name << ": a move off " << busiest << " ships " << d->cost.bytes << " B");
      plan = d->plan;
      planner.note_cached(standby_copies(g, plan, before, all));
    }
    auto end_sg = build_stage_graph(g, plan);
    BOOST_REQUIRE(end_sg.is_ok());
    auto end_ms = predict_plan(g, *end_sg, sim.profile, after);
    auto best = hpa_strategy(g, sim.profile, after);
    BOOST_REQUIRE(end_ms.is_ok() && best.is_ok());
    BOOST_TEST_MESSAGE(name << ": " << busiest << " at a fifth: " << migrations << " migrations; ends at "
                            << end_ms->latency_ms << " ms, the optimum " << best->prediction.latency_ms << " ms");
    BOOST_TEST(migrations <= 2, name);
    BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10, name);
  }
}

// Probes of idle nodes count as changes, not as levels: a probe's fragment runs at another
// fraction of the profile's speed than a stage's layers (here 15% faster), so an idle node stays
// at what it was known at (its last stage's speed, or the planned one) until a probe differs from
// its first one by more than a factor 1.25; then it moves by that factor, and back.
// Profiles are measured on idle nodes; under load a whole shared host can run slower than them
// (measured on the namespace cluster: edge1's stages at 0.83 of its profile for ten answers).
// An edge the plan does not use is never measured and is not to be taken for faster than the one
// that is: with every edge at 0.8 of its planned speed, and tiles across edges not worth their
// slow edge<->edge link, the plan stays on its edge.
BOOST_AUTO_TEST_CASE(edges_all_slower_than_profiled_cause_no_move_onto_an_unmeasured_one) {
  testbed_file bed = testbed_file::d3_setting();
  testbed t = bed.base;
  t.edge_edge = {1.0, 5.0};   // tiles across edges do not pay
  t.edge_cloud = {5.0, 20.0};  // nor does the cloud
  const cluster_model planned = cluster_model::evaluation(t, 2);
  cluster_model truth = planned;
  for (auto& [node, n] : truth.nodes)
    if (n.role == node_role::edge) n.speed *= 0.8;
  int single_edge_plans = 0;
  for (const std::string name : {"alexnet", "resnet18", "googlenet", "vgg16", "mobilenet_v2"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    const run_result r = run(sim, planned, 60, [&](int) { return truth; });
    std::set<std::string> edges;
    auto sg = build_stage_graph(g, r.start);
    BOOST_REQUIRE(sg.is_ok());
    for (const stage& st : sg->stages)
      if (planned.nodes.at(st.node).role == node_role::edge) edges.insert(st.node);
    BOOST_TEST_MESSAGE(name << ": " << edges.size() << " edges used, " << r.migrations << " migrations, from "
                            << describe(r.start) << " to " << describe(r.plan));
    if (edges.size() == 1) ++single_edge_plans;
    BOOST_TEST(r.migrations == 0, name);
  }
  BOOST_TEST(single_edge_plans >= 2);  // the case this is about: an idle edge beside a busy one
}

// Of two edges a plan tiles over, one running 1.6x faster than it was profiled (on a shared host, a
// phase of its core) attracts no work: a new plan is priced with no node beyond its planned speed.
// (Measured on the namespace cluster: 0.2-core edges read 1.44 and 0.77 of their profiles, and a
// plan that had settled after a backbone drop moved 32 layers and 45 MB onto the "fast" one.)
BOOST_AUTO_TEST_CASE(an_edge_running_faster_than_its_profile_attracts_no_work) {
  int cases = 0;
  for (const std::string name : {"alexnet", "resnet18", "googlenet", "mobilenet_v2", "vgg16"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    const testbed_file bed = testbed_file::d3_setting();
    const cluster_model planned = cluster_model::evaluation(bed.with(*bed.scenario("3G")), 2);
    auto start = hpa_strategy(g, sim.profile, planned);
    BOOST_REQUIRE(start.is_ok());
    auto sg = build_stage_graph(g, start->plan);
    BOOST_REQUIRE(sg.is_ok());
    std::set<std::string> tiled;
    for (const stage& st : sg->stages)
      if (st.kind == stage_kind::tile) tiled.insert(st.node);
    if (tiled.size() < 2) continue;  // the case is two edges sharing tiles
    ++cases;
    cluster_model truth = planned;
    truth.nodes.at(*tiled.begin()).speed *= 1.6;
    const run_result r = run(sim, planned, 60, [&](int) { return truth; });
    BOOST_TEST_MESSAGE(name << ": " << *tiled.begin() << " at 1.6x its profile under " << describe(r.start) << ": "
                            << r.migrations << " migrations, to " << describe(r.plan));
    BOOST_TEST(r.migrations == 0, name);
  }
  BOOST_TEST(cases >= 2);
}

namespace {
// A planner on resnet18 in D3's setting (WiFi) fed single compute observations of the first four
// layers: a stage's, or a probe's, which runs 15% faster than the stages (its fragment and their
// layers run at different fractions of the profile's speed).
struct probed_planner {
  graph g = load_model("resnet18");
  layer_profile profile = profile_from_flops(g, 100.0);
  cluster_model cluster = d3_cluster("WiFi");
  std::unique_ptr<adaptive_planner> planner;
  std::vector<int> stem{0, 1, 2, 3};
  double stem_ms = 0;

  explicit probed_planner(adaptation_options options = {}) {
    three_tier_choice start;
    auto planned = hpa_strategy(g, profile, cluster, {}, &start);
    BOOST_REQUIRE(planned.is_ok());
    planner = std::make_unique<adaptive_planner>(g, profile, cluster, start, planned->plan, options);
    for (int l : stem) stem_ms += profile.milliseconds[size_t(l)];
    BOOST_REQUIRE(stem_ms >= 0.2);
  }
  // `node` seen at `speed` by a probe or a stage, then a decision; its speed estimate after it.
  double observe(const std::string& node, double speed, bool probe) {
    planner->observe_compute(
        {{node, stem, std::vector<double>(stem.size(), 1.0), stem_ms / speed / (probe ? 1.15 : 1.0), probe}});
    planner->decide();
    return speed_of(node);
  }
  double speed_of(const std::string& node) const { return planner->estimate().nodes.at(node).speed; }
};
}  // namespace

// Wall clock: probes are believed up to a node's planned speed only (what a busy host's phases
// and a cgroup quota's burst make of them; adaptation_options::probes_beyond_plan).
adaptation_options wall_clock_options() {
  adaptation_options o;
  o.probes_beyond_plan = 0;
  return o;
}

BOOST_AUTO_TEST_CASE(probes_of_idle_nodes_move_their_speed_only_when_they_change) {
  probed_planner p{wall_clock_options()};
  adaptive_planner& planner = *p.planner;
  const cluster_model& cluster = p.cluster;
  auto probe = [&](const std::string& node, double speed) { return p.observe(node, speed, true); };
  const double planned_speed = cluster.nodes.at("edge3").speed;
  for (int k = 0; k < 4; ++k) BOOST_TEST(probe("edge3", planned_speed) == planned_speed);  // not 15% faster
  for (int k = 0; k < 3; ++k) probe("edge3", planned_speed / 5);
  BOOST_TEST(planner.estimate().nodes.at("edge3").speed == planned_speed / 5, boost::test_tools::tolerance(1e-9));
  for (int k = 0; k < 3; ++k) probe("edge3", planned_speed);
  BOOST_TEST(planner.estimate().nodes.at("edge3").speed == planned_speed, boost::test_tools::tolerance(1e-9));
  // Back at its reference, the node is known as well as before the change: its slow samples
  // left the window with it.
  BOOST_TEST(planner.uncertainty() == 0.0, planner.uncertainty() << " (" << planner.uncertainty_source() << ")");
  // A node its stages showed at 0.8 of the profile's speed stays there while idle.
  for (int k = 0; k < 3; ++k) p.observe("edge4", 0.8 * planned_speed, false);
  BOOST_TEST(planner.estimate().nodes.at("edge4").speed == 0.8 * planned_speed, boost::test_tools::tolerance(1e-9));
  for (int k = 0; k < 4; ++k)
    BOOST_TEST(probe("edge4", planned_speed) == 0.8 * planned_speed, boost::test_tools::tolerance(1e-9));
  // Probes first taken while the host was busy, then twice as fast: the node is restored to its
  // planned speed, not taken for twice as fast as its profile.
  for (int k = 0; k < 3; ++k) probe("edge2", planned_speed / 2);
  for (int k = 0; k < 3; ++k) probe("edge2", planned_speed);
  BOOST_TEST(planner.estimate().nodes.at("edge2").speed == planned_speed, boost::test_tools::tolerance(1e-9));
  // And one its stages showed at 0.8 that then probes twice as fast: at most its planned speed.
  for (int k = 0; k < 3; ++k) probe("edge4", 2 * 0.8 * planned_speed);
  BOOST_TEST(planner.estimate().nodes.at("edge4").speed == planned_speed, boost::test_tools::tolerance(1e-9));
}

// A node that changes as the plan leaves it (a plan leaves a node because it slowed, and the node
// may recover at that very answer; or a node left for another reason slows then): its first
// probes, 3x or more off what its stages last showed, set its speed; within 3x, what a probe's
// fragment and a stage's layers run at may just differ, and its stages' speed stands.
BOOST_AUTO_TEST_CASE(a_node_that_changes_as_it_goes_idle_is_priced_by_its_probes) {
  probed_planner p;
  const adaptive_planner& planner = *p.planner;
  auto observe = [&](const std::string& node, double speed, bool probe) { return p.observe(node, speed, probe); };
  const double speed = p.cluster.nodes.at("edge3").speed;
  for (int k = 0; k < 3; ++k) observe("edge3", speed / 5, false);
  BOOST_TEST(planner.estimate().nodes.at("edge3").speed == speed / 5, boost::test_tools::tolerance(1e-9));
  observe("edge3", speed, true);
  observe("edge3", speed, true);
  BOOST_TEST(planner.estimate().nodes.at("edge3").speed == speed / 5, boost::test_tools::tolerance(1e-9));
  // The third probe completes the reference: back at its planned speed (not the probe's 15% beyond).
  BOOST_TEST(observe("edge3", speed, true) == speed, boost::test_tools::tolerance(1e-9));
  for (int k = 0; k < 4; ++k) BOOST_TEST(observe("edge3", speed, true) == speed, boost::test_tools::tolerance(1e-9));
  // The reverse: run at its speed, then slowed to a fifth as it went idle.
  for (int k = 0; k < 3; ++k) observe("edge4", speed, false);
  for (int k = 0; k < 3; ++k) observe("edge4", speed / 5, true);
  const double slowed = planner.estimate().nodes.at("edge4").speed;
  BOOST_TEST(slowed >= 0.15 * speed);
  BOOST_TEST(slowed <= 0.25 * speed);
  // Within 3x, the stages' speed stands.
  for (int k = 0; k < 3; ++k) observe("edge2", speed / 2, false);
  for (int k = 0; k < 4; ++k)
    BOOST_TEST(observe("edge2", speed, true) == speed / 2, boost::test_tools::tolerance(1e-9));
  // An idle node whose probes turn five times faster than its reference is taken at that where
  // probes measure the node alone (the virtual clock, the default options); under the wall
  // clock at its planned speed at most, as a short probe can run on a cgroup quota's burst.
  for (int k = 0; k < 3; ++k) observe("edge1", speed, true);
  for (int k = 0; k < 2; ++k) observe("edge1", 5 * speed, true);
  BOOST_TEST(planner.estimate().nodes.at("edge1").speed == 5 * speed, boost::test_tools::tolerance(1e-9));
  probed_planner wall{wall_clock_options()};
  for (int k = 0; k < 3; ++k) wall.observe("edge1", speed, true);
  for (int k = 0; k < 2; ++k) wall.observe("edge1", 5 * speed, true);
  BOOST_TEST(wall.speed_of("edge1") == speed, boost::test_tools::tolerance(1e-9));
  // Below twice its planned speed, a faster probe restores the node to that speed only.
  probed_planner fresh;
  for (int k = 0; k < 3; ++k) fresh.observe("edge1", speed, true);
  for (int k = 0; k < 2; ++k) fresh.observe("edge1", 1.6 * speed, true);
  BOOST_TEST(fresh.speed_of("edge1") == speed, boost::test_tools::tolerance(1e-9));
}

// A node whose stages run at twice its planned speed or more, for good (planned while busy, or a
// device whose clock went up), is priced at what they show: the plan moves work onto it. So is
// an idle one whose probes show it (the virtual clock's options; the wall clock's cap them at its
// planned speed, above).
BOOST_AUTO_TEST_CASE(a_device_four_times_faster_than_planned_takes_the_work) {
  int moved = 0, idle_moved = 0;
  for (const std::string name : {"mobilenet_v2", "resnet18", "googlenet", "alexnet", "vgg16"}) {
    const graph g = load_model(name);
    simulation sim{g, profile_from_flops(g, 100.0), 0.05};
    sim.probe_idle_nodes = true;
    const cluster_model planned = d3_cluster("WiFi");
    auto start = hpa_strategy(g, sim.profile, planned);
    BOOST_REQUIRE(start.is_ok());
    auto start_sg = build_stage_graph(g, start->plan);
    BOOST_REQUIRE(start_sg.is_ok());
    const bool device_idle =
        std::none_of(start_sg->stages.begin(), start_sg->stages.end(),
                     [](const stage& st) { return st.node == "device" && st.kind == stage_kind::segment; });
    cluster_model truth = planned;
    truth.nodes.at("device").speed *= 4;
    auto best = hpa_strategy(g, sim.profile, truth);
    BOOST_REQUIRE(best.is_ok());
    const run_result r = run(sim, planned, 40, [&](int i) { return i < 5 ? planned : truth; });
    auto end_sg = build_stage_graph(g, r.plan);
    BOOST_REQUIRE(end_sg.is_ok());
    auto end_ms = predict_plan(g, *end_sg, sim.profile, truth);
    BOOST_REQUIRE(end_ms.is_ok());
    BOOST_TEST_MESSAGE(name << ": " << r.migrations << " migrations, from " << describe(r.start) << " to "
                            << describe(r.plan) << ": " << end_ms->latency_ms << " ms, the optimum "
                            << best->prediction.latency_ms << " ms");
    if (r.migrations > 0) ++(device_idle ? idle_moved : moved);
    BOOST_TEST(r.migrations <= 2, name);
    BOOST_TEST(end_ms->latency_ms <= best->prediction.latency_ms * 1.10, name);
  }
  // The cases this is about: plans the faster device changes, from a device that computes and
  // from one that only its probes measure.
  BOOST_TEST(moved >= 1);
  BOOST_TEST(idle_moved >= 1);
}

namespace {

// Follows `trace` on D3's testbed, `per_step` answers per step, every node provisioned (moves
// ship nothing): after each change the plan serving is within 10% of HPA's plan on the new
// testbed (cost model) within 5 answers, with at most two migrations per step. Observed as the
// virtual clock's runs observe: transfers exact within 1%, stage times within 10% (the host's
// CPU time), idle links, the device<->cloud path and idle nodes probed after every answer.
void follow_within_five_answers(const emulation_trace& trace, const std::string& label, int per_step,
                                const std::vector<std::string>& models) {
  const testbed_file bed = testbed_file::d3_setting();
  std::vector<cluster_model> steps;
  testbed links = bed.base;
  std::map<std::string, double> speeds;
  for (const trace_step& s : trace.steps) {
    links = s.apply(links);
    cluster_model c = cluster_model::evaluation(links, bed.edge_nodes);
    for (const auto& [node, speed] : s.speeds) speeds[node] = speed;
    for (const auto& [node, speed] : speeds) c.nodes.at(node).speed = speed;
    steps.push_back(c);
  }
  for (const std::string& name : models) {
    const graph g = load_model(name);
    simulation sim{g, memory_bound_profile(g), 0.10};
    sim.link_noise = 0.01;
    sim.probe_idle_nodes = true;
    sim.probe_device_cloud = true;
    three_tier_choice start;
    auto planned = hpa_strategy(g, sim.profile, steps[0], {}, &start);
    BOOST_REQUIRE(planned.is_ok());
    adaptive_planner planner(g, sim.profile, steps[0], start, planned->plan);
    planner.note_cached(held_everywhere(g, steps[0]));
    deployment_plan plan = planned->plan;
    for (size_t s = 0; s < steps.size(); ++s) {
      auto best = hpa_strategy(g, sim.profile, steps[s]);
      BOOST_REQUIRE(best.is_ok());
      int within = -1, migrations = 0;
      for (int k = 0; k < per_step; ++k) {
        auto sg = build_stage_graph(g, plan);
        BOOST_REQUIRE(sg.is_ok());
        auto ms = predict_plan(g, *sg, sim.profile, steps[s]);
        BOOST_REQUIRE(ms.is_ok());
        if (within < 0 && ms->latency_ms <= best->prediction.latency_ms * 1.10) within = k + 1;
        auto d = sim.request(planner, plan, steps[s], int(s) * per_step + k);
        if (std::getenv("D3_TRACE_ADAPT"))
          BOOST_TEST_MESSAGE("  " << name << " " << label << " step " << s << " answer " << k << ": " << ms->latency_ms
                                  << " ms (best " << best->prediction.latency_ms << "); " << planner.verdict()
                                  << "\n    estimates: " << describe(planner.estimate()) << "\n    serving: " << describe(plan));
        if (d) {
          ++migrations;
          plan = d->plan;
        }
      }
      const std::string what = name + ", " + label + " step " + std::to_string(s);
      BOOST_TEST_MESSAGE(what << ": within 10% of HPA's plan after " << within << " answers, " << migrations
                              << " migrations");
      BOOST_TEST(within >= 1, what << " never came within 10%");
      BOOST_TEST(within <= 5, what << ": " << within << " answers");
      BOOST_TEST(migrations <= 2, what << ": " << migrations << " migrations");
    }
  }
}

const std::vector<std::string> trace_models = {"alexnet", "resnet18", "googlenet", "vgg16", "mobilenet_v2"};

}  // namespace

BOOST_AUTO_TEST_CASE(every_step_of_the_d3_traces_is_followed_within_five_answers) {
  // The traces of D3's setting in apps/config (the backbone drops, the LAN drops, an edge node
  // slows to a fifth, everything restores), 25 answers per step.
  for (const std::string file : {"d3-backbone-lan", "d3-edge-slow", "d3-all"}) {
    auto trace = load_trace_file(std::string(D3_CONFIG_DIR) + "/" + file + ".trace.json");
    BOOST_REQUIRE_MESSAGE(trace.is_ok(), trace.message());
    follow_within_five_answers(*trace, file, 25, trace_models);
  }
}

BOOST_AUTO_TEST_CASE(a_change_soon_after_two_migrations_is_followed_as_quickly_as_the_first) {
  // Steps 12 answers apart, within damping_requests of each other: two edges slow at once, then
  // the backbone drops and the cloud halves (two migrations), then the idle edges recover while
  // the LAN halves, then everything restores. Damping doubles the confirmations of a move that
  // follows recent ones; the idle edges' recovery, found by their probes, is a new testbed and
  // must not wait for them. (Measured on the virtual clock, vgg16: the move back onto the
  // recovered edges waited 8 answers as a move back; the simulation before the fix: 9.)
  auto trace = parse_trace_json(R"({"steps": [
      {"at_ms": 0, "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2}, "edge-cloud": {"mbit_per_s": 50, "latency_ms": 30}}},
      {"at_ms": 1, "speeds": {"edge1": 0.15, "edge3": 0.15}},
      {"at_ms": 2, "links": {"edge-cloud": {"mbit_per_s": 10, "latency_ms": 40}}, "speeds": {"cloud": 2}},
      {"at_ms": 3, "links": {"device-edge": {"mbit_per_s": 50, "latency_ms": 4}}, "speeds": {"edge1": 0.5, "edge3": 0.5}},
      {"at_ms": 4, "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2}, "edge-cloud": {"mbit_per_s": 50, "latency_ms": 30}},
       "speeds": {"cloud": 4}}]})");
  BOOST_REQUIRE_MESSAGE(trace.is_ok(), trace.message());
  follow_within_five_answers(*trace, "close steps", 12, trace_models);
}
