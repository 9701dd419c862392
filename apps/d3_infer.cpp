// d3-infer: deploys a model over running d3-node processes according to a plan and runs requests
// through it (data flows node to node; the app sends inputs and receives outputs).
#include <algorithm>
#include <functional>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/app_support.hpp"
#include "planner/adaptation.hpp"
#include "planner/strategies.hpp"
#include "planner/three_tier_space.hpp"

#include "actors/deployment.hpp"
#include "profiling/message_costs.hpp"
#include "emulation/emulation_trace.hpp"
#include "emulation/testbed_file.hpp"
#include "actors/planner_actor.hpp"
#include "plan/plan.hpp"
#include "actors/protocol.hpp"
#include "topology/topology_log.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"
#include "schema/model_file.hpp"
#include "onnx/onnx_import.hpp"

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

const char* usage = R"(usage: d3-infer [--config FILE] (--nodes LIST | --cluster FILE) --plan FILE [options]

Deploys a model over running d3-node processes and runs requests through it. The app connects
to every node, ships each node only the layers it lacks (nodes cache layers by model hash and
layer name), spawns the plan's stages (segments, scatter, tiles, gather) on their nodes with
remote_spawn, wires them node to node, sends seeded random inputs with request ids, and collects
the answers by id.

  --config FILE       an inference config (JSON, e.g. apps/config/resnet18-demo.infer.json): the
                      options below as keys (cluster, nodes, model, plan, requests, in_flight,
                      clock, uplink, verify, log, timeout_ms, seed, input), paths relative to it;
                      the command line overrides it
  --nodes LIST        NAME=HOST:PORT,... e.g. device=127.0.0.1:4301,edge1=127.0.0.1:4302
  --cluster FILE      the nodes from a cluster file (apps/config/cluster.json)
  --model NAME|FILE   built-in model (alexnet, vgg16, resnet18, googlenet, mobilenet_v2), a d3
                      model file or an ONNX file (default resnet18)
  --plan FILE         deployment plan (JSON, see apps/config/*.plan.json)
  --strategy NAME     instead of a plan file, the plan a strategy chooses on the planner's cost
                      model: hpa (D3: device|edge|cloud with the edge's leading run tiled over
                      K edge nodes; never predicted behind a baseline), neurosurgeon (best single
                      device|cloud split), dads (min cut device|cloud split of the DAG),
                      neurosurgeon-edge and dads-edge (the same with the fastest edge node as
                      the server), ftp (DeepThings: all on the edge cluster, the first layers
                      tiled over every edge node), device, edge, cloud (everything on device,
                      the fastest edge node or cloud), three-tier (best untiled
                      device|edge|cloud partition, exhaustive). It prices plans with per-layer
                      times (see --profile) and the evaluation testbed's links (the cluster's
                      uplink, else WiFi); the nodes must include device, edge1 and cloud
  --profile nodes|local  with --strategy, the per-layer compute times the cost model uses:
                      nodes (default) probes every node after connecting (each runs every layer
                      a few times with stand-in weights and reports what its clock charges: with
                      --clock virtual, thread CPU time / its speed; the node caches the result
                      per model); local measures here once (speed 1) and divides by the role's
                      testbed speed
  --requests N        requests to run (default 10)
  --in-flight K       requests in flight at once (default 1)
  --seed S            seed of the inputs (request i uses S + i; default 1)
  --model-seed S      seed of the built-in models' weights (default 2021)
  --verify            checks every answer memcmp-equal to a local single-process run, and
                      reports the single-process median latency of the same inputs
  --timeout-ms T      timeout of every connect, deployment step and answer (default 10000)
  --log FILE          appends the topology log (JSON Lines) to FILE
  --redeploy          deploys the plan a second time and runs the requests again (the second
                      deployment should ship no weights)
  --clock wall|virtual  the clock of the emulated testbed (emulation, not real links or devices;
                      default wall):
                      wall: real time; sends between nodes are delayed per link (latency +
                        bytes / bandwidth, queued per link); compute is real (speed not applied);
                      virtual: every tensor bundle carries a virtual time; a node computes one
                        thing at a time and advances by its thread CPU time / its speed (INI
                        `speed`); links add latency + bytes / bandwidth. Latencies are emulated
                        times, independent of how many nodes share this machine's cores.
                      Requests start at the virtual time of the latest answer (with --in-flight 1
                      the previous answer: node clocks never run ahead); with more in flight they
                      share start times and queue on the node and link clocks.
  --uplink NAME       the device uplink of the testbed: CAT1 (0.13 Mbit/s), 3G (1.1), 4G (5.85),
                      WiFi (18.88), each 5 ms; edge<->edge 1 Gbit/s 0.2 ms, edge<->cloud 100 Mbit/s
                      20 ms (device<->cloud: uplink then backbone); `none`: unshaped links.
                      Default: none with --clock wall; with --clock virtual the cluster file's
                      "testbed" entry ({"uplink": "WiFi", "links": {"device-edge": {"mbit_per_s":
                      B, "latency_ms": L}, "edge-edge": ..., "edge-cloud": ...}}), else WiFi.
                      --uplink overrides the cluster file's uplink (its "links" still apply).
                      The app sits on the node named "device" (requests start, answers return).
  --trace FILE        the emulated links and node speeds follow a trace (JSON: {"steps": [{"at_ms":
                      0, "uplink": "WiFi"}, {"at_ms": 6000, "uplink": "3G", "speeds": {"edge2":
                      0.25}}, ...]}, e.g. apps/config/wifi-3g-wifi.trace.json): a step applies to
                      the requests that start after its time (virtual ms with --clock virtual)
  --adapt             with --strategy hpa and --clock virtual: the planner actor watches the
                      transfers and compute times the stages report (plus light probes of links
                      idle for 3 answers), and when a plan is predicted 5% faster it migrates
                      only the layers that move, while requests keep flowing; the migrations are
                      printed and logged ("layers_migrated")
  --input FILE        input tensor of every request: raw little-endian float32 NCHW (like d3-run),
                      exactly the model's input size (default: seeded random inputs)
  --help              this text

Exit codes: 0 every answer arrived once (and verified with --verify); 1 a request failed, was
missing, duplicated or differs, or the deployment failed; 2 bad input or a node that cannot be
reached (the error names it and its address).
)";

struct options {
  std::string nodes, cluster, model = d3::default_model_name, plan, strategy, log, clock = "wall", uplink, input, trace;
  int requests = 10, in_flight = 1;
  bool adapt = false;
  std::string profile_source = "nodes";
  long timeout_ms = 10000;
  uint64_t seed = 1, model_seed = d3::default_model_seed;
  bool verify = false, redeploy = false;
  std::string uplink_description;  // filled in main
};

[[noreturn]] void fail(int code, const std::string& message) {
  std::cerr << "d3-infer: " << message << "\n";
  std::exit(code);
}

long parse_number(const std::string& flag, const std::string& text, long min, long max) {
  auto value = d3::parse_integer(flag, text, min, max);
  if (!value) fail(exit_bad_input, value.message());
  return *value;
}

d3::graph load(const std::string& model, uint64_t seed) {
  auto g = d3::load_model_by_name(model, seed);
  if (!g) fail(exit_bad_input, g.message());
  return std::move(g.value());
}

d3::tensor read_input(const std::string& path, const d3::tensor_shape& shape) {
  auto t = d3::read_nchw_file(path, shape);
  if (!t) fail(exit_bad_input, t.message());
  return std::move(t.value());
}

// An inference config (JSON): the options as keys (cluster or nodes, model, plan, requests,
// in_flight, clock, uplink, verify, log, timeout_ms, seed, input); relative paths are relative to
// the config file. Options given on the command line override it.
void read_config(const std::string& path, options& o) {
  std::ifstream in(path);
  if (!in) fail(exit_bad_input, "cannot open config '" + path + "'");
  const std::string folder = path.find('/') == std::string::npos ? "" : path.substr(0, path.rfind('/') + 1);
  auto relative = [&](const std::string& file) { return file.empty() || file[0] == '/' ? file : folder + file; };
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    for (const auto& [key, value] : j.items()) {
      if (key == "cluster") o.cluster = relative(value.get<std::string>());
      else if (key == "nodes") o.nodes = value.get<std::string>();
      else if (key == "model") {
        o.model = value.get<std::string>();
        if (o.model.find('.') != std::string::npos) o.model = relative(o.model);
      } else if (key == "plan") o.plan = relative(value.get<std::string>());
      else if (key == "strategy") o.strategy = value.get<std::string>();
      else if (key == "requests") o.requests = value.get<int>();
      else if (key == "in_flight") o.in_flight = value.get<int>();
      else if (key == "clock") o.clock = value.get<std::string>();
      else if (key == "uplink") o.uplink = value.get<std::string>();
      else if (key == "verify") o.verify = value.get<bool>();
      else if (key == "log") o.log = relative(value.get<std::string>());
      else if (key == "timeout_ms") o.timeout_ms = value.get<long>();
      else if (key == "seed") o.seed = value.get<uint64_t>();
      else if (key == "input") o.input = relative(value.get<std::string>());
      else if (key == "trace") o.trace = relative(value.get<std::string>());
      else if (key == "adapt") o.adapt = value.get<bool>();
      else if (key != "comment") fail(exit_bad_input, "config '" + path + "': unknown key '" + key + "'");
    }
  } catch (const std::exception& e) {
    fail(exit_bad_input, "config '" + path + "': " + e.what());
  }
  if (o.requests < 1 || o.in_flight < 1 || o.timeout_ms < 1)
    fail(exit_bad_input, "config '" + path + "': requests, in_flight and timeout_ms must be positive");
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--config") read_config(argv[i + 1], o);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]).rfind("--config=", 0) == 0) read_config(std::string(argv[i]).substr(9), o);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i], value;
    bool has_value = false;
    auto eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) fail(exit_bad_input, arg + " needs a value (see --help)");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      std::exit(0);
    } else if (arg == "--config") {
      next();  // read first, so that the command line overrides it
    } else if (arg == "--nodes") {
      o.nodes = next();
    } else if (arg == "--cluster") {
      o.cluster = next();
    } else if (arg == "--model") {
      o.model = next();
    } else if (arg == "--plan") {
      o.plan = next();
    } else if (arg == "--strategy") {
      o.strategy = next();
    } else if (arg == "--requests") {
      o.requests = int(parse_number(arg, next(), 1, 10000000));
    } else if (arg == "--in-flight") {
      o.in_flight = int(parse_number(arg, next(), 1, 100000));
    } else if (arg == "--seed") {
      o.seed = uint64_t(parse_number(arg, next(), 0, 0x7fffffffffffffffL));
    } else if (arg == "--model-seed") {
      o.model_seed = uint64_t(parse_number(arg, next(), 0, 0x7fffffffffffffffL));
    } else if (arg == "--timeout-ms") {
      o.timeout_ms = parse_number(arg, next(), 1, 3600000);
    } else if (arg == "--log") {
      o.log = next();
    } else if (arg == "--clock") {
      o.clock = next();
    } else if (arg == "--uplink") {
      o.uplink = next();
    } else if (arg == "--input") {
      o.input = next();
    } else if (arg == "--verify") {
      o.verify = true;
    } else if (arg == "--redeploy") {
      o.redeploy = true;
    } else if (arg == "--trace") {
      o.trace = next();
    } else if (arg == "--adapt") {
      o.adapt = true;
    } else if (arg == "--profile") {
      o.profile_source = next();
    } else {
      fail(exit_bad_input, "unknown option '" + arg + "' (see --help)");
    }
  }
  if (o.nodes.empty() == o.cluster.empty()) fail(exit_bad_input, "give the nodes with --nodes or --cluster (see --help)");
  if (o.plan.empty() == o.strategy.empty())
    fail(exit_bad_input, "give a plan with --plan FILE or --strategy NAME, not both (see --help)");
  const std::vector<std::string>& strategies = d3::strategy_names();
  if (!o.strategy.empty() && std::find(strategies.begin(), strategies.end(), o.strategy) == strategies.end()) {
    std::string names;
    for (const std::string& n : strategies) names += (names.empty() ? "" : ", ") + n;
    fail(exit_bad_input, "--strategy expects one of " + names + "; got '" + o.strategy + "'");
  }
  if (o.clock != "wall" && o.clock != "virtual")
    fail(exit_bad_input, "--clock expects wall or virtual, got '" + o.clock + "'");
  if (!o.uplink.empty() && o.uplink != "none" && !d3::testbed::with_uplink(o.uplink))
    fail(exit_bad_input, "--uplink expects CAT1, 3G, 4G, WiFi or none, got '" + o.uplink + "'");
  if (o.profile_source != "nodes" && o.profile_source != "local")
    fail(exit_bad_input, "--profile expects nodes or local, got '" + o.profile_source + "'");
  if (o.adapt && (o.strategy != "hpa" || o.clock != "virtual"))
    fail(exit_bad_input, "--adapt needs --strategy hpa and --clock virtual (the planner learns from virtual times)");
  return o;
}

// The emulated testbed (emulation): --uplink, else the cluster file's "testbed" entry (virtual
// clock), else unshaped (wall clock) or WiFi (virtual clock).
d3::emulation_settings emulation_of(const options& o, const nlohmann::json& cluster_testbed) {
  d3::emulation_settings em;
  em.clock = o.clock == "virtual" ? d3::clock_mode::virtual_time : d3::clock_mode::wall;
  std::string uplink = o.uplink;
  if (uplink.empty()) {
    if (o.clock == "wall") uplink = "none";
    else uplink = cluster_testbed.is_object() ? cluster_testbed.value("uplink", std::string("WiFi")) : "WiFi";
  }
  em.shaped = uplink != "none";
  if (!em.shaped) return em;
  auto t = d3::testbed::with_uplink(uplink);
  if (!t) fail(exit_bad_input, "testbed: " + t.message());
  em.links = t.value();
  if (cluster_testbed.is_object() && cluster_testbed.contains("links")) {
    const nlohmann::json& links = cluster_testbed.at("links");
    if (!links.is_object()) fail(exit_bad_input, "cluster testbed: links must be an object of ROLE-PAIR: link");
    for (const auto& [pair, p] : links.items()) {
      auto profile = d3::parse_link_json(p, "cluster testbed: links." + pair);
      if (!profile) fail(exit_bad_input, profile.message());
      if (auto known = em.links.set_link(pair, *profile); !known) fail(exit_bad_input, "cluster testbed: " + known.message());
    }
  }
  return em;
}

nlohmann::json cluster_testbed;  // the cluster file's "testbed" entry, if any
std::map<std::string, std::string> cluster_roles;  // node name -> role, from the cluster file

std::vector<d3::node_endpoint> read_cluster(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(exit_bad_input, "cannot open cluster file '" + path + "'");
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    if (j.contains("testbed")) cluster_testbed = j.at("testbed");
    std::vector<d3::node_endpoint> nodes;
    for (const auto& n : j.at("nodes")) {
      d3::node_endpoint e;
      e.name = n.at("name").get<std::string>();
      e.host = n.value("host", std::string("127.0.0.1"));
      e.port = n.at("port").get<uint16_t>();
      if (n.contains("role")) cluster_roles[e.name] = n.at("role").get<std::string>();
      nodes.push_back(e);
    }
    if (nodes.empty()) fail(exit_bad_input, "cluster file '" + path + "' lists no nodes");
    return nodes;
  } catch (const std::exception& e) {
    fail(exit_bad_input, "cluster file '" + path + "': " + e.what());
  }
}

std::string megabytes(size_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MB", double(bytes) / 1e6);
  return buffer;
}

// The single-process baseline: runs request i's inputs in this process and times it.
using local_run = std::function<std::vector<d3::tensor>(size_t, double*)>;

// Runs the requests once and reports; returns the number of bad answers. With a local baseline
// (--verify), blocks of requests through the nodes alternate with single-process runs of the same
// inputs, so both latencies are measured side by side, under the same machine state over time.
int run_and_report(d3::deployment& dep, const d3::graph& g, const options& o,
                   const std::vector<std::map<std::string, d3::tensor>>& inputs, const local_run& local) {
  constexpr size_t block = 5;
  std::vector<d3::request_outcome> outcomes;
  std::vector<std::vector<d3::tensor>> expected;
  std::vector<double> local_ms;
  for (size_t begin = 0; begin < inputs.size(); begin += block) {
    const size_t end = std::min(inputs.size(), begin + block);
    std::vector<std::map<std::string, d3::tensor>> part(inputs.begin() + long(begin), inputs.begin() + long(end));
    for (d3::request_outcome& r : dep.run(part, o.in_flight)) outcomes.push_back(std::move(r));
    if (local)
      for (size_t i = begin; i < end; ++i) {
        double ms = 0;
        expected.push_back(local(i, &ms));
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
        same = same && it != r.outputs.end() && d3::bitwise_equal(it->second, expected[i][k]);
      }
      if (same) ++verified;
      else {
        ++differ;
        std::cerr << "d3-infer: request " << r.id << ": the answer differs from the single-process run\n";
      }
    }
  }
  for (const std::string& e : dep.stray_errors()) std::cerr << "d3-infer: stage error: " << e << "\n";
  std::printf("requests: %zu sent, %d in flight at most: %zu answered, %d failed\n", outcomes.size(), o.in_flight,
              latencies.size(), failed);
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
                d3::percentile(latencies, 0.9), o.uplink_description.c_str());
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
  return failed + differ;
}

}  // namespace

// --strategy: the plan a strategy picks on the cost model (planner/), priced with per-layer times
// measured in this process and the evaluation testbed's speeds and links by node role.
// What --adapt starts the planner from: the profile, cluster and choice the plan was made with.
struct adaptation_start {
  d3::layer_profile profile;
  d3::cluster_model cluster;
  d3::three_tier_choice choice;
};

d3::result<d3::deployment_plan> plan_by_strategy(const options& o, const d3::graph& g,
                                                 const std::vector<d3::node_endpoint>& nodes,
                                                 adaptation_start* start, d3::deployment& dep) {
  const std::string uplink = !o.uplink.empty() && o.uplink != "none"
                                 ? o.uplink
                                 : (cluster_testbed.is_object() ? cluster_testbed.value("uplink", std::string("WiFi")) : "WiFi");
  auto t = d3::testbed::with_uplink(uplink);
  if (!t) return t.error();
  d3::cluster_model cluster;
  cluster.links = t.value();
  for (const d3::node_endpoint& n : nodes) {
    std::string role = cluster_roles.count(n.name) ? cluster_roles[n.name]
                       : n.name.rfind("edge", 0) == 0 ? "edge" : n.name;
    auto r = d3::node_role_from_string(role);
    if (!r) return d3::status::error("--strategy: node '" + n.name + "': " + r.message());
    cluster.nodes[n.name] = {r.value(), t->speed_of(r.value()), nullptr};
  }
  for (const char* needed : {"device", "edge1", "cloud"})
    if (!cluster.nodes.count(needed)) return d3::status::error(std::string("--strategy: the cluster has no node '") + needed + "'");
  auto profile = d3::measure_local_profile(g, 3);
  if (!profile) return profile.error();
  if (o.profile_source == "nodes") D3_RETURN_IF_ERROR(d3::probe_node_profiles(dep, g, cluster));
  auto chosen = o.adapt ? d3::hpa_strategy(g, *profile, cluster, {}, &start->choice)
                        : d3::plan_with_strategy(o.strategy, g, *profile, cluster);
  if (!chosen) return chosen.error();
  if (o.adapt) {
    start->profile = profile.value();
    start->cluster = cluster;
  }
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

int main(int argc, char** argv) {
  options o = parse(argc, argv);
  std::optional<d3::emulation_trace> trace;
  if (!o.trace.empty()) {
    auto loaded = d3::load_trace_file(o.trace);
    if (!loaded) fail(exit_bad_input, loaded.message());
    trace = std::move(loaded.value());
  }
  std::vector<d3::node_endpoint> nodes;
  if (!o.nodes.empty()) {
    auto parsed = d3::parse_node_list(o.nodes);
    if (!parsed) fail(exit_bad_input, parsed.message());
    nodes = parsed.value();
  } else {
    nodes = read_cluster(o.cluster);
  }
  const d3::graph g = load(o.model, o.model_seed);
  // A plan file is checked before any node is contacted; a strategy plans once the nodes are
  // connected (it may probe their profiles).
  adaptation_start start;
  d3::result<d3::deployment_plan> plan = d3::status::error("no plan");
  auto check_plan = [&g](const d3::result<d3::deployment_plan>& p) {
    if (!p) fail(exit_bad_input, p.message());
    auto sg = d3::build_stage_graph(g, p.value());
    if (!sg) fail(exit_bad_input, sg.message());
  };
  if (o.strategy.empty()) {
    plan = d3::load_plan_file(o.plan);
    check_plan(plan);
  }

  std::unique_ptr<d3::topology_log> log;
  if (!o.log.empty()) {
    auto opened = d3::topology_log::open(o.log);
    if (!opened) fail(exit_bad_input, opened.message());
    log = std::move(opened.value());
  }

  // Inputs (seeded, or --input for every request).
  std::vector<std::map<std::string, d3::tensor>> inputs(size_t(o.requests));
  if (!o.input.empty() && g.input_layers().size() != 1)
    fail(exit_bad_input, "--input: the model has " + std::to_string(g.input_layers().size()) + " inputs, not one");
  for (size_t i = 0; i < inputs.size(); ++i)
    for (int in : g.input_layers())
      inputs[i][g.layers[size_t(in)].name] = o.input.empty()
                                                 ? d3::random_tensor(g.layers[size_t(in)].output_shape, o.seed + i)
                                                 : read_input(o.input, g.layers[size_t(in)].output_shape);
  // The single-process baseline (--verify): the same model in this process, warmed up once.
  std::unique_ptr<d3::executor> local_executor;
  local_run local;
  if (o.verify) {
    auto created = d3::executor::create(g);
    if (!created) fail(exit_failed, created.message());
    local_executor = std::move(created.value());
    std::vector<int> input_layers = g.input_layers();
    local = [&g, &inputs, &local_executor, input_layers](size_t i, double* ms) {
      std::vector<const d3::tensor*> in;
      for (int l : input_layers) in.push_back(&inputs[i].at(g.layers[size_t(l)].name));
      auto start = std::chrono::steady_clock::now();
      auto out = local_executor->run(in);
      *ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
      if (!out) fail(exit_failed, "single-process run: " + out.message());
      return std::move(out.value());
    };
    double ignored = 0;
    local(0, &ignored);  // warm-up
  }

  caf::actor_system_config cfg;
  d3::protocol::configure_process(cfg);
  caf::actor_system system{cfg};
  d3::deployment_options dopts;
  dopts.timeout = std::chrono::milliseconds(o.timeout_ms);
  dopts.log = log.get();
  dopts.emulation = emulation_of(o, cluster_testbed);
  if (o.adapt) dopts.idle_probe_every = 3;
  {
    const d3::emulation_settings& em = dopts.emulation;
    char line[512];
    if (em.shaped)
      std::snprintf(line, sizeof line,
                    "emulated testbed (emulation, not real links): uplink %s; device-edge %.2f Mbit/s %.1f ms, "
                    "edge-edge %.0f Mbit/s %.1f ms, edge-cloud %.0f Mbit/s %.1f ms",
                    em.links.uplink.c_str(), em.links.device_edge.bandwidth_mbit_per_s, em.links.device_edge.latency_ms,
                    em.links.edge_edge.bandwidth_mbit_per_s, em.links.edge_edge.latency_ms,
                    em.links.edge_cloud.bandwidth_mbit_per_s, em.links.edge_cloud.latency_ms);
    else
      std::snprintf(line, sizeof line, "links unshaped (--uplink none)");
    o.uplink_description = em.shaped ? ", shaped links: uplink " + em.links.uplink : ", unshaped loopback links";
    std::printf("d3-infer: %s clock%s; %s\n", o.clock.c_str(),
                o.clock == "virtual" ? " (EMULATED times; node speeds from each d3-node's config)" : " (real time)",
                line);
  }
  int bad = 0;
  {
    d3::deployment dep(system, dopts);
    if (auto s = dep.connect(nodes); !s) fail(exit_bad_input, s.message());
    if (!o.strategy.empty()) {
      plan = plan_by_strategy(o, g, nodes, &start, dep);
      check_plan(plan);
    }
    const int deployments = o.redeploy ? 2 : 1;
    for (int round = 0; round < deployments; ++round) {
      auto report = dep.deploy(g, plan.value());
      if (!report) {
        std::cerr << "d3-infer: deployment failed: " << report.message() << "\n";
        return exit_failed;
      }
      std::printf("d3-infer: model %s (hash %016llx), plan %s version %d (%s), %zu stages on %zu nodes, %s clock\n",
                  g.name.c_str(), (unsigned long long)report->model_hash,
                  o.plan.empty() ? ("by --strategy " + o.strategy).c_str() : o.plan.c_str(), report->plan_version,
                  plan->strategy.c_str(), dep.stages().stages.size(), nodes.size(), o.clock.c_str());
      std::printf("deployed in %.1f ms; weights shipped: %s in %zu layers (%zu layers already cached)",
                  report->deploy_ms, megabytes(report->weight_bytes_shipped).c_str(), report->layers_shipped,
                  report->layers_cached);
      for (const auto& [node, b] : report->weight_bytes_per_node) std::printf("; %s %s", node.c_str(), megabytes(b).c_str());
      std::printf("\nbytes per request between nodes:");
      size_t total = 0;
      for (const d3::link_bytes& l : report->bytes_per_request) {
        std::printf(" %s->%s %zu;", l.from.c_str(), l.to.c_str(), l.bytes);
        total += l.bytes;
      }
      std::printf(" total %zu\n", total);
      std::fflush(stdout);
      if (trace) dep.set_trace(*trace);
      std::shared_ptr<d3::adaptive_planner> planner;
      d3::protocol::planner_handle planner_actor;
      if (o.adapt) {
        planner = std::make_shared<d3::adaptive_planner>(g, start.profile, start.cluster, start.choice, plan->version);
        std::map<std::string, d3::node_role> roles;
        for (const auto& [name, node] : start.cluster.nodes) roles[name] = node.role;
        planner_actor = d3::spawn_planner_actor(system, planner, roles);
        dep.set_adaptation(d3::planner_hook(system, planner_actor), &g);
      }
      const size_t migrations_before = dep.migrations().size();
      bad += run_and_report(dep, g, o, inputs, local);
      for (size_t m = migrations_before; m < dep.migrations().size(); ++m) {
        const d3::migration_report& r = dep.migrations()[m];
        std::printf("migration v%d -> v%d: %zu layers moved, %zu unchanged; %s of weights shipped in %zu layers; %.1f ms\n",
                    r.from_version, r.to_version, r.layers_moved.size(), r.layers_unchanged,
                    megabytes(r.deploy.weight_bytes_shipped).c_str(), r.deploy.layers_shipped, r.deploy.deploy_ms);
      }
      if (planner) {
        const d3::cluster_model& e = planner->estimate();
        std::printf("planner estimates: device-edge %.2f Mbit/s %.1f ms, edge-cloud %.1f Mbit/s %.1f ms; speeds:",
                    e.links.device_edge.bandwidth_mbit_per_s, e.links.device_edge.latency_ms,
                    e.links.edge_cloud.bandwidth_mbit_per_s, e.links.edge_cloud.latency_ms);
        for (const auto& [name, node] : e.nodes) std::printf(" %s %.3g", name.c_str(), node.speed);
        std::printf("\n");
        caf::anon_send_exit(planner_actor, caf::exit_reason::user_shutdown);
        dep.set_adaptation(nullptr, nullptr);
      }
      dep.teardown();
    }
  }
  return bad == 0 ? 0 : exit_failed;
}
