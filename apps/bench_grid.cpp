// d3-bench grid: for each model, scenario and strategy, the plan the strategy picks on the cost
// model is deployed on real d3-node processes (device, edge1..edgeK, cloud on loopback) under the
// virtual clock, and requests run through it one at a time, every answer compared bit for bit with
// a single-process run. Outputs: a line per cell on stdout, grid.csv, grid.md and gnuplot charts.
#include "apps/bench_grid.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/deployment.hpp"
#include "actors/message_costs.hpp"
#include "actors/emulation.hpp"
#include "actors/planner_actor.hpp"
#include "actors/protocol.hpp"
#include "actors/testbed_file.hpp"
#include "apps/app_support.hpp"
#include "apps/local_nodes.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "planner/cost_model.hpp"
#include "planner/profile.hpp"
#include "planner/strategies.hpp"
#include "schema/onnx_import.hpp"

namespace d3 {

namespace {

constexpr int exit_failed = 1;
constexpr int exit_bad_input = 2;

const char* grid_usage = R"(usage: d3-bench grid [options]

The evaluation grid: for each model, scenario and strategy, the plan the strategy picks on the
planner's cost model is deployed on real d3-node processes and measured on the emulated testbed.

For each model the bench measures a per-layer profile in this process (single thread, median of
--profile-repeats runs; with --profile nodes, the default, the planner then uses every node's own
profile, probed on the node under its clock and cached there), computes the single-process
answers of the request inputs with
d3::executor, and starts fresh d3-node processes (device, edge1..edgeK, cloud with the testbed's
speeds, on free loopback ports; restarted per model, so layer caches do not pile up, and after a
cell whose deployment or requests failed). For each scenario it
  1. plans every strategy: d3::plan_with_strategy on cluster_model::evaluation(testbed with that
     scenario, K); the cost model's predicted latency is recorded,
  2. measures the strategies side by side, in rounds: round r deploys each strategy's plan in
     turn (d3::deployment, virtual clock, shaped links of the testbed; a redeploy ships nothing,
     the nodes cache the layers) and runs its request r, one in flight, the answer compared
     memcmp-equal with the single-process answer of the same input; --warmup + --requests
     rounds, so a slow phase of this shared machine hits every strategy alike (the order
     rotates each round),
  4. records the median, p10, p90, min and max of the timed requests' virtual end-to-end latency,
     the bytes per request on every link (from the stage graph: each tensor once per destination
     node; the app sits on the device node) and the backbone bytes: links touching the cloud node
     (edge<->cloud, device<->cloud).
A cell that fails (a strategy that finds no plan or is not implemented, a deployment error, a
request error, a node process that died) is recorded with its error and the grid goes on; after a
failed request the cell's remaining requests are skipped (counted as failed), and the nodes are
restarted before the next cell.

All latencies are EMULATED (virtual clock): a node's compute is its kernels' measured thread CPU
time on this machine divided by the node's speed; a link adds latency + bytes / bandwidth, queued
per link. They do not depend on how many node processes share this machine's cores.

Testbed (default: D3's setting, apps/config/testbed-d3.json, built in): device 0.1, 4 edge nodes
0.5, cloud 4 (speeds relative to one core of this machine); the edges on the device's wireless LAN
(device<->edge 100 Mbit/s 2 ms), edge<->edge 1 Gbit/s 0.2 ms; the cloud over the mobile Internet:
scenarios CAT1, 3G, 4G, WiFi set edge<->cloud to 0.13, 1.1, 5.85, 18.88 Mbit/s with 20 ms;
device<->cloud is the LAN, then that link. apps/config/testbed-mobile-edge.json is the first
testbed, "edges behind the mobile uplink" (the scenarios set device<->edge instead).

  --models LIST       comma-separated: built-in models (alexnet, vgg16, resnet18, googlenet,
                      mobilenet_v2) or model files (.onnx, .d3m) (default: the five built-ins)
  --scenarios LIST    comma-separated scenario names of the testbed (default: all of them, in the
                      file's order, e.g. CAT1,3G,4G,WiFi); --uplinks is the same option
  --strategies LIST   comma-separated (default hpa and every baseline: neurosurgeon, dads,
                      neurosurgeon-edge, dads-edge, ftp, device, edge, cloud; also three-tier)
  --requests N        timed requests per cell (default 10)
  --warmup W          untimed requests per cell first, verified too (default 1)
  --testbed FILE      the testbed from a JSON file (actors/testbed_file.hpp):
                        {"device_speed": 0.1, "edge_speed": 0.5, "cloud_speed": 4, "edge_nodes": 4,
                         "links": {"device-edge": {"mbit_per_s": 100, "latency_ms": 2}, ...},
                         "scenarios": {"CAT1": {"edge-cloud": {"mbit_per_s": 0.13, "latency_ms": 20}},
                                       ...}}
                      role pairs: device-edge, edge-edge, edge-cloud, device-cloud (default: the
                      first and the third in series); a scenario overrides the links it names;
                      keys left out keep D3's setting; "name" and "comment" are free text
  --out DIR           output folder (default grid-results), created if needed: grid.csv,
                      grid.md, charts (latency.png, backbone.png, predicted-vs-measured.png, with
                      their .dat files and charts.gp) and node-logs/
  --check             the CI assertion: exit 1 unless every request of every cell answered
                      memcmp-equal, every cell planned and deployed, and in every (model,
                      scenario) hpa's median latency is at most the best other strategy's median
                      times (1 + noise band), or hpa deployed the very same plan. Noise band =
                      the largest of: the relative spread (p90 - p10) / median of the requests
                      of either cell, and the relative spread of the medians of cells of that
                      (model, scenario) that deployed the same plan (noise between cells); plus
                      --noise-floor. Prints the numbers and a PASS or FAIL line (also in
                      grid.md). A missing hpa (not in --strategies, no plan) is a FAIL
  --noise-floor PCT   the noise band's floor, percent (default 2)
  --seed S            request i's input is seeded S + i (default 1)
  --model-seed S      seed of the built-in models' weights (default 2021)
  --profile-repeats R runs of the per-layer profile (default 5)
  --profile nodes|local  the layer times the planner prices plans with: probed on each node
                      (default) or measured in this process and divided by the node's speed
  --timeout-ms T      timeout of every connect, deployment step and answer (default 60000)
  --node-binary FILE  the d3-node executable (default: d3-node next to d3-bench)
  --help              this text

Outputs. grid.csv has one row per cell: model, scenario, strategy, requests (timed), warmup,
verified, failed, differ (verified + failed + differ = requests + warmup), median_ms, p10_ms,
p90_ms, min_ms, max_ms (virtual latency of the timed requests), predicted_ms (cost model),
backbone_bytes, device_link_bytes (links touching the device), total_link_bytes (per request),
links ("from->to=bytes;..."), weights_shipped_bytes, wall_median_ms (real time per request on
this machine, not emulated), plan, error. grid.md has per scenario a table of median latency
(models x strategies), hpa's speedup over each baseline per cell with maximum and geometric mean,
over the best two-tier baseline (the best of neurosurgeon, dads, neurosurgeon-edge, dads-edge),
over the best of the papers' two (neurosurgeon, dads with the cloud as the server), measured and
predicted,
the backbone traffic and hpa's reduction against the cloud-bound baselines (neurosurgeon, dads,
cloud), predicted against measured latency, the testbed and the exact command. PNG charts need
gnuplot (scripts/install-bench-deps.sh installs gnuplot-nox); without it they are skipped.

A progress bar (cell k/total, model, scenario, strategy, request) goes to stderr.
Exit codes: 0 the grid ran (cells whose strategy found no plan are recorded, not fatal); 1 an
answer differed or a request or deployment failed, outputs could not be written, or --check
failed; 2 bad options or input (unknown model, scenario or strategy, bad testbed file).
)";

std::string format(const char* pattern, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* pattern, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, pattern);
  std::vsnprintf(buffer, sizeof buffer, pattern, args);
  va_end(args);
  return buffer;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ','))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string s;
  for (const std::string& p : parts) s += (s.empty() ? "" : separator) + p;
  return s;
}

// Decimal units, as link bandwidths are quoted.
std::string human_bytes(double bytes) {
  if (bytes < 1e3) return format("%.0f B", bytes);
  if (bytes < 1e6) return format("%.1f KB", bytes / 1e3);
  return format("%.2f MB", bytes / 1e6);
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// --- The testbed -------------------------------------------------------------------------------

std::string describe_link(const link_profile& l) {
  return format("%g Mbit/s %g ms", l.bandwidth_mbit_per_s, l.latency_ms);
}

// What a scenario sets: "edge-cloud 0.13 Mbit/s 20 ms" ("the base links" when nothing).
std::string describe_scenario(const testbed_file& bed, const std::string& name) {
  const testbed_scenario* sc = bed.scenario(name);
  if (!sc || sc->links.empty()) return "the base links";
  std::string out;
  for (const auto& [pair, link] : sc->links) out += (out.empty() ? "" : ", ") + pair + " " + describe_link(link);
  return out;
}

// --- Options -------------------------------------------------------------------------------------

struct grid_options {
  std::vector<std::string> models, scenarios, strategies;
  int requests = 10, warmup = 1, profile_repeats = 5;
  long timeout_ms = 60000;
  uint64_t seed = 1, model_seed = default_model_seed;
  double noise_floor = 0.02;
  bool check = false;
  std::string out = "grid-results", node_binary, profile_source = "nodes";
  testbed_file bed = testbed_file::d3_setting();
  std::string command_line;
};

// The issue's strategies, in its order; "three-tier" may be asked for too.
std::vector<std::string> default_strategies() {
  std::vector<std::string> names = {"hpa"};
  for (const std::string& b : baseline_names()) names.push_back(b);
  return names;
}
// The paper's comparison groups: two-tier partitioners and the baselines whose data goes to the cloud.
// The two partitioners in their papers' own setting (the cloud as the server).
const std::vector<std::string> papers_two_tier = {"neurosurgeon", "dads"};

[[noreturn]] void bad_input(const std::string& message) {
  std::cerr << "d3-bench grid: " << message << "\n";
  std::exit(exit_bad_input);
}

grid_options parse_grid_options(int argc, char** argv) {
  grid_options o;
  std::string models, scenarios, strategies, testbed_file;
  for (int i = 0; i < argc; ++i) o.command_line += (i ? " " : "") + shell_quote(argv[i]);
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i], inline_value;
    bool has_inline = false;
    const size_t eq = arg.find('=');
    if (arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_inline = true;
    }
    auto value = [&]() -> std::string {
      if (has_inline) return inline_value;
      if (i + 1 >= argc) bad_input(arg + " needs a value (see d3-bench grid --help)");
      return argv[++i];
    };
    auto integer = [&](long low, long high) {
      auto v = parse_integer(arg, value(), low, high);
      if (!v) bad_input(v.message());
      return v.value();
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << grid_usage;
      std::exit(0);
    } else if (arg == "--models") {
      models = value();
    } else if (arg == "--scenarios" || arg == "--uplinks") {  // --uplinks: the first testbed's word
      scenarios = value();
    } else if (arg == "--strategies") {
      strategies = value();
    } else if (arg == "--requests") {
      o.requests = int(integer(1, 100000));
    } else if (arg == "--warmup") {
      o.warmup = int(integer(0, 1000));
    } else if (arg == "--profile-repeats") {
      o.profile_repeats = int(integer(1, 1000));
    } else if (arg == "--profile") {
      o.profile_source = value();
      if (o.profile_source != "nodes" && o.profile_source != "local")
        bad_input("--profile expects nodes or local, got '" + o.profile_source + "'");
    } else if (arg == "--timeout-ms") {
      o.timeout_ms = integer(1, 3600000);
    } else if (arg == "--seed") {
      o.seed = uint64_t(integer(0, 0x7fffffffffffffffL));
    } else if (arg == "--model-seed") {
      o.model_seed = uint64_t(integer(0, 0x7fffffffffffffffL));
    } else if (arg == "--noise-floor") {
      const std::string text = value();
      char* end = nullptr;
      const double pct = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !(pct >= 0) || pct > 1000)
        bad_input("--noise-floor expects a percentage in [0, 1000], got '" + text + "'");
      o.noise_floor = pct / 100;
    } else if (arg == "--testbed") {
      testbed_file = value();
    } else if (arg == "--out") {
      o.out = value();
      if (o.out.empty()) bad_input("--out needs a folder");
    } else if (arg == "--node-binary") {
      o.node_binary = value();
    } else if (arg == "--check") {
      o.check = true;
    } else {
      bad_input("unknown option '" + arg + "' (see d3-bench grid --help)");
    }
  }

  if (!testbed_file.empty()) {
    auto tb = load_testbed_file(testbed_file);
    if (!tb) bad_input(tb.message());
    o.bed = std::move(tb.value());
  }

  // Every name is checked before anything starts: a typo must not surface hours into a grid.
  const std::vector<std::string>& builtins = builtin_model_names();
  o.models = models.empty() ? builtins : split_list(models);
  if (o.models.empty()) bad_input("--models needs at least one model");
  for (const std::string& m : o.models) {
    const bool builtin = std::find(builtins.begin(), builtins.end(), m) != builtins.end();
    if (!builtin && ::access(m.c_str(), R_OK) != 0)
      bad_input("unknown model '" + m + "': not a built-in model (" + join(builtins, ", ") + ") and no such file");
  }
  if (scenarios.empty()) {
    o.scenarios = o.bed.scenario_names();
  } else {
    o.scenarios = split_list(scenarios);
    if (o.scenarios.empty()) bad_input("--scenarios needs at least one scenario");
    for (const std::string& u : o.scenarios)
      if (!o.bed.scenario(u))
        bad_input("unknown scenario '" + u + "' (the testbed " + o.bed.source + " has " + join(o.bed.scenario_names(), ", ") + ")");
  }
  o.strategies = strategies.empty() ? default_strategies() : split_list(strategies);
  if (o.strategies.empty()) bad_input("--strategies needs at least one strategy");
  const std::vector<std::string>& known_strategies = strategy_names();
  for (const std::string& s : o.strategies)
    if (std::find(known_strategies.begin(), known_strategies.end(), s) == known_strategies.end())
      bad_input("unknown strategy '" + s + "' (" + join(known_strategies, ", ") + ")");
  for (const std::vector<std::string>* list : {&o.models, &o.scenarios, &o.strategies}) {
    std::set<std::string> seen;
    for (const std::string& name : *list)
      if (!seen.insert(name).second) bad_input("'" + name + "' is listed twice");
  }

  if (o.node_binary.empty()) o.node_binary = sibling_executable("d3-node");
  if (::access(o.node_binary.c_str(), X_OK) != 0)
    bad_input("cannot run d3-node '" + o.node_binary + "' (build it, or give its path with --node-binary)");
  return o;
}

// --- Cells ---------------------------------------------------------------------------------------

struct grid_cell {
  std::string model, scenario, strategy;
  int requests = 0, warmup = 0;
  int verified = 0, failed = 0, differ = 0;
  std::vector<double> virtual_ms, wall_ms;  // timed requests answered
  double median_ms = NAN, p10_ms = NAN, p90_ms = NAN, min_ms = NAN, max_ms = NAN, wall_median_ms = NAN;
  double predicted_ms = NAN;
  std::vector<link_bytes> links;  // per request, the app folded into its node
  size_t backbone_bytes = 0, device_link_bytes = 0, total_bytes = 0, weights_shipped = 0;
  bool deployed = false;
  std::string plan;   // what the strategy chose, one line
  std::string error;  // first error: "plan: ...", "deploy: ...", "request 3: ..."
  // Per stage of the plan (stage id order): where the cost model's error comes from.
  struct stage_timing {
    std::string kind, node;
    double predicted_finish_ms = NAN;   // cost model, since the request started
    std::vector<double> finish_ms;      // measured (virtual) finish - request start, timed requests
    std::vector<double> cpu_ms;         // measured thread CPU time on this machine
  };
  std::vector<stage_timing> stages;

  bool measured() const { return !virtual_ms.empty(); }
  // Planned, deployed, and every request answered memcmp-equal.
  bool clean() const { return error.empty() && failed == 0 && differ == 0 && measured(); }
  // Relative spread of the timed requests, the noise of this cell.
  double spread() const { return measured() && median_ms > 0 ? (p90_ms - p10_ms) / median_ms : 0; }
};

struct grid_results {
  std::vector<grid_cell> cells;
  const grid_cell* find(const std::string& model, const std::string& scenario, const std::string& strategy) const {
    for (const grid_cell& c : cells)
      if (c.model == model && c.scenario == scenario && c.strategy == strategy) return &c;
    return nullptr;
  }
};

// The progress bar on stderr: redrawn in place on a terminal, one line per cell otherwise (logs).
class progress_bar {
 public:
  explicit progress_bar(size_t total) : total_(total), tty_(::isatty(2) != 0), start_(std::chrono::steady_clock::now()) {}

  void cell(size_t index, const std::string& what) {
    index_ = index;
    what_ = what;
    detail_.clear();
    if (!tty_) std::fprintf(stderr, "grid: cell %zu/%zu %s\n", index_ + 1, total_, what_.c_str());
    draw();
  }
  // A model's preparation (profile, single-process answers), before its first cell.
  void model(size_t index, const std::string& name) {
    index_ = index;
    what_ = name;
    detail_.clear();
    if (!tty_) std::fprintf(stderr, "grid: model %s (cells from %zu/%zu)\n", name.c_str(), index_ + 1, total_);
    draw();
  }
  void detail(const std::string& text) {
    detail_ = text;
    draw();
  }
  // Before a line on stdout: the bar must not be left in the middle of it.
  void clear() {
    if (tty_) std::fprintf(stderr, "\r\033[K");
  }
  void done() {
    clear();
    if (!tty_) std::fprintf(stderr, "grid: %zu cells in %s\n", total_, elapsed().c_str());
  }

 private:
  std::string elapsed() const {
    const long s = long(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    return format("%ld:%02ld", s / 60, s % 60);
  }
  void draw() {
    if (!tty_) return;
    constexpr int width = 24;
    const int filled = total_ ? int(width * index_ / total_) : 0;
    std::string bar(size_t(filled), '#');
    bar += std::string(size_t(width - filled), '.');
    std::fprintf(stderr, "\r\033[K[%s] %zu/%zu %s%s%s  %s", bar.c_str(), index_ + 1, total_, what_.c_str(),
                 detail_.empty() ? "" : "  ", detail_.c_str(), elapsed().c_str());
    std::fflush(stderr);
  }

  size_t total_, index_ = 0;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::string what_, detail_;
};

// What a model's cells share: its graph, profile, inputs and single-process answers.
struct model_context {
  std::string name;
  graph g;
  layer_profile profile;
  std::vector<std::map<std::string, tensor>> inputs;
  std::vector<std::map<std::string, tensor>> expected;  // graph output name -> single-process answer
};

result<model_context> prepare_model(const grid_options& o, const std::string& name, progress_bar& bar) {
  model_context m;
  m.name = name;
  bar.detail("loading the model");
  auto g = load_model_by_name(name, o.model_seed);
  if (!g) return g.error();
  m.g = std::move(g.value());
  bar.detail("measuring the layer profile");
  auto profile = measure_local_profile(m.g, o.profile_repeats);
  if (!profile) return status::error("profile: " + profile.message());
  m.profile = std::move(profile.value());
  bar.detail("single-process answers");
  const size_t count = size_t(o.warmup + o.requests);
  m.inputs.resize(count);
  for (size_t i = 0; i < count; ++i)
    for (int in : m.g.input_layers())
      m.inputs[i][m.g.layers[size_t(in)].name] = random_tensor(m.g.layers[size_t(in)].output_shape, o.seed + i);
  // One executor, dropped afterwards: its packed weights would sit next to the nodes' (vgg16).
  auto local = executor::create(m.g);
  if (!local) return status::error("single-process executor: " + local.message());
  for (size_t i = 0; i < count; ++i) {
    auto out = (*local)->run(m.inputs[i]);
    if (!out) return status::error("single-process run: " + out.message());
    m.expected.push_back(std::move(out.value()));
  }
  return m;
}

// The nodes of the testbed: device, edge1..edgeK, cloud with its speeds.
std::vector<local_node_spec> node_specs(const testbed_file& bed) {
  std::vector<local_node_spec> specs = {{"device", "device", bed.base.device_speed}};
  for (int e = 1; e <= bed.edge_nodes; ++e) specs.push_back({"edge" + std::to_string(e), "edge", bed.base.edge_speed});
  specs.push_back({"cloud", "cloud", bed.base.cloud_speed});
  return specs;
}

void fill_statistics(grid_cell& c) {
  if (!c.measured()) return;
  c.median_ms = percentile(c.virtual_ms, 0.5);
  c.p10_ms = percentile(c.virtual_ms, 0.1);
  c.p90_ms = percentile(c.virtual_ms, 0.9);
  c.min_ms = *std::min_element(c.virtual_ms.begin(), c.virtual_ms.end());
  c.max_ms = *std::max_element(c.virtual_ms.begin(), c.virtual_ms.end());
  c.wall_median_ms = percentile(c.wall_ms, 0.5);
}

// Per-request bytes by link, the app folded into the node it sits on (it is not a machine of the
// testbed), and the backbone (links touching a cloud node) and device-link (touching a device) sums.
void account_links(grid_cell& c, const std::vector<link_bytes>& per_request, const std::string& app_name,
                   const std::string& app_node, const std::map<std::string, std::string>& roles) {
  std::map<std::pair<std::string, std::string>, size_t> folded;
  for (const link_bytes& l : per_request) {
    const std::string from = l.from == app_name ? app_node : l.from;
    const std::string to = l.to == app_name ? app_node : l.to;
    if (from != to) folded[{from, to}] += l.bytes;
  }
  auto role = [&](const std::string& node) {
    auto it = roles.find(node);
    return it == roles.end() ? std::string() : it->second;
  };
  for (const auto& [key, bytes] : folded) {
    c.links.push_back({key.first, key.second, bytes});
    c.total_bytes += bytes;
    if (role(key.first) == "cloud" || role(key.second) == "cloud") c.backbone_bytes += bytes;
    if (role(key.first) == "device" || role(key.second) == "device") c.device_link_bytes += bytes;
  }
}

// A cell's plan: what the strategy picks on the cost model (the prediction is recorded).
std::optional<deployment_plan> plan_cell(grid_cell& c, const model_context& m, const cluster_model& cluster) {
  auto chosen = plan_with_strategy(c.strategy, m.g, m.profile, cluster);
  if (!chosen) {
    c.error = "plan: " + chosen.message();
    return std::nullopt;
  }
  c.predicted_ms = chosen->prediction.latency_ms;
  c.plan = describe(chosen->plan);
  if (auto sg = build_stage_graph(m.g, chosen->plan)) {
    for (size_t k = 0; k < sg->stages.size(); ++k) {
      grid_cell::stage_timing t;
      t.kind = to_string(sg->stages[k].kind);
      t.node = sg->stages[k].node;
      if (k < chosen->prediction.stage_finish_ms.size()) t.predicted_finish_ms = chosen->prediction.stage_finish_ms[k];
      c.stages.push_back(std::move(t));
    }
  }
  return chosen->plan;
}

// Deploys a cell's plan (its first deployment records the weights shipped and bytes per link).
// Returns false when the deployment failed (the cell records why).
bool deploy_cell(grid_cell& c, const deployment_plan& plan, const model_context& m, deployment& dep,
                 const deployment_options& dopts, const std::map<std::string, std::string>& roles) {
  auto report = dep.deploy(m.g, plan);
  if (!report) {
    c.error = "deploy: " + report.message();
    return false;
  }
  if (!c.deployed) {
    c.deployed = true;
    c.weights_shipped = report->weight_bytes_shipped;
    account_links(c, report->bytes_per_request, dopts.app_node, dopts.emulation.app_node, roles);
  }
  return true;
}

// Request `i` (warm-ups first) of a deployed cell, compared memcmp-equal with the single-process
// answer. Returns false when the request failed: the rest of the cell is skipped, counted failed.
bool request_cell(grid_cell& c, int i, const grid_options& o, const model_context& m, deployment& dep) {
  const int total = o.warmup + o.requests;
  const size_t strays_before = dep.stray_errors().size();  // the deployment object outlives cells
  std::vector<request_outcome> outcomes = dep.run({m.inputs[size_t(i)]}, 1);
  const request_outcome& r = outcomes.at(0);
  if (!r.ok) {
    if (c.error.empty()) c.error = format("request %d: ", i + 1) + r.error;
    c.failed += total - i;
    return false;
  }
  bool same = r.outputs.size() == m.expected[size_t(i)].size();
  for (const auto& [name, want] : m.expected[size_t(i)]) {
    auto got = r.outputs.find(name);
    same = same && got != r.outputs.end() && bitwise_equal(got->second, want);
  }
  if (!same) {
    ++c.differ;
    if (c.error.empty()) c.error = format("request %d: the answer differs from the single-process run", i + 1);
  } else {
    ++c.verified;
  }
  if (i >= o.warmup) {
    c.virtual_ms.push_back(r.virtual_latency_ms);
    c.wall_ms.push_back(r.latency_ms);
    for (const stage_report& s : r.stage_reports)
      if (s.stage_id >= 0 && size_t(s.stage_id) < c.stages.size()) {
        c.stages[size_t(s.stage_id)].finish_ms.push_back(s.finish_ms - r.virtual_start_ms);
        c.stages[size_t(s.stage_id)].cpu_ms.push_back(s.cpu_ms);
      }
  }
  const std::vector<std::string>& strays = dep.stray_errors();
  if (strays.size() > strays_before && c.error.empty()) c.error = "stage error: " + strays[strays_before];
  return true;
}

std::string cell_line(const grid_cell& c) {
  std::string head = format("%-13s %-5s %-13s", c.model.c_str(), c.scenario.c_str(), c.strategy.c_str());
  if (!c.measured()) return head + " ERROR " + c.error;
  std::string line = head + format(" median %9.2f ms  p10 %9.2f  p90 %9.2f  predicted %9.2f ms  backbone %10s  "
                                   "links %10s  verified %d/%d",
                                   c.median_ms, c.p10_ms, c.p90_ms, c.predicted_ms, human_bytes(c.backbone_bytes).c_str(),
                                   human_bytes(c.total_bytes).c_str(), c.verified, c.requests + c.warmup);
  if (!c.error.empty()) line += "  ERROR " + c.error;
  return line;
}

// --- The grid ------------------------------------------------------------------------------------

grid_results run_grid(const grid_options& o, caf::actor_system& system) {
  grid_results results;
  const size_t total = o.models.size() * o.scenarios.size() * o.strategies.size();
  progress_bar bar(total);
  size_t index = 0;
  const std::vector<local_node_spec> specs = node_specs(o.bed);
  std::map<std::string, std::string> roles;
  for (const local_node_spec& s : specs) roles[s.name] = s.role;
  const std::string log_folder = o.out + "/node-logs";
  ::mkdir(log_folder.c_str(), 0755);

  auto emit = [&](grid_cell c) {
    bar.clear();
    std::printf("%s\n", cell_line(c).c_str());
    std::fflush(stdout);
    results.cells.push_back(std::move(c));
  };

  for (const std::string& model : o.models) {
    auto new_cell = [&](const std::string& scenario, const std::string& strategy) {
      grid_cell c;
      c.model = model;
      c.scenario = scenario;
      c.strategy = strategy;
      c.requests = o.requests;
      c.warmup = o.warmup;
      return c;
    };
    bar.model(index, model);
    auto prepared = prepare_model(o, model, bar);
    if (!prepared) {  // every cell of the model records why
      for (const std::string& scenario : o.scenarios)
        for (const std::string& strategy : o.strategies) {
          grid_cell c = new_cell(scenario, strategy);
          c.error = "model: " + prepared.message();
          emit(c);
          ++index;
        }
      continue;
    }
    const model_context& m = prepared.value();

    std::unique_ptr<local_nodes> nodes;  // started fresh per model: no layer cache carries over
    for (const std::string& scenario_name : o.scenarios) {
      const testbed t = o.bed.with(*o.bed.scenario(scenario_name));
      cluster_model cluster = cluster_model::evaluation(t, o.bed.edge_nodes);
      bool probed = o.profile_source != "nodes";
      deployment_options dopts;
      dopts.timeout = std::chrono::milliseconds(o.timeout_ms);
      dopts.emulation.clock = "virtual";
      dopts.emulation.shaped = true;
      dopts.emulation.links = t;
      dopts.emulation.app_node = "device";
      std::unique_ptr<deployment> dep;  // one per scenario: the emulation settings are per deployment
      // Nodes and a connected deployment (fresh nodes after a failure); "" or what went wrong.
      auto ready = [&]() -> std::string {
        if (dep) return "";
        if (!nodes) {
          bar.detail("starting nodes");
          auto started = local_nodes::start(o.node_binary, log_folder, specs, std::chrono::seconds(30));
          if (!started) return "nodes: " + started.message();
          nodes = std::move(started.value());
        }
        bar.detail("connecting");
        dep = std::make_unique<deployment>(system, dopts);
        if (auto s = dep->connect(nodes->endpoints()); !s) {
          dep.reset();
          nodes.reset();
          return "connect: " + s.message();
        }
        if (!probed) {  // the nodes' own layer times (each node caches them per model)
          bar.detail("probing the nodes' profiles");
          if (auto s = probe_node_profiles(*dep, m.g, cluster, o.profile_repeats); !s) {
            dep.reset();
            nodes.reset();
            return "profile probe: " + s.message();
          }
          probed = true;
        }
        return "";
      };
      // Every strategy's cell of this scenario, measured side by side: round r deploys each plan in
      // turn and runs its request r, so slow phases of this shared machine hit every strategy
      // alike. Redeploys ship nothing (the nodes cache the layers) and reset the virtual clocks.
      bar.cell(index, model + " " + scenario_name + " (" + std::to_string(o.strategies.size()) + " strategies, interleaved)");
      std::vector<grid_cell> cells;
      std::vector<std::optional<deployment_plan>> plans;
      const std::string failure = ready();
      for (const std::string& strategy : o.strategies) {
        cells.push_back(new_cell(scenario_name, strategy));
        plans.push_back(failure.empty() ? plan_cell(cells.back(), m, cluster) : std::nullopt);
        if (!failure.empty()) cells.back().error = failure;
      }
      const int total = o.warmup + o.requests;
      for (int round = 0; round < total; ++round) {
        // The order rotates: a plan run right after the others ran elsewhere finds its node's
        // caches cold, and that must not always be the same strategy.
        for (size_t turn = 0; turn < cells.size(); ++turn) {
          const size_t k = (turn + size_t(round)) % cells.size();
          grid_cell& c = cells[k];
          if (!plans[k]) continue;
          bar.detail(format("round %d/%d%s: %s", round + 1, total, round < o.warmup ? " (warm-up)" : "", c.strategy.c_str()));
          bool healthy = false;
          if (const std::string not_ready = ready(); !not_ready.empty()) {
            c.error = not_ready;
          } else if (deploy_cell(c, *plans[k], m, *dep, dopts, roles)) {
            healthy = request_cell(c, round, o, m, *dep);
            dep->teardown();
            healthy = healthy && dep->broken().empty();
          }
          // A node that died may have hosted no stage of this cell, and then nothing else notices;
          // but the numbers are not to be trusted (e.g. the app's links are those of the device
          // node), so the cell records it and the nodes restart.
          if (nodes) {
            if (const std::vector<std::string> gone = nodes->exited(); !gone.empty()) {
              c.error = "during the cell: " + join(gone, "; ") + (c.error.empty() ? "" : "; " + c.error);
              healthy = false;
            }
          }
          if (!healthy) {  // this cell stops; fresh nodes for the others (the deployment goes first)
            if (c.failed == 0) c.failed = total - round;
            plans[k].reset();
            bar.detail("restarting nodes");
            dep.reset();
            nodes.reset();
          }
        }
      }
      for (grid_cell& c : cells) {
        fill_statistics(c);
        emit(std::move(c));
      }
      index += o.strategies.size();
      dep.reset();
    }
    bar.detail("stopping nodes");
    nodes.reset();
  }
  bar.done();
  return results;
}

// --- Outputs -------------------------------------------------------------------------------------

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
  return q + "\"";
}

std::string csv_number(double v, const char* pattern = "%.3f") { return std::isnan(v) ? "" : format(pattern, v); }

// stages.csv: per cell and stage, the cost model's finish time against the measured median.
status write_stage_csv(const std::string& path, const grid_results& r) {
  std::ofstream out(path);
  if (!out) return status::error("cannot write '" + path + "'");
  out << "model,scenario,strategy,stage,kind,node,predicted_finish_ms,measured_finish_ms,cpu_ms\n";
  for (const grid_cell& c : r.cells)
    for (size_t k = 0; k < c.stages.size(); ++k) {
      const grid_cell::stage_timing& t = c.stages[k];
      out << csv_field(c.model) << ',' << csv_field(c.scenario) << ',' << c.strategy << ',' << k << ',' << t.kind << ','
          << t.node << ',' << csv_number(t.predicted_finish_ms) << ','
          << (t.finish_ms.empty() ? "" : csv_number(percentile(t.finish_ms, 0.5))) << ','
          << (t.cpu_ms.empty() ? "" : csv_number(percentile(t.cpu_ms, 0.5))) << '\n';
    }
  return out ? status::ok() : status::error("cannot write '" + path + "'");
}

status write_csv(const std::string& path, const grid_results& r) {
  std::ofstream out(path, std::ios::trunc);
  out << "model,scenario,strategy,requests,warmup,verified,failed,differ,median_ms,p10_ms,p90_ms,min_ms,max_ms,"
         "predicted_ms,backbone_bytes,device_link_bytes,total_link_bytes,links,weights_shipped_bytes,wall_median_ms,plan,error\n";
  for (const grid_cell& c : r.cells) {
    std::vector<std::string> links;
    for (const link_bytes& l : c.links) links.push_back(l.from + "->" + l.to + "=" + std::to_string(l.bytes));
    const bool deployed = c.deployed;
    out << csv_field(c.model) << ',' << csv_field(c.scenario) << ',' << c.strategy << ',' << c.requests << ','
        << c.warmup << ',' << c.verified << ',' << c.failed << ',' << c.differ << ',' << csv_number(c.median_ms) << ','
        << csv_number(c.p10_ms) << ',' << csv_number(c.p90_ms) << ',' << csv_number(c.min_ms) << ','
        << csv_number(c.max_ms) << ',' << csv_number(c.predicted_ms) << ','
        << (deployed ? std::to_string(c.backbone_bytes) : "") << ',' << (deployed ? std::to_string(c.device_link_bytes) : "")
        << ',' << (deployed ? std::to_string(c.total_bytes) : "") << ',' << csv_field(join(links, ";")) << ','
        << (deployed ? std::to_string(c.weights_shipped) : "") << ',' << csv_number(c.wall_median_ms) << ','
        << csv_field(c.plan) << ',' << csv_field(c.error) << '\n';
  }
  out.close();
  if (!out) return status::error("cannot write '" + path + "'");
  return status::ok();
}

bool contains(const std::vector<std::string>& list, const std::string& name) {
  return std::find(list.begin(), list.end(), name) != list.end();
}

double geometric_mean(const std::vector<double>& v) {
  if (v.empty()) return NAN;
  double log_sum = 0;
  for (double x : v) log_sum += std::log(x);
  return std::exp(log_sum / double(v.size()));
}

// A ratio with where its maximum was, over the cells where both sides were measured.
struct ratio_summary {
  std::vector<double> values;
  double max = NAN;
  std::string max_at;
  int infinite = 0;  // the denominator was zero (hpa sent nothing over the backbone)
  void add(double v, const std::string& at) {
    if (std::isinf(v)) {
      ++infinite;
      return;
    }
    values.push_back(v);
    if (std::isnan(max) || v > max) {
      max = v;
      max_at = at;
    }
  }
  std::string text() const {
    if (values.empty() && infinite == 0) return "no cell with both measured";
    std::string s = values.empty() ? "" : format("max %.2fx (%s), geometric mean %.2fx over %zu cell%s", max, max_at.c_str(),
                                                   geometric_mean(values), values.size(), values.size() == 1 ? "" : "s");
    if (infinite) s += (s.empty() ? "" : "; ") + format("%d cell%s where hpa sends nothing (unbounded)", infinite, infinite == 1 ? "" : "s");
    return s;
  }
};

// A model's and a scenario's best measured cell among `names` (lowest median); null when none.
const grid_cell* best_of(const grid_results& r, const std::string& model, const std::string& scenario,
                         const std::vector<std::string>& names) {
  const grid_cell* best = nullptr;
  for (const std::string& s : names) {
    const grid_cell* c = r.find(model, scenario, s);
    if (c && c->clean() && (!best || c->median_ms < best->median_ms)) best = c;
  }
  return best;
}

// hpa against the best other strategy of one (model, scenario), within the run's own noise.
struct hpa_verdict {
  bool ok = false;
  std::string text;  // the numbers, one line
};

// The noise band of a comparison: the larger relative spread (p90 - p10) / median of the two
// cells' repeated requests; and, since cells that deployed the same plan measure the same thing,
// the relative spread of the medians of same-plan cells of this (model, scenario) (it shows noise
// between cells, e.g. other load on the machine, that the requests of one cell do not); plus the
// floor.
hpa_verdict judge_hpa(const grid_options& o, const grid_results& r, const std::string& model, const std::string& scenario) {
  hpa_verdict v;
  const std::string where = model + " " + scenario;
  const grid_cell* hpa = r.find(model, scenario, "hpa");
  if (!hpa) {
    v.text = where + ": hpa is not in --strategies; the check compares it with the baselines";
    return v;
  }
  if (!hpa->clean()) {
    v.text = where + ": hpa has no clean measurement (" + hpa->error + ")";
    return v;
  }
  std::vector<std::string> others;
  for (const std::string& s : o.strategies)
    if (s != "hpa") others.push_back(s);
  const grid_cell* best = best_of(r, model, scenario, others);
  if (!best) {
    v.text = where + ": no baseline measured to compare hpa with";
    return v;
  }
  std::map<std::string, std::pair<double, double>> plan_medians;  // plan -> (min, max) median
  std::map<std::string, int> plan_cells;
  for (const std::string& s : o.strategies) {
    const grid_cell* c = r.find(model, scenario, s);
    if (!c || !c->clean()) continue;
    auto [it, fresh] = plan_medians.emplace(c->plan, std::make_pair(c->median_ms, c->median_ms));
    it->second.first = std::min(it->second.first, c->median_ms);
    it->second.second = std::max(it->second.second, c->median_ms);
    ++plan_cells[c->plan];
  }
  double same_plan_spread = 0;
  for (const auto& [plan, range] : plan_medians)
    if (plan_cells[plan] > 1) same_plan_spread = std::max(same_plan_spread, (range.second - range.first) / range.first);
  const double band = std::max({hpa->spread(), best->spread(), same_plan_spread}) + o.noise_floor;
  const double ratio = hpa->median_ms / best->median_ms;
  const bool same_plan = hpa->plan == best->plan;
  v.ok = same_plan || ratio <= 1 + band;
  v.text = format("%s: hpa median %.2f ms, best baseline %s %.2f ms, hpa/best %.3f; noise band %.1f%% = max of "
                  "spread (p90-p10)/median (hpa %.1f%%, %s %.1f%%) and same-plan cells' spread %.1f%%, + floor %.1f%%",
                  where.c_str(), hpa->median_ms, best->strategy.c_str(), best->median_ms, ratio, 100 * band,
                  100 * hpa->spread(), best->strategy.c_str(), 100 * best->spread(), 100 * same_plan_spread,
                  100 * o.noise_floor);
  if (same_plan) v.text += "; hpa deployed the same plan as " + best->strategy;
  return v;
}

struct check_outcome {
  bool pass = true;
  std::vector<std::string> lines;
};

// --check: every answer exact, every cell planned and deployed, hpa within the noise band of
// the best other strategy in every (model, scenario).
check_outcome run_check(const grid_options& o, const grid_results& r) {
  check_outcome out;
  for (const grid_cell& c : r.cells)
    if (!c.clean()) {
      out.pass = false;
      out.lines.push_back(format("FAIL %s %s %s: ", c.model.c_str(), c.scenario.c_str(), c.strategy.c_str()) +
                          (c.differ ? format("%d answers differ from the single-process run; ", c.differ) : "") +
                          (c.failed ? format("%d requests failed; ", c.failed) : "") + c.error);
    }
  for (const std::string& model : o.models)
    for (const std::string& scenario : o.scenarios) {
      const hpa_verdict v = judge_hpa(o, r, model, scenario);
      if (!v.ok) out.pass = false;
      out.lines.push_back((v.ok ? "ok   " : "FAIL ") + v.text);
    }
  out.lines.push_back(out.pass ? "check: PASS" : "check: FAIL");
  return out;
}

std::string testbed_text(const grid_options& o) {
  const testbed_file& b = o.bed;
  std::string s;
  s += "Testbed: " + b.name + " (" + b.source + "). EMULATED, not real devices or links:\n\n";
  s += "| node | count | speed (x one core of this machine) |\n|---|---|---|\n";
  s += format("| device | 1 | %g |\n| edge (edge1..edge%d) | %d | %g |\n| cloud | 1 | %g |\n\n", b.base.device_speed,
              b.edge_nodes, b.edge_nodes, b.base.edge_speed, b.base.cloud_speed);
  s += "| scenario | device<->edge | edge<->edge | edge<->cloud (backbone) | device<->cloud |\n|---|---|---|---|---|\n";
  for (const std::string& u : o.scenarios) {
    const testbed t = b.with(*b.scenario(u));
    s += "| " + u + " | " + describe_link(t.device_edge) + " | " + describe_link(t.edge_edge) + " | " +
         describe_link(t.edge_cloud) + " | " + describe_link(t.link(node_role::device, node_role::cloud)) +
         (t.device_cloud ? "" : " (device<->edge, then edge<->cloud)") + " |\n";
  }
  s += "\n";
  s += "Times are EMULATED on the virtual clock: a node's compute = the measured thread CPU time of its kernels on this "
       "machine / the node's speed; a link = latency + bytes / bandwidth, queued per link. Backbone bytes = bytes per "
       "request on links touching the cloud node (edge<->cloud, device<->cloud; the app sits on the device, so inputs "
       "start and answers end there).\n";
  return s;
}

std::string md_header(const std::vector<std::string>& columns) {
  std::string h = "|";
  for (const std::string& c : columns) h += " " + c + " |";
  h += "\n|";
  for (size_t i = 0; i < columns.size(); ++i) h += "---|";
  return h + "\n";
}

std::string md_cell_latency(const grid_cell* c) {
  if (!c) return "";
  if (!c->measured()) return c->error.rfind("plan: ", 0) == 0 ? "no plan" : "error";
  std::string s = format("%.1f", c->median_ms);
  if (c->failed || c->differ) s += format(" (%d bad)", c->failed + c->differ);
  return s;
}

std::string markdown_report(const grid_options& o, const grid_results& r, const check_outcome* check,
                            const std::string& started_utc, double wall_seconds, const std::string& charts) {
  std::string md;
  md += "# d3-bench grid: latency and backbone traffic per model, scenario and strategy\n\n";
  md += "Command: `" + o.command_line + "`\n\n";
  md += format("Started %s (UTC), %.0f s of wall time on %ld cores. Each cell: %d warm-up + %d timed requests, one in "
               "flight, inputs seeded %llu + i, every answer compared memcmp-equal with a single-process d3::executor "
               "run of the same input. Latency = median virtual end-to-end time of the timed requests. Predicted = the "
               "planner's cost model for the plan the strategy chose, with per-layer times %s "
               "(%d runs, single thread).\n\n",
               started_utc.c_str(), wall_seconds, ::sysconf(_SC_NPROCESSORS_ONLN), o.warmup, o.requests,
               (unsigned long long)o.seed,
               o.profile_source == "nodes" ? "probed on each node under its clock (thread CPU time / speed)"
                                           : "measured in this process over each node's speed",
               o.profile_repeats);
  md += testbed_text(o) + "\n";

  const bool has_hpa = contains(o.strategies, "hpa");
  std::vector<std::string> baselines;
  for (const std::string& s : o.strategies)
    if (s != "hpa") baselines.push_back(s);

  md += "## Median end-to-end latency, ms (EMULATED)\n\n";
  md += "Bold: the fastest strategy of the row. \"no plan\": the strategy returned no plan (see Errors).\n\n";
  for (const std::string& scenario : o.scenarios) {
    md += "### Scenario " + scenario + " (" + describe_scenario(o.bed, scenario) + ")\n\n";
    std::vector<std::string> columns = {"model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    md += md_header(columns);
    for (const std::string& model : o.models) {
      const grid_cell* best = best_of(r, model, scenario, o.strategies);
      md += "| " + model + " |";
      for (const std::string& s : o.strategies) {
        const grid_cell* c = r.find(model, scenario, s);
        const std::string text = md_cell_latency(c);
        md += " " + (c && c == best ? "**" + text + "**" : text) + " |";
      }
      md += "\n";
    }
    md += "\n";
  }

  std::vector<std::string> two_tier, papers_two, cloud_bound;  // those of the comparison groups that ran
  for (const std::string& b : two_tier_names())
    if (contains(baselines, b)) two_tier.push_back(b);
  for (const std::string& b : papers_two_tier)
    if (contains(baselines, b)) papers_two.push_back(b);
  for (const std::string& b : cloud_bound_names())
    if (contains(baselines, b)) cloud_bound.push_back(b);
  const std::string two_tier_label = "best two-tier (" + join(two_tier, ", ") + ")";
  const std::string papers_label = "best of the papers' two (" + join(papers_two, ", ") + ")";
  ratio_summary over_two_tier, least_backbone_reduction, predicted_over_two_tier;  // for the goal section

  md += "## hpa's speedup (baseline median / hpa median)\n\n";
  if (!has_hpa) {
    md += "hpa was not in --strategies.\n\n";
  } else {
    std::map<std::string, ratio_summary> summaries;
    ratio_summary over_best, over_papers;
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& b : baselines) columns.push_back(b);
    columns.push_back(two_tier_label);
    columns.push_back(papers_label);
    columns.push_back("best baseline");
    md += md_header(columns);
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        const std::string at = model + " " + scenario;
        const bool hpa_measured = hpa && hpa->measured();
        md += "| " + scenario + " | " + model + (hpa_measured ? "" : " (hpa: " + md_cell_latency(hpa) + ")") + " |";
        auto speedup = [&](const grid_cell* base, ratio_summary& summary) -> std::string {
          if (!hpa_measured || !base || !base->measured()) return "";
          const double v = base->median_ms / hpa->median_ms;
          summary.add(v, at + ", vs " + base->strategy);
          return format("%.2fx", v);
        };
        for (const std::string& b : baselines) md += " " + speedup(r.find(model, scenario, b), summaries[b]) + " |";
        const grid_cell* best_two = best_of(r, model, scenario, two_tier);
        const grid_cell* best_papers = best_of(r, model, scenario, papers_two);
        const grid_cell* best_any = best_of(r, model, scenario, baselines);
        md += " " + speedup(best_two, over_two_tier) + (hpa_measured && best_two ? " (" + best_two->strategy + ")" : "") + " |";
        md += " " + speedup(best_papers, over_papers) + (hpa_measured && best_papers ? " (" + best_papers->strategy + ")" : "") + " |";
        md += " " + speedup(best_any, over_best) + (hpa_measured && best_any ? " (" + best_any->strategy + ")" : "") + " |\n";
      }
    md += "\nOver all cells where both were measured:\n\n";
    for (const std::string& b : baselines) md += "- vs " + b + ": " + summaries[b].text() + "\n";
    md += "- vs the " + two_tier_label + " of each cell: " + over_two_tier.text() + "\n";
    md += "- vs the " + papers_label + " of each cell: " + over_papers.text() + "\n";
    md += "- vs the best baseline of each cell: " + over_best.text() + "\n\n";
    // The cost model's view carries no measurement noise: the speedup hpa's planner predicted.
    md += "Predicted by the cost model (no measurement noise), hpa's speedup over the " + two_tier_label + ":\n\n";
    std::vector<std::string> pcolumns = {"model"};
    for (const std::string& scenario : o.scenarios) pcolumns.push_back(scenario);
    md += md_header(pcolumns);
    for (const std::string& model : o.models) {
      md += "| " + model + " |";
      for (const std::string& scenario : o.scenarios) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        double best = std::numeric_limits<double>::infinity();
        for (const std::string& b : two_tier)
          if (const grid_cell* c = r.find(model, scenario, b); c && c->predicted_ms > 0) best = std::min(best, c->predicted_ms);
        if (hpa && hpa->predicted_ms > 0 && std::isfinite(best)) {
          predicted_over_two_tier.add(best / hpa->predicted_ms, model + " " + scenario);
          md += format(" %.2fx |", best / hpa->predicted_ms);
        } else {
          md += " |";
        }
      }
      md += "\n";
    }
    md += "\nPredicted over all cells: " + predicted_over_two_tier.text() + "\n\n";
  }

  md += "## Backbone traffic per request (links touching the cloud node)\n\n";
  {
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    if (has_hpa)
      for (const std::string& b : cloud_bound) columns.push_back("hpa reduction vs " + b);
    if (has_hpa && !cloud_bound.empty()) columns.push_back("vs the least of them");
    md += md_header(columns);
    std::map<std::string, ratio_summary> reductions;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        md += "| " + scenario + " | " + model + " |";
        for (const std::string& s : o.strategies) {
          const grid_cell* c = r.find(model, scenario, s);
          md += " " + (c && c->deployed ? human_bytes(double(c->backbone_bytes)) : md_cell_latency(c)) + " |";
        }
        if (has_hpa) {
          const grid_cell* hpa = r.find(model, scenario, "hpa");
          const grid_cell* least = nullptr;  // the cloud-bound baseline with the least backbone traffic
          // baseline bytes / hpa bytes; nothing when neither uses the backbone (no ratio to speak of).
          auto reduction = [&](const grid_cell* base, ratio_summary& summary) -> std::string {
            if (!hpa || !hpa->deployed || !base || !base->deployed) return "";
            if (base->backbone_bytes == 0 && hpa->backbone_bytes == 0) return "none (0 B both)";
            const double v = hpa->backbone_bytes == 0 ? std::numeric_limits<double>::infinity()
                                                      : double(base->backbone_bytes) / double(hpa->backbone_bytes);
            summary.add(v, model + " " + scenario + ", vs " + base->strategy);
            return std::isinf(v) ? "unbounded (hpa: 0 B)" : format("%.2fx", v);
          };
          for (const std::string& b : cloud_bound) {
            const grid_cell* base = r.find(model, scenario, b);
            md += " " + reduction(base, reductions[b]) + " |";
            if (base && base->deployed && (!least || base->backbone_bytes < least->backbone_bytes)) least = base;
          }
          if (!cloud_bound.empty())
            md += " " + reduction(least, least_backbone_reduction) +
                  (least && least->backbone_bytes > 0 ? " (" + least->strategy + ")" : "") + " |";
        }
        md += "\n";
      }
    if (has_hpa && !cloud_bound.empty()) {
      md += "\nhpa's backbone traffic reduction (baseline bytes / hpa bytes), over all cells where both deployed:\n\n";
      for (const std::string& b : cloud_bound) md += "- vs " + b + ": " + reductions[b].text() + "\n";
      md += "- vs the cloud-bound baseline with the least backbone traffic in each cell: " +
            least_backbone_reduction.text() + "\n";
    }
    md += "\n";
  }

  md += "## Predicted (cost model) against measured latency, ms\n\n";
  md += "Each cell: predicted -> measured median (measured / predicted - 1).\n\n";
  {
    std::vector<std::string> columns = {"scenario", "model"};
    for (const std::string& s : o.strategies) columns.push_back(s);
    md += md_header(columns);
    std::vector<double> errors;
    std::string worst_at;
    double worst = 0;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        md += "| " + scenario + " | " + model + " |";
        for (const std::string& s : o.strategies) {
          const grid_cell* c = r.find(model, scenario, s);
          if (c && c->measured() && c->predicted_ms > 0) {
            const double e = c->median_ms / c->predicted_ms - 1;
            errors.push_back(std::fabs(e));
            if (std::fabs(e) >= worst) {
              worst = std::fabs(e);
              worst_at = model + " " + scenario + " " + s;
            }
            md += format(" %.1f -> %.1f (%+.1f%%) |", c->predicted_ms, c->median_ms, 100 * e);
          } else {
            md += " " + md_cell_latency(c) + " |";
          }
        }
        md += "\n";
      }
    if (!errors.empty())
      md += format("\n|measured / predicted - 1| over %zu cells: median %.1f%%, max %.1f%% (%s).\n", errors.size(),
                   100 * percentile(errors, 0.5), 100 * worst, worst_at.c_str());
    md += "\n";
  }

  if (has_hpa) {
    md += "## Against the goal (issue 12)\n\n";
    std::vector<std::string> slower;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const hpa_verdict v = judge_hpa(o, r, model, scenario);
        if (!v.ok) slower.push_back(v.text);
      }
    md += "- hpa no slower than the best baseline in any cell (within the noise band): " +
          (slower.empty() ? std::string("met") : "missed:\n  - " + join(slower, "\n  - ")) + "\n";
    std::vector<std::string> predicted_behind;
    std::vector<double> model_errors;
    for (const std::string& scenario : o.scenarios)
      for (const std::string& model : o.models) {
        const grid_cell* hpa = r.find(model, scenario, "hpa");
        for (const std::string& b : baselines) {
          const grid_cell* c = r.find(model, scenario, b);
          if (hpa && c && hpa->predicted_ms > 0 && c->predicted_ms > 0 && hpa->predicted_ms > c->predicted_ms * (1 + 1e-9))
            predicted_behind.push_back(format("%s %s: hpa %.2f ms, %s %.2f ms", model.c_str(), scenario.c_str(),
                                              hpa->predicted_ms, b.c_str(), c->predicted_ms));
        }
        for (const std::string& st : o.strategies)
          if (const grid_cell* c = r.find(model, scenario, st); c && c->measured() && c->predicted_ms > 0)
            model_errors.push_back(std::fabs(c->median_ms / c->predicted_ms - 1));
      }
    md += "- hpa never predicted behind any baseline: " +
          (predicted_behind.empty() ? std::string("met") : "missed:\n  - " + join(predicted_behind, "\n  - ")) + "\n";
    if (!model_errors.empty()) {
      const double median = percentile(model_errors, 0.5), worst = *std::max_element(model_errors.begin(), model_errors.end());
      md += format("- cost model within 3%% median and 10%% max of the measured latency: %s (median %.1f%%, max %.1f%% "
                   "over %zu cells)\n",
                   median <= 0.03 && worst <= 0.10 ? "met" : "missed", 100 * median, 100 * worst, model_errors.size());
    }
    auto reached = [](const ratio_summary& summary, double goal) {
      const std::string finite =
          summary.values.empty() ? "" : format("max %.2fx (%s)", summary.max, summary.max_at.c_str());
      if (summary.infinite)
        return format("met: in %d cell%s hpa sends nothing over the backbone and the baseline does (an unbounded "
                      "ratio)",
                      summary.infinite, summary.infinite == 1 ? "" : "s") +
               (finite.empty() ? "" : "; finite ratios: " + finite);
      if (summary.values.empty()) return std::string("not measured");
      return std::string(summary.max >= goal ? "met: " : "missed: ") + finite;
    };
    md += "- somewhere >= 3.4x faster than the " + two_tier_label + " of the cell: " + reached(over_two_tier, 3.4) +
          (over_two_tier.values.empty() ? "" : format(" (geometric mean %.2fx)", geometric_mean(over_two_tier.values))) + "\n";
    md += "- somewhere >= 3.68x less backbone traffic than the cloud-bound baselines (" + join(cloud_bound, ", ") +
          "; against the one with the least traffic in the cell): " + reached(least_backbone_reduction, 3.68) + "\n\n";
  }

  if (check) {
    md += "## --check\n\n```\n";
    for (const std::string& line : check->lines) md += line + "\n";
    md += "```\n\n";
  }

  md += "## Errors\n\n";
  int errors = 0;
  for (const grid_cell& c : r.cells)
    if (!c.error.empty()) {
      md += "- " + c.model + " " + c.scenario + " " + c.strategy + ": " + c.error + "\n";
      ++errors;
    }
  if (!errors) md += "None: every cell planned, deployed and answered memcmp-equal.\n";
  md += "\n## Plans chosen\n\n";
  for (const grid_cell& c : r.cells)
    if (!c.plan.empty()) md += "- " + c.model + " " + c.scenario + " " + c.strategy + ": " + c.plan + "\n";
  md += "\n" + charts;
  return md;
}

// --- Charts (gnuplot) ----------------------------------------------------------------------------

std::string file_safe(const std::string& name) {
  std::string s;
  for (char c : name) s += std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_';
  return s;
}

std::string gnuplot_string(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
  return q + "'";
}

// Writes the data files and charts.gp into `folder` and runs gnuplot there. Returns a Markdown
// paragraph naming the charts, or why there are none.
std::string write_charts(const grid_options& o, const grid_results& r, const std::string& folder) {
  if (std::system("gnuplot --version >/dev/null 2>&1") != 0) {
    std::printf("gnuplot is not installed: no PNG charts (scripts/install-bench-deps.sh installs gnuplot-nox)\n");
    return "No charts: gnuplot is not installed (scripts/install-bench-deps.sh installs gnuplot-nox).\n";
  }
  // One data file per scenario and metric: rows models, columns strategies ("?" = missing). gnuplot
  // refuses a plot without a single point, so empty panels get a note instead.
  std::set<std::string> has_points;  // "latency-UPLINK", "backbone-UPLINK"
  for (const std::string& scenario : o.scenarios) {
    std::ofstream latency(folder + "/latency-" + file_safe(scenario) + ".dat");
    std::ofstream backbone(folder + "/backbone-" + file_safe(scenario) + ".dat");
    latency << "model";
    backbone << "model";
    for (const std::string& s : o.strategies) {
      latency << ' ' << s;
      backbone << ' ' << s;
    }
    latency << '\n';
    backbone << '\n';
    for (const std::string& model : o.models) {
      latency << file_safe(model);
      backbone << file_safe(model);
      for (const std::string& s : o.strategies) {
        const grid_cell* c = r.find(model, scenario, s);
        latency << ' ' << (c && c->measured() ? format("%.3f", c->median_ms) : "?");
        // Log scale: no bar for zero bytes (strategies that never touch the cloud).
        backbone << ' ' << (c && c->deployed && c->backbone_bytes > 0 ? format("%.3f", c->backbone_bytes / 1e3) : "?");
        if (c && c->measured()) has_points.insert("latency-" + scenario);
        if (c && c->deployed && c->backbone_bytes > 0) has_points.insert("backbone-" + scenario);
      }
      latency << '\n';
      backbone << '\n';
    }
  }
  std::vector<std::string> scattered;  // strategies with points, one index block each
  {
    std::ofstream scatter(folder + "/predicted-vs-measured.dat");
    for (const std::string& s : o.strategies) {
      std::string block;
      for (const grid_cell& c : r.cells)
        if (c.strategy == s && c.measured() && c.predicted_ms > 0)
          block += format("%.3f %.3f ", c.predicted_ms, c.median_ms) + file_safe(c.model) + " " + file_safe(c.scenario) + "\n";
      if (block.empty()) continue;
      scatter << "# " << s << "\n" << block << "\n\n";
      scattered.push_back(s);
    }
  }
  const int panels = int(o.scenarios.size());
  const int columns = panels > 1 ? 2 : 1, rows = (panels + columns - 1) / columns;
  const int strategies = int(o.strategies.size());
  std::string gp;
  gp += "# d3-bench grid charts: gnuplot charts.gp (in this folder)\n";
  gp += "set terminal pngcairo noenhanced size " + std::to_string(700 * columns) + "," +
        std::to_string(420 * rows + 40) + " font 'sans,9'\n";
  // One colour per strategy (gnuplot's default cycle repeats after 8: hpa and the 9th shared one).
  const char* colours[] = {"#9400d3", "#009e73", "#56b4e9", "#e69f00", "#f0e442",
                           "#0072b2", "#d55e00", "#000000", "#cc79a7", "#999999"};
  for (size_t k = 0; k < sizeof colours / sizeof colours[0]; ++k)
    gp += format("set linetype %zu lc rgb '%s'\n", k + 1, colours[k]);
  gp += "set datafile missing '?'\nset style data histograms\nset style histogram clustered gap 1\n";
  gp += "set style fill solid 0.85 border -1\nset boxwidth 0.9\nset logscale y\nset grid ytics\n";
  gp += "set key outside right top vertical\nset xtics nomirror\n";
  auto histograms = [&](const std::string& output, const std::string& prefix, const std::string& title,
                        const std::string& ylabel, const std::string& empty_note) {
    gp += "set output '" + output + "'\n";
    gp += format("set multiplot layout %d,%d title %s\n", rows, columns, gnuplot_string(title).c_str());
    gp += "set ylabel " + gnuplot_string(ylabel) + "\n";
    for (const std::string& scenario : o.scenarios) {
      gp += "set title " + gnuplot_string("scenario " + scenario + " (" + describe_scenario(o.bed, scenario) + ")") + "\n";
      if (has_points.count(prefix + "-" + scenario)) {
        gp += format("plot for [i=2:%d] '%s-%s.dat' using i:xtic(1) title columnheader(i)\n", strategies + 1,
                     prefix.c_str(), file_safe(scenario).c_str());
      } else {
        gp += "set label 1 " + gnuplot_string(empty_note) + " at graph 0.5, graph 0.5 center\n";
        gp += "unset logscale y\nunset xtics\nunset ytics\nset xrange [0:1]\nset yrange [0:1]\nplot -1 notitle\n";
        gp += "unset label 1\nset autoscale x\nset autoscale y\nset logscale y\nset xtics nomirror\nset ytics\n";
      }
    }
    gp += "unset multiplot\n";
  };
  histograms("latency.png", "latency", "Median end-to-end latency per strategy (EMULATED, virtual clock)",
             "latency, ms (log)", "no cell measured");
  histograms("backbone.png", "backbone", "Backbone bytes per request (links touching the cloud; no bar: none)",
             "KB per request (log)", "no backbone traffic in any cell");
  gp += "set output 'predicted-vs-measured.png'\nset terminal pngcairo noenhanced size 800,640 font 'sans,9'\n";
  gp += "set style data points\nset logscale xy\nset key inside left top\n";
  gp += "set title 'Cost model against the runtime (EMULATED): each point a cell'\n";
  gp += "set xlabel 'predicted latency, ms'\nset ylabel 'measured median latency, ms'\n";
  gp += "plot x title 'measured = predicted' with lines lc rgb 'gray'";
  // Each strategy in the colour of its histogram bars (column k + 2 is line type k + 1).
  for (size_t i = 0; i < scattered.size(); ++i) {
    const size_t k = size_t(std::find(o.strategies.begin(), o.strategies.end(), scattered[i]) - o.strategies.begin());
    gp += format(", 'predicted-vs-measured.dat' index %zu using 1:2 with points lt %zu pt 7 ps 1 title %s", i, k + 1,
                 gnuplot_string(scattered[i]).c_str());
  }
  gp += "\n";
  {
    std::ofstream script(folder + "/charts.gp");
    script << gp;
  }
  const std::string command = "cd " + shell_quote(folder) + " && gnuplot charts.gp 2> gnuplot.log";
  if (std::system(command.c_str()) != 0) {
    std::printf("gnuplot failed (see %s/gnuplot.log): charts incomplete\n", folder.c_str());
    return "Charts: gnuplot failed (gnuplot.log in the output folder).\n";
  }
  std::remove((folder + "/gnuplot.log").c_str());
  return "Charts: ![latency](latency.png) ![backbone](backbone.png) "
         "![predicted vs measured](predicted-vs-measured.png) (data: *.dat, script: charts.gp).\n";
}

// mkdir -p.
status make_folder(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return status::error("cannot create folder '" + prefix + "': " + std::strerror(errno));
    if (slash == std::string::npos) break;
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) return status::error("'" + path + "' is not a folder");
  if (::access(path.c_str(), W_OK) != 0) return status::error("cannot write into folder '" + path + "'");
  return status::ok();
}

}  // namespace

int bench_grid(int argc, char** argv) {
  const grid_options o = parse_grid_options(argc, argv);
  if (auto s = make_folder(o.out); !s) bad_input("--out: " + s.message());
  const auto started = std::chrono::steady_clock::now();
  std::string started_utc;
  {
    const std::time_t now = std::time(nullptr);
    char buffer[32];
    std::strftime(buffer, sizeof buffer, "%Y-%m-%d %H:%M:%S", std::gmtime(&now));
    started_utc = buffer;
  }

  std::printf("d3-bench grid: %zu models x %zu scenarios x %zu strategies = %zu cells, %d warm-up + %d timed requests "
              "each, one in flight\ncommand: %s\n",
              o.models.size(), o.scenarios.size(), o.strategies.size(),
              o.models.size() * o.scenarios.size() * o.strategies.size(), o.warmup, o.requests, o.command_line.c_str());
  std::printf("testbed (%s, %s, EMULATED): device %g, %d edge nodes %g, cloud %g (speeds x one core); base links: "
              "device-edge %s, edge-edge %s, edge-cloud %s, device-cloud %s; scenarios:",
              o.bed.name.c_str(), o.bed.source.c_str(), o.bed.base.device_speed, o.bed.edge_nodes, o.bed.base.edge_speed,
              o.bed.base.cloud_speed, describe_link(o.bed.base.device_edge).c_str(),
              describe_link(o.bed.base.edge_edge).c_str(), describe_link(o.bed.base.edge_cloud).c_str(),
              o.bed.base.device_cloud ? describe_link(*o.bed.base.device_cloud).c_str() : "device-edge then edge-cloud");
  for (const std::string& u : o.scenarios) std::printf(" %s: %s;", u.c_str(), describe_scenario(o.bed, u).c_str());
  std::printf("\n");
  std::printf("times are EMULATED (virtual clock): node compute = measured thread CPU time / node speed; links = "
              "latency + bytes / bandwidth\n");
  std::fflush(stdout);

  caf::actor_system_config cfg;
  protocol::configure_process(cfg);
  grid_results results;
  {
    caf::actor_system system{cfg};
    results = run_grid(o, system);
  }
  const double wall_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  check_outcome check;
  if (o.check) check = run_check(o, results);
  const std::string charts = write_charts(o, results, o.out);
  const std::string md = markdown_report(o, results, o.check ? &check : nullptr, started_utc, wall_seconds, charts);

  int code = 0;
  if (auto s = write_stage_csv(o.out + "/stages.csv", results); !s) {
    std::cerr << "d3-bench grid: " << s.message() << "\n";
    code = exit_failed;
  }
  if (auto s = write_csv(o.out + "/grid.csv", results); !s) {
    std::cerr << "d3-bench grid: " << s.message() << "\n";
    code = exit_failed;
  }
  {
    std::ofstream out(o.out + "/grid.md", std::ios::trunc);
    out << md;
    if (!out) {
      std::cerr << "d3-bench grid: cannot write '" << o.out << "/grid.md'\n";
      code = exit_failed;
    }
  }

  // stdout: the latency tables and hpa's summary (the sections before the backbone details).
  const size_t latency_at = md.find("## Median end-to-end latency");
  const size_t backbone_at = md.find("## Backbone traffic");
  std::printf("\n%s", md.substr(latency_at, backbone_at - latency_at).c_str());
  int bad_cells = 0;
  for (const grid_cell& c : results.cells)
    if (c.differ || c.failed || (!c.error.empty() && c.error.rfind("plan: ", 0) != 0)) ++bad_cells;
  if (bad_cells) {
    std::printf("%d cells with errors: answers that differ, failed requests, deployments or nodes (see grid.md, Errors)\n",
                bad_cells);
    code = exit_failed;
  }
  if (o.check) {
    for (const std::string& line : check.lines) std::printf("%s\n", line.c_str());
    if (!check.pass) code = exit_failed;
  }
  std::printf("wrote %s/grid.csv, %s/grid.md%s (%.0f s)\n", o.out.c_str(), o.out.c_str(),
              charts.rfind("Charts: !", 0) == 0 ? ", latency.png, backbone.png, predicted-vs-measured.png" : "",
              wall_seconds);
  return code;
}

}  // namespace d3
