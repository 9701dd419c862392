// d3-infer: deploys a model over running d3-node processes according to a plan and runs requests
// through it (data flows node to node; the app sends inputs and receives outputs).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "actors/plan.hpp"
#include "actors/protocol.hpp"
#include "actors/topology_log.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "schema/bundle.hpp"
#include "schema/model_file.hpp"
#include "schema/onnx_import.hpp"

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

const char* usage = R"(usage: d3-infer (--nodes LIST | --cluster FILE) --plan FILE [options]

Deploys a model over running d3-node processes and runs requests through it. The app connects
to every node, ships each node only the layers it lacks (nodes cache layers by model hash and
layer name), spawns the plan's stages (segments, scatter, tiles, gather) on their nodes with
remote_spawn, wires them node to node, sends seeded random inputs with request ids, and collects
the answers by id.

  --nodes LIST        NAME=HOST:PORT,... e.g. device=127.0.0.1:4301,edge1=127.0.0.1:4302
  --cluster FILE      the nodes from a cluster file (apps/config/cluster.json)
  --model NAME|FILE   built-in model (alexnet, vgg16, resnet18, googlenet, mobilenet_v2), a d3
                      model file or an ONNX file (default resnet18)
  --plan FILE         deployment plan (JSON, see apps/config/*.plan.json)
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
  --clock wall        the clock (only wall, real time on unshaped loopback links, so far)
  --help              this text

Exit codes: 0 every answer arrived once (and verified with --verify); 1 a request failed, was
missing, duplicated or differs, or the deployment failed; 2 bad input or a node that cannot be
reached (the error names it and its address).
)";

struct options {
  std::string nodes, cluster, model = d3::default_model_name, plan, log, clock = "wall";
  int requests = 10, in_flight = 1;
  long timeout_ms = 10000;
  uint64_t seed = 1, model_seed = d3::default_model_seed;
  bool verify = false, redeploy = false;
};

[[noreturn]] void fail(int code, const std::string& message) {
  std::cerr << "d3-infer: " << message << "\n";
  std::exit(code);
}

long parse_number(const std::string& flag, const std::string& text, long min, long max) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || value < min || value > max)
    fail(exit_bad_input, flag + " expects an integer in [" + std::to_string(min) + ", " + std::to_string(max) +
                             "], got '" + text + "'");
  return value;
}

options parse(int argc, char** argv) {
  options o;
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
    } else if (arg == "--nodes") {
      o.nodes = next();
    } else if (arg == "--cluster") {
      o.cluster = next();
    } else if (arg == "--model") {
      o.model = next();
    } else if (arg == "--plan") {
      o.plan = next();
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
    } else if (arg == "--verify") {
      o.verify = true;
    } else if (arg == "--redeploy") {
      o.redeploy = true;
    } else {
      fail(exit_bad_input, "unknown option '" + arg + "' (see --help)");
    }
  }
  if (o.nodes.empty() == o.cluster.empty()) fail(exit_bad_input, "give the nodes with --nodes or --cluster (see --help)");
  if (o.plan.empty()) fail(exit_bad_input, "--plan FILE is required (see --help)");
  if (o.clock != "wall") fail(exit_bad_input, "--clock: only 'wall' is implemented so far, got '" + o.clock + "'");
  return o;
}

std::vector<d3::node_endpoint> read_cluster(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail(exit_bad_input, "cannot open cluster file '" + path + "'");
  try {
    nlohmann::json j = nlohmann::json::parse(in);
    std::vector<d3::node_endpoint> nodes;
    for (const auto& n : j.at("nodes")) {
      d3::node_endpoint e;
      e.name = n.at("name").get<std::string>();
      e.host = n.value("host", std::string("127.0.0.1"));
      e.port = n.at("port").get<uint16_t>();
      nodes.push_back(e);
    }
    if (nodes.empty()) fail(exit_bad_input, "cluster file '" + path + "' lists no nodes");
    return nodes;
  } catch (const std::exception& e) {
    fail(exit_bad_input, "cluster file '" + path + "': " + e.what());
  }
}

d3::graph load(const std::string& model, uint64_t seed) {
  if (d3::is_onnx_path(model)) {
    auto g = d3::import_onnx(model);
    if (!g) fail(exit_bad_input, g.message());
    return std::move(g.value());
  }
  const auto& names = d3::builtin_model_names();
  if (std::find(names.begin(), names.end(), model) != names.end()) {
    auto g = d3::builtin_model(model, seed);
    if (!g) fail(exit_failed, g.message());
    return std::move(g.value());
  }
  if (!std::ifstream(model)) fail(exit_bad_input, "unknown model '" + model + "': not a built-in model and no such file");
  auto g = d3::load_model(model);
  if (!g) fail(exit_bad_input, g.message());
  return std::move(g.value());
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  double rank = p * double(values.size() - 1);
  size_t lo = size_t(rank);
  size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (values[hi] - values[lo]) * (rank - double(lo));
}

std::string megabytes(size_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f MB", double(bytes) / 1e6);
  return buffer;
}

// Runs the requests once and reports; returns the number of bad answers.
int run_and_report(d3::deployment& dep, const d3::graph& g, const options& o,
                   const std::vector<std::map<std::string, d3::tensor>>& inputs,
                   const std::vector<std::vector<d3::tensor>>& expected) {
  auto outcomes = dep.run(inputs, o.in_flight);
  std::vector<double> latencies;
  int failed = 0, differ = 0, verified = 0;
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const d3::request_outcome& r = outcomes[i];
    if (!r.ok) {
      ++failed;
      std::cerr << "d3-infer: request " << r.id << " failed: " << r.error << "\n";
      continue;
    }
    latencies.push_back(r.latency_ms);
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
  std::printf("latency: median %.2f ms  p90 %.2f ms  (end to end, %s clock)\n", percentile(latencies, 0.5),
              percentile(latencies, 0.9), o.clock.c_str());
  std::fflush(stdout);
  return failed + differ;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  std::vector<d3::node_endpoint> nodes;
  if (!o.nodes.empty()) {
    auto parsed = d3::parse_node_list(o.nodes);
    if (!parsed) fail(exit_bad_input, parsed.message());
    nodes = parsed.value();
  } else {
    nodes = read_cluster(o.cluster);
  }
  auto plan = d3::load_plan_file(o.plan);
  if (!plan) fail(exit_bad_input, plan.message());
  const d3::graph g = load(o.model, o.model_seed);
  {
    auto sg = d3::build_stage_graph(g, plan.value());
    if (!sg) fail(exit_bad_input, sg.message());
  }

  std::unique_ptr<d3::topology_log> log;
  if (!o.log.empty()) {
    auto opened = d3::topology_log::open(o.log);
    if (!opened) fail(exit_bad_input, opened.message());
    log = std::move(opened.value());
  }

  // Inputs and, with --verify, the single-process answers (timed: the baseline, side by side).
  std::vector<std::map<std::string, d3::tensor>> inputs(size_t(o.requests));
  for (size_t i = 0; i < inputs.size(); ++i)
    for (int in : g.input_layers())
      inputs[i][g.layers[size_t(in)].name] = d3::random_tensor(g.layers[size_t(in)].output_shape, o.seed + i);
  std::vector<std::vector<d3::tensor>> expected;
  std::vector<double> local_ms;
  if (o.verify) {
    auto local = d3::executor::create(g);
    if (!local) fail(exit_failed, local.message());
    std::vector<int> input_layers = g.input_layers();
    auto run_local = [&](size_t i) {
      std::vector<const d3::tensor*> in;
      for (int l : input_layers) in.push_back(&inputs[i].at(g.layers[size_t(l)].name));
      auto out = (*local)->run(in);
      if (!out) fail(exit_failed, "single-process run: " + out.message());
      return std::move(out.value());
    };
    run_local(0);  // warm-up
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto start = std::chrono::steady_clock::now();
      expected.push_back(run_local(i));
      local_ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
  }

  caf::actor_system_config cfg;
  d3::protocol::configure_process(cfg);
  caf::actor_system system{cfg};
  d3::deployment_options dopts;
  dopts.timeout = std::chrono::milliseconds(o.timeout_ms);
  dopts.log = log.get();
  int bad = 0;
  {
    d3::deployment dep(system, dopts);
    if (auto s = dep.connect(nodes); !s) fail(exit_bad_input, s.message());
    const int deployments = o.redeploy ? 2 : 1;
    for (int round = 0; round < deployments; ++round) {
      auto report = dep.deploy(g, plan.value());
      if (!report) {
        std::cerr << "d3-infer: deployment failed: " << report.message() << "\n";
        return exit_failed;
      }
      std::printf("d3-infer: model %s (hash %016llx), plan %s version %d (%s), %zu stages on %zu nodes, %s clock "
                  "(real time, unshaped loopback links)\n",
                  g.name.c_str(), (unsigned long long)report->model_hash, o.plan.c_str(), report->plan_version,
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
      bad += run_and_report(dep, g, o, inputs, expected);
      if (o.verify)
        std::printf("single-process (d3::executor, 1 thread, same inputs): median %.2f ms  p90 %.2f ms\n",
                    percentile(local_ms, 0.5), percentile(local_ms, 0.9));
      dep.teardown();
    }
  }
  return bad == 0 ? 0 : exit_failed;
}
