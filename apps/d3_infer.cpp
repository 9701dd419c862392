// d3-infer: deploys a model over running d3-node processes according to a plan and runs requests
// through it (data flows node to node; the app sends inputs and receives outputs).
#include <algorithm>
#include <functional>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/arithmetic_fingerprint.hpp"
#include "kernels/memory.hpp"
#include "apps/app_support.hpp"
#include "apps/image_input.hpp"
#include "planner/codec_choice.hpp"
#include "apps/infer_options.hpp"
#include "planner/adaptation.hpp"
#include "planner/standby.hpp"
#include "planner/strategies.hpp"
#include "planner/three_tier_space.hpp"

#include "actors/deployment.hpp"
#include "profiling/message_costs.hpp"
#include "emulation/cluster_file.hpp"
#include "emulation/emulation_trace.hpp"
#include "emulation/testbed_file.hpp"
#include "actors/planner_actor.hpp"
#include "plan/plan.hpp"
#include "plan/plan_repair.hpp"
#include "actors/protocol.hpp"
#include "actors/transport.hpp"
#include "security/tls_identity.hpp"
#include "topology/topology_log.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"
#include "schema/model_file.hpp"
#include "onnx/onnx_import.hpp"

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

int bad_input(const std::string& message) {
  std::cerr << "d3-infer: " << message << "\n";
  return exit_bad_input;
}

// The emulated testbed (emulation): --uplink, else the cluster file's "testbed" entry (virtual
// clock), else unshaped (wall clock) or WiFi (virtual clock).
d3::result<d3::emulation_settings> emulation_of(const d3::infer_options& o, const d3::cluster_file* cluster) {
  d3::emulation_settings em;
  em.clock = o.clock == "virtual" ? d3::clock_mode::virtual_time : d3::clock_mode::wall;
  std::string uplink = o.uplink;
  if (uplink.empty()) uplink = o.clock == "wall" ? "none" : cluster ? cluster->uplink : "WiFi";
  em.shaped = uplink != "none";
  if (!em.shaped) return em;
  auto t = cluster ? cluster->emulated_testbed(uplink) : d3::testbed::with_uplink(uplink);
  if (!t) return d3::status::error("testbed: " + t.message());
  em.links = t.value();
  return em;
}

std::string describe_emulation(const d3::emulation_settings& em) {
  if (!em.shaped) return "links unshaped (--uplink none)";
  return d3::format("emulated testbed (emulation, not real links): uplink %s; device-edge %.2f Mbit/s %.1f ms, "
                    "edge-edge %.0f Mbit/s %.1f ms, edge-cloud %.0f Mbit/s %.1f ms",
                    em.links.uplink.c_str(), em.links.device_edge.bandwidth_mbit_per_s, em.links.device_edge.latency_ms,
                    em.links.edge_edge.bandwidth_mbit_per_s, em.links.edge_edge.latency_ms,
                    em.links.edge_cloud.bandwidth_mbit_per_s, em.links.edge_cloud.latency_ms);
}

// What a run needs before any node is contacted, read and checked from the options.
struct inference_inputs {
  std::optional<d3::emulation_trace> trace;
  std::optional<d3::cluster_file> cluster;
  std::vector<d3::node_endpoint> nodes;
  d3::graph g;
  std::optional<d3::deployment_plan> plan;  // --plan (a strategy plans after connecting)
  std::unique_ptr<d3::topology_log> log;
  std::vector<std::map<std::string, d3::tensor>> requests;  // one input map per request
};

d3::status check_plan(const d3::graph& g, const d3::deployment_plan& plan) {
  auto sg = d3::build_stage_graph(g, plan);
  return sg ? d3::status::ok() : sg.error();
}

d3::result<inference_inputs> read_inputs(const d3::infer_options& o) {
  inference_inputs in;
  if (!o.trace.empty()) {
    auto loaded = d3::load_trace_file(o.trace);
    if (!loaded) return loaded.error();
    in.trace = std::move(loaded.value());
  }
  if (!o.nodes.empty()) {
    auto parsed = d3::parse_node_list(o.nodes);
    if (!parsed) return parsed.error();
    in.nodes = parsed.value();
  } else {
    auto cluster = d3::load_cluster_file(o.cluster);
    if (!cluster) return cluster.error();
    for (const d3::cluster_member& n : cluster->nodes) in.nodes.push_back({n.name, n.host, n.port});
    in.cluster = std::move(cluster.value());
  }
  auto g = d3::load_model_by_name(o.model, o.model_seed);
  if (!g) return g.error();
  in.g = std::move(g.value());
  if (!o.images.empty()) D3_RETURN_IF_ERROR(d3::add_image_preprocess(in.g));
  // A plan file is checked before any node is contacted.
  if (o.strategy.empty()) {
    auto plan = d3::load_plan_file(o.plan);
    if (!plan) return plan.error();
    D3_RETURN_IF_ERROR(check_plan(in.g, *plan));
    in.plan = std::move(plan.value());
  }
  if (!o.log.empty()) {
    auto opened = d3::topology_log::open(o.log);
    if (!opened) return opened.error();
    in.log = std::move(opened.value());
  }
  // Inputs: seeded, or --input for every request.
  const std::vector<int> input_layers = in.g.input_layers();
  if (!o.input.empty() && input_layers.size() != 1)
    return d3::status::error("--input: the model has " + std::to_string(input_layers.size()) + " inputs, not one");
  std::optional<d3::tensor> file_input;
  std::vector<d3::tensor> images;
  for (const std::string& path : o.images) {
    auto image = d3::image_input(in.g, path);
    if (!image) return image.error();
    images.push_back(std::move(image.value()));
  }
  if (!o.input.empty()) {
    auto t = d3::read_nchw_file(o.input, in.g.layers[size_t(input_layers[0])].output_shape);
    if (!t) return t.error();
    file_input = std::move(t.value());
  }
  in.requests.resize(size_t(o.requests));
  for (size_t i = 0; i < in.requests.size(); ++i)
    for (int l : input_layers)
      in.requests[i][in.g.layers[size_t(l)].name] = !images.empty() ? images[i % images.size()]
                                                    : file_input    ? *file_input
                                                                    : d3::sample_input(in.g, l, o.seed + i);
  return in;
}

std::string megabytes(size_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MB", double(bytes) / 1e6);
  return buffer;
}

// The single-process baseline: runs request i's inputs in this process and times it.
using local_run = std::function<d3::result<std::vector<d3::tensor>>(size_t, double*)>;

// Runs the requests once and reports; returns the number of bad answers. With a local baseline
// (--verify), blocks of requests through the nodes alternate with single-process runs of the same
// inputs, so both latencies are measured side by side, under the same machine state over time.
int run_and_report(d3::deployment& dep, const d3::graph& g, const d3::infer_options& o, const std::string& links,
                   const std::vector<std::map<std::string, d3::tensor>>& inputs, const local_run& local) {
  constexpr size_t block = 5;
  std::vector<d3::request_outcome> outcomes;
  std::vector<std::vector<d3::tensor>> expected;
  std::vector<double> local_ms;
  int local_failures = 0;
  for (size_t begin = 0; begin < inputs.size(); begin += block) {
    const size_t end = std::min(inputs.size(), begin + block);
    std::vector<std::map<std::string, d3::tensor>> part(inputs.begin() + long(begin), inputs.begin() + long(end));
    for (d3::request_outcome& r : dep.run(part, o.in_flight)) outcomes.push_back(std::move(r));
    if (local)
      for (size_t i = begin; i < end; ++i) {
        double ms = 0;
        auto out = local(i, &ms);
        if (!out) {
          ++local_failures;
          std::cerr << "d3-infer: single-process run of request " << i << ": " << out.message() << "\n";
        }
        expected.push_back(out ? std::move(out.value()) : std::vector<d3::tensor>());
        local_ms.push_back(ms);
      }
  }
  std::vector<double> latencies, virtual_latencies;
  int failed = 0, differ = 0, verified = 0;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const d3::request_outcome& r = outcomes[i];
    if (!r.ok) {
      ++failed;
      std::cerr << "d3-infer: request " << r.id << " failed: " << r.error << "\n";
      continue;
    }
    latencies.push_back(r.latency_ms);
    virtual_latencies.push_back(r.virtual_latency_ms);
    if (o.verify) {
      bool same = true;
      for (size_t k = 0; k < g.outputs.size(); ++k) {
        auto it = r.outputs.find(g.layers[size_t(g.outputs[k])].name);
        same = same && it != r.outputs.end() && k < expected[i].size() && d3::bitwise_equal(it->second, expected[i][k]);
      }
      if (same) ++verified;
      else {
        ++differ;
        std::cerr << "d3-infer: request " << r.id << ": the answer differs from the single-process run\n";
      }
    }
  }
  for (const std::string& e : dep.stray_errors()) std::cerr << "d3-infer: stage error: " << e << "\n";
  if (!o.images.empty()) {
    // The answer for each image (its first request), as classes.
    std::vector<std::string> labels;
    if (!o.labels.empty()) {
      auto read = d3::read_labels(o.labels);
      if (read) labels = std::move(read.value());
      else std::cerr << "d3-infer: " << read.message() << "\n";
    }
    for (size_t i = 0; i < std::min(outcomes.size(), o.images.size()); ++i) {
      const d3::request_outcome& r = outcomes[i];
      auto out = r.ok && !g.outputs.empty() ? r.outputs.find(g.layers[size_t(g.outputs[0])].name) : r.outputs.end();
      if (out != r.outputs.end())
        std::printf("image %s: %s\n", o.images[i].c_str(), d3::top5(g, out->second, labels).c_str());
    }
  }
  std::printf("requests: %zu sent, %d in flight at most: %zu answered, %d failed\n", outcomes.size(), o.in_flight,
              latencies.size(), failed);
  // What crossed between nodes, as encoded (the app's inputs and every stage's sends, measured).
  std::vector<double> sent;
  for (const d3::request_outcome& r : outcomes) {
    if (!r.ok) continue;
    double bytes = double(r.app_bytes_sent);
    for (const d3::stage_report& s : r.stage_reports) bytes += double(s.bytes_sent);
    sent.push_back(bytes);
  }
  if (!sent.empty())
    std::printf("bytes sent between nodes per request (measured, as encoded): median %.0f\n", d3::percentile(sent, 0.5));
  if (o.verify)
    std::printf("verify: %d of %zu answers memcmp-equal to the single-process run\n", verified, outcomes.size());
  if (o.clock == "virtual") {
    std::printf("latency: median %.2f ms  p90 %.2f ms  (end to end, virtual clock: EMULATED times, the testbed's "
                "node speeds and links applied to measured thread CPU time)\n",
                d3::percentile(virtual_latencies, 0.5), d3::percentile(virtual_latencies, 0.9));
    std::printf("wall time per request on this machine (not emulated): median %.2f ms  p90 %.2f ms\n",
                d3::percentile(latencies, 0.5), d3::percentile(latencies, 0.9));
  } else {
    std::printf("latency: median %.2f ms  p90 %.2f ms  (end to end, wall clock%s)\n", d3::percentile(latencies, 0.5),
                d3::percentile(latencies, 0.9), links.c_str());
  }
  if (local) {
    const double median = d3::percentile(local_ms, 0.5);
    std::printf("single-process (d3::executor, 1 thread, same inputs, runs alternating with the distributed ones): "
                "median %.2f ms  p90 %.2f ms",
                median, d3::percentile(local_ms, 0.9));
    if (o.clock == "wall" && median > 0) std::printf("; distributed / single-process %.3f", d3::percentile(latencies, 0.5) / median);
    std::printf("\n");
  }
  std::fflush(stdout);
  return failed + differ + local_failures;
}


// --strategy: the plan a strategy picks on the cost model (planner/), priced with per-layer times
// measured in this process and the evaluation testbed's speeds and links by node role.
// What --adapt starts the planner from: the profile, cluster and choice the plan was made with.
struct adaptation_start {
  d3::layer_profile profile;
  d3::cluster_model cluster;
  d3::three_tier_choice choice;
  std::optional<d3::codec_choice_options> codecs;  // --codecs auto: planning, adapting and failing over with codecs
};

d3::result<d3::deployment_plan> plan_by_strategy(const d3::infer_options& o, const d3::graph& g,
                                                 const std::vector<d3::node_endpoint>& nodes,
                                                 const d3::cluster_file* cluster_file, adaptation_start* start,
                                                 d3::deployment& dep) {
  const std::string uplink = !o.uplink.empty() && o.uplink != "none" ? o.uplink
                             : cluster_file                           ? cluster_file->uplink
                                                                      : "WiFi";
  auto t = cluster_file ? cluster_file->emulated_testbed(uplink) : d3::testbed::with_uplink(uplink);
  if (!t) return t.error();
  const std::map<std::string, std::string> roles = cluster_file ? cluster_file->roles() : std::map<std::string, std::string>();
  d3::cluster_model cluster;
  cluster.links = t.value();
  for (const d3::node_endpoint& n : nodes) {
    const std::string role = roles.count(n.name) ? roles.at(n.name) : n.name.rfind("edge", 0) == 0 ? "edge" : n.name;
    auto r = d3::node_role_from_string(role);
    if (!r) return d3::status::error("--strategy: node '" + n.name + "': " + r.message());
    cluster.nodes[n.name] = {r.value(), t->speed_of(r.value()), nullptr};
  }
  for (const char* needed : {"device", "edge1", "cloud"})
    if (!cluster.nodes.count(needed)) return d3::status::error(std::string("--strategy: the cluster has no node '") + needed + "'");
  auto profile = d3::measure_local_profile(g, 3);
  if (!profile) return profile.error();
  if (o.profile_source == "nodes") D3_RETURN_IF_ERROR(d3::probe_node_profiles(dep, g, cluster));
  // Tensors encoded on the links where the measured ratios and codec costs predict it faster (the
  // planner actor adapts with them too).
  const bool codecs = d3::codecs_on(o);
  if (codecs) start->codecs = d3::codec_choice_options{};
  d3::hpa_options search;
  search.codecs = start->codecs;
  auto chosen = o.adapt ? d3::hpa_strategy(g, *profile, cluster, search, &start->choice)
                        : d3::plan_with_strategy(o.strategy, g, *profile, cluster, codecs ? &*start->codecs : nullptr);
  if (!chosen) return chosen.error();
  if (codecs) {
    std::printf("d3-infer: codecs (lossless, chosen on the cost model):");
    if (chosen->plan.codecs.empty()) std::printf(" none predicted faster, every tensor raw");
    for (const d3::plan_codec& c : chosen->plan.codecs)
      std::printf(" %s->%s %s;", c.tensor.c_str(), c.to.c_str(), d3::to_string(c.codec));
    std::printf("\n");
  }
  start->profile = profile.value();  // also what a failover re-plans with
  start->cluster = cluster;
  std::printf("d3-infer: strategy %s on the cost model (testbed uplink %s; layer times %s): predicted %.1f ms;",
              o.strategy.c_str(), uplink.c_str(),
              o.profile_source == "nodes" ? "probed on each node" : "measured here, over the role's testbed speed 0.1/0.5/4",
              chosen->prediction.latency_ms);
  for (const d3::plan_segment& s : chosen->plan.segments)
    std::printf(" %s %s..%s;", s.node.c_str(), s.first.c_str(), s.last.c_str());
  for (const d3::plan_tiled_run& r : chosen->plan.tiled_runs)
    std::printf(" tiled %s %s..%s over %zu nodes;", r.grid.c_str(), r.first.c_str(), r.last.c_str(), r.nodes.size());
  std::printf("\n");
  chosen->plan.strategy = o.strategy;
  return chosen->plan;
}

void print_deployment(const d3::graph& g, const d3::infer_options& o, const d3::deployment_plan& plan,
                      const d3::deploy_report& report, size_t stages, size_t nodes) {
  std::printf("d3-infer: model %s (hash %016llx), plan %s version %d (%s), %zu stages on %zu nodes, %s clock\n",
              g.name.c_str(), (unsigned long long)report.model_hash,
              o.plan.empty() ? ("by --strategy " + o.strategy).c_str() : o.plan.c_str(), report.plan_version,
              plan.strategy.c_str(), stages, nodes, o.clock.c_str());
  std::printf("deployed in %.1f ms; weights shipped: %s in %zu layers (%zu layers already cached)", report.deploy_ms,
              megabytes(report.weight_bytes_shipped).c_str(), report.layers_shipped, report.layers_cached);
  for (const auto& [node, b] : report.weight_bytes_per_node) std::printf("; %s %s", node.c_str(), megabytes(b).c_str());
  std::printf("\nbytes per request between nodes%s:", plan.codecs.empty() ? "" : " (raw tensor sizes; encoded ones measured below)");
  size_t total = 0;
  for (const d3::link_bytes& l : report.bytes_per_request) {
    std::printf(" %s->%s %zu;", l.from.c_str(), l.to.c_str(), l.bytes);
    total += l.bytes;
  }
  std::printf(" total %zu\n", total);
  std::fflush(stdout);
}

// Deploys (twice with --redeploy), runs the requests and reports; the exit code.
int deploy_and_run(caf::actor_system& system, const d3::infer_options& o, inference_inputs& in,
                   const d3::emulation_settings& em, const local_run& local) {
  d3::deployment_options dopts;
  dopts.timeout = std::chrono::milliseconds(o.timeout_ms);
  dopts.silence = dopts.peer_silence = std::chrono::milliseconds(o.silence_ms);
  dopts.log = in.log.get();
  dopts.emulation = em;
  // Real links slower than the default heartbeat floor (the cluster file's testbed says how slow).
  if (in.cluster && in.cluster->has_testbed)
    if (auto t = in.cluster->emulated_testbed(); t && t->slowest_bandwidth_mbit() > 0)
      dopts.heartbeat_floor_mbit = std::min(dopts.heartbeat_floor_mbit, t->slowest_bandwidth_mbit());
  // Every third answer: under the wall clock probes are real messages through nodes that may be
  // throttled (a namespace cluster's cpu quotas); d3-bench adapt (virtual clock) probes after
  // every answer.
  if (o.adapt) dopts.idle_probe_every = 3;
  dopts.require_same_arithmetic = o.same_arithmetic;
  const std::string links = em.shaped ? ", shaped links: uplink " + em.links.uplink : ", links not shaped by d3";
  const d3::graph& g = in.g;
  d3::deployment dep(system, dopts);
  if (auto s = dep.connect(in.nodes); !s) return bad_input(s.message());
  for (const auto& [node, arithmetic] : dep.arithmetic_mismatches())
    std::cerr << "d3-infer: warning: node '" << node << "' computes with other arithmetic (" << arithmetic
              << ", this process " << *d3::arithmetic_fingerprint()
              << "): its outputs are not bit-identical to a single process here (--same-arithmetic refuses such nodes)\n";
  adaptation_start start;
  if (!o.strategy.empty()) {
    auto plan = plan_by_strategy(o, g, in.nodes, in.cluster ? &*in.cluster : nullptr, &start, dep);
    if (!plan) return bad_input(plan.message());
    if (auto checked = check_plan(g, *plan); !checked) return bad_input(checked.message());
    in.plan = std::move(plan.value());
  }
  const d3::deployment_plan& plan = *in.plan;
  if (!o.strategy.empty())  // a node lost or back: the strategy again, on the nodes there are
    dep.set_replanner([&o, &g, &start](const std::map<std::string, std::string>& available,
                                       const d3::deployment_plan& deployed) -> d3::result<d3::deployment_plan> {
      d3::cluster_model cluster = start.cluster;
      for (auto it = cluster.nodes.begin(); it != cluster.nodes.end();)
        it = available.count(it->first) ? std::next(it) : cluster.nodes.erase(it);
      auto planned = d3::plan_with_strategy(o.strategy, g, start.profile, cluster, start.codecs ? &*start.codecs : nullptr);
      if (planned) return planned->plan;
      return d3::repair_plan(g, deployed, available);  // e.g. the strategy needs a node that is gone
    });
  int bad = 0;
  const int deployments = o.redeploy ? 2 : 1;
  for (int round = 0; round < deployments; ++round) {
    const size_t faults_before = dep.faults().size();  // a node lost during the deployment counts
    auto report = dep.deploy(g, plan);
    if (!report) {
      std::cerr << "d3-infer: deployment failed: " << report.message() << "\n";
      return exit_failed;
    }
    // The plan running: `plan`, or its failover if a node was lost during the deployment.
    print_deployment(g, o, *dep.running_plan(), *report, dep.stages().stages.size(), in.nodes.size());
    if (in.trace) dep.set_trace(*in.trace);
    std::shared_ptr<d3::adaptive_planner> planner;
    d3::protocol::planner_handle planner_actor;
    if (o.adapt) {
      d3::adaptation_options adapt;
      adapt.codecs = start.codecs;
      // Real times (wall clock) are noisier than the emulation's: on the namespace cluster a
      // verdict on two answers and a 5% margin still let marginal third moves through.
      if (o.clock == "wall") {
        adapt.confirmations = 3;
        adapt.hysteresis = 0.10;
        adapt.interim_moves = false;  // the runtime ships in the background; the planner waits
        adapt.probes_beyond_plan = 0;  // a probe's wall time can run on a quota's burst
      }
      planner = std::make_shared<d3::adaptive_planner>(g, start.profile, start.cluster, start.choice,
                                                       *dep.running_plan(), adapt);
      std::map<std::string, d3::node_role> roles;
      for (const auto& [name, node] : start.cluster.nodes) roles[name] = node.role;
      planner_actor = d3::spawn_planner_actor(system, planner, roles);
      // Every answer's verdict goes to the topology log ("planner_verdict"): why the planner
      // stayed or moved, with the estimates it judged on, for a run that adapted late or not.
      auto hook = d3::planner_hook(system, planner_actor);
      d3::topology_log* log = in.log.get();
      dep.set_adaptation(
          [hook, planner, log](const d3::request_outcome& answer) {
            auto decided = hook(answer);
            if (log) {
              const d3::cluster_model& e = planner->estimate();
              nlohmann::json speeds;
              for (const auto& [name, node] : e.nodes) speeds[name] = node.speed;
              log->write({{"event", "planner_verdict"},
                          {"request", answer.id},
                          {"latency_ms", answer.latency_ms},
                          {"virtual_latency_ms", answer.virtual_latency_ms},
                          {"plan_version", answer.plan_version},
                          {"verdict", planner->verdict()},
                          {"mbit_per_s",
                           {{"device-edge", e.links.device_edge.bandwidth_mbit_per_s},
                            {"edge-edge", e.links.edge_edge.bandwidth_mbit_per_s},
                            {"edge-cloud", e.links.edge_cloud.bandwidth_mbit_per_s},
                            {"device-cloud", e.links.link(d3::node_role::device, d3::node_role::cloud).bandwidth_mbit_per_s}}},
                          {"speeds", speeds}});
            }
            return decided;
          },
          &g);
      if (o.standby) {
        const d3::cluster_model cluster = start.cluster;
        dep.set_standby([&g, cluster](const d3::deployment_plan& p) { return d3::standby_copies(g, p, cluster); });
        std::printf("standby copies: %.1f MB sent as background traffic (EMULATED links)\n",
                    double(dep.standby_sent().weight_bytes_shipped) / 1e6);
      }
    }
    const size_t migrations_before = dep.migrations().size();
    bad += run_and_report(dep, g, o, links, in.requests, local);
    for (size_t k = faults_before; k < dep.faults().size(); ++k) {
      const d3::deployment::fault_event& f = dep.faults()[k];
      if (f.what == "down")
        std::printf("node %s down (%s), detected %.0f ms after its last heartbeat answer; %s\n", f.node.c_str(),
                    f.cause.c_str(), f.detected_after_ms,
                    f.new_version > 0 ? d3::format("failover to plan v%d in %.0f ms, %zu requests re-sent", f.new_version,
                                                   f.recovered_ms, f.requests_resent).c_str()
                                      : ("no failover: " + f.error).c_str());
      else
        std::printf("node %s rejoined (%s)\n", f.node.c_str(), f.cause.c_str());
    }
    for (size_t m = migrations_before; m < dep.migrations().size(); ++m) {
      const d3::migration_report& r = dep.migrations()[m];
      std::printf("migration v%d -> v%d: %zu layers moved, %zu unchanged; %s of weights shipped in %zu layers; %.1f ms%s\n",
                  r.from_version, r.to_version, r.layers_moved.size(), r.layers_unchanged,
                  megabytes(r.deploy.weight_bytes_shipped).c_str(), r.deploy.layers_shipped, r.deploy.deploy_ms,
                  r.shipped_in_background ? d3::format(" (v%d served while they crossed)", r.from_version).c_str() : "");
    }
    if (planner) {
      const d3::cluster_model& e = planner->estimate();
      // 0 Mbit/s: faster than the transfers could measure.
      const d3::link_profile device_cloud = e.links.link(d3::node_role::device, d3::node_role::cloud);
      std::printf("planner estimates: device-edge %.2f Mbit/s %.2f ms, edge-edge %.1f Mbit/s %.2f ms, "
                  "edge-cloud %.2f Mbit/s %.2f ms, device-cloud %.2f Mbit/s %.2f ms; speeds:",
                  e.links.device_edge.bandwidth_mbit_per_s, e.links.device_edge.latency_ms,
                  e.links.edge_edge.bandwidth_mbit_per_s, e.links.edge_edge.latency_ms,
                  e.links.edge_cloud.bandwidth_mbit_per_s, e.links.edge_cloud.latency_ms,
                  device_cloud.bandwidth_mbit_per_s, device_cloud.latency_ms);
      for (const auto& [name, node] : e.nodes) std::printf(" %s %.3g", name.c_str(), node.speed);
      std::printf("\n");
      caf::anon_send_exit(planner_actor, caf::exit_reason::user_shutdown);
      dep.set_adaptation(nullptr, nullptr);
    }
    dep.teardown();
  }
  return bad == 0 ? 0 : exit_failed;
}

// --tls (or the inference config's "tls"), else the cluster file's "tls", else TLS on with no
// identity (check_tls_identity then says what to give).
d3::tls_settings tls_of(const d3::infer_options& o, const d3::cluster_file* cluster) {
  if (o.tls == "false") return d3::tls_settings::off();
  if (!o.tls.empty()) return d3::tls_settings::from_dir(o.tls, o.tls_name);
  if (cluster && cluster->has_tls) return cluster->tls;
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  d3::retain_freed_memory();
  auto parsed = d3::parse_infer_options(argc, argv);
  if (!parsed) return bad_input(parsed.message());
  const d3::infer_options& o = *parsed;
  if (o.help) {
    std::cout << d3::infer_usage;
    return 0;
  }
  auto read = read_inputs(o);
  if (!read) return bad_input(read.message());
  inference_inputs& in = *read;
  auto em = emulation_of(o, in.cluster ? &*in.cluster : nullptr);
  if (!em) return bad_input(em.message());

  // The single-process baseline (--verify): the same model in this process, warmed up once.
  std::unique_ptr<d3::executor> local_executor;
  local_run local;
  if (o.verify) {
    auto created = d3::executor::create(in.g);
    if (!created) {
      std::cerr << "d3-infer: " << created.message() << "\n";
      return exit_failed;
    }
    local_executor = std::move(created.value());
    local = [&in, &local_executor](size_t i, double* ms) -> d3::result<std::vector<d3::tensor>> {
      std::vector<const d3::tensor*> inputs;
      for (int l : in.g.input_layers()) inputs.push_back(&in.requests[i].at(in.g.layers[size_t(l)].name));
      auto start = std::chrono::steady_clock::now();
      auto out = local_executor->run(inputs);
      *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      return out;
    };
    double ignored = 0;
    if (auto warm = local(0, &ignored); !warm) {
      std::cerr << "d3-infer: single-process run: " << warm.message() << "\n";
      return exit_failed;
    }
  }

  const d3::tls_settings tls = tls_of(o, in.cluster ? &*in.cluster : nullptr);
  if (auto checked = d3::check_tls_identity(tls, "TLS"); !checked) return bad_input(checked.message());
  if (!tls.enabled) std::cerr << d3::plaintext_warning("d3-infer") << "\n";
  caf::actor_system_config cfg;
  d3::protocol::configure_process(cfg);
  d3::transport::configure_tls(cfg, tls);
  caf::actor_system system{cfg};
  std::printf("d3-infer: %s clock%s; %s\n", o.clock.c_str(),
              o.clock == "virtual" ? " (EMULATED times; node speeds from each d3-node's config)" : " (real time)",
              describe_emulation(*em).c_str());
  return deploy_and_run(system, o, in, *em, local);
}
