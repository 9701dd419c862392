// d3-bench grid: for each model, scenario and strategy, the plan the strategy picks on the cost
// model is deployed on real d3-node processes (device, edge1..edgeK, cloud on loopback) under the
// virtual clock, and requests run through it one at a time, every answer compared bit for bit with
// a single-process run. Outputs: a line per cell on stdout, grid.csv, grid.md and gnuplot charts.
#include "apps/bench_grid.hpp"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "actors/protocol.hpp"
#include "apps/app_support.hpp"
#include "apps/grid_report.hpp"
#include "apps/grid_run.hpp"
#include "apps/local_nodes.hpp"
#include "apps/options.hpp"

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
                      A strategy named S+codecs (e.g. hpa+codecs) plans with lossless tensor
                      codecs on the links where predicted faster (hpa searches codec-priced
                      plans; the others keep their partition and gain the codecs)
  --codecs            every strategy side by side with and without codecs (adds S+codecs after
                      each S); the report compares them ("Compression")
  --images            every model takes 8-bit images: a preprocess layer first ((x / 255 - mean)
                      / std), inputs are seeded random 8-bit pixels (u8 on the wire with codecs)
  --requests N        timed requests per cell (default 10)
  --warmup W          untimed requests per cell first, verified too (default 1)
  --testbed FILE      the testbed from a JSON file (emulation/testbed_file.hpp):
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
                      grid.md). A missing hpa (not in --strategies, no plan) is a FAIL.
                      Before a verdict fails on different plans, hpa and that baseline are
                      measured again, alternating, 2 * requests + 2 more requests each, and
                      the check judges all of them (a few requests misjudge the noise)
  --noise-floor PCT   the noise band's floor, percent (default 2)
  --seed S            request i's input is seeded S + i (default 1)
  --model-seed S      seed of the built-in models' weights (default 2021)
  --profile-repeats R rounds of the per-layer profile (default 5, at most 100): each round one
                      timed run on every node in turn (with --profile local: runs in this process)
  --profile nodes|pooled|local  the layer times the planner prices plans with: probed on each
                      node (default); pooled: probed on each node, then the nodes of one role and
                      speed share each layer's median over their probes (the emulated testbed runs
                      them on this one machine, so what sets them apart is the probes' noise:
                      measured, a node slow for the seconds of its probe and fast again when its
                      stages ran); local: measured in this process and divided by the node's speed
  --tile-overhead on|off  on (default): tiles are priced at what the profile measured them to
                      cost beyond their area (profiling/tile_overhead.hpp); off: by their area
                      share alone, as before 2026-12-07 (for comparing the two)
  --timeout-ms T      timeout of every connect, deployment step and answer (default 60000)
  --node-binary FILE  the d3-node executable (default: d3-node next to d3-bench)
  --tls DIR|false     the cluster's certificates (scripts/make-certs.sh; default: build/certs);
                      false: plaintext between the processes, with a warning
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

// The options, or what is wrong with them; `help` set when --help printed the usage.
result<grid_options> parse_grid_options(int argc, char** argv, bool& help) {
  return parse_options<grid_options>([&] {
    grid_options o;
    std::string models, scenarios, strategies, testbed_path;
    bool codecs_side_by_side = false;
    o.command_line = command_line(argc, argv);
    option_reader in(argc, argv, 2, "see d3-bench grid --help");
    while (in.next()) {
      if (in.is("--help", "-h")) {
        std::cout << grid_usage;
        help = true;
        return o;
      } else if (in.is("--models")) {
        models = in.value();
      } else if (in.is("--scenarios", "--uplinks")) {  // --uplinks: the first testbed's word
        scenarios = in.value();
      } else if (in.is("--strategies")) {
        strategies = in.value();
      } else if (in.is("--requests")) {
        o.requests = int(in.integer(1, 100000));
      } else if (in.is("--warmup")) {
        o.warmup = int(in.integer(0, 1000));
      } else if (in.is("--profile-repeats")) {
        o.profile_repeats = int(in.integer(1, 100));
      } else if (in.is("--profile")) {
        o.profile_source = in.choice({"nodes", "pooled", "local"});
      } else if (in.is("--tile-overhead")) {
        o.tile_overhead = in.choice({"on", "off"}) == "on";
      } else if (in.is("--timeout-ms")) {
        o.timeout_ms = in.integer(1, 3600000);
      } else if (in.is("--seed")) {
        o.seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      } else if (in.is("--model-seed")) {
        o.model_seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
      } else if (in.is("--noise-floor")) {
        o.noise_floor = in.number(0, 1000) / 100;  // a percentage
      } else if (in.is("--testbed")) {
        testbed_path = in.value();
      } else if (in.is("--out")) {
        o.out = in.value();
        if (o.out.empty()) in.fail("--out needs a folder");
      } else if (in.is("--node-binary")) {
        o.node_binary = in.value();
      } else if (in.is("--tls")) {
        o.tls_option = in.value();
      } else if (in.is("--check")) {
        o.check = true;
      } else if (in.is("--codecs")) {
        codecs_side_by_side = true;
      } else if (in.is("--images")) {
        o.images = true;
      } else {
        in.unknown();
      }
    }
    if (!testbed_path.empty()) {
      auto tb = load_testbed_file(testbed_path);
      if (!tb) in.fail(tb.message());
      o.bed = std::move(tb.value());
    }
    // Every name is checked before anything starts: a typo must not surface hours into a grid.
    o.models = models.empty() ? builtin_model_names() : split_list(models);
    if (auto known = check_model_names(o.models); !known) in.fail(known.message());
    if (scenarios.empty()) {
      o.scenarios = o.bed.scenario_names();
    } else {
      o.scenarios = split_list(scenarios);
      if (o.scenarios.empty()) in.fail("--scenarios needs at least one scenario");
      for (const std::string& u : o.scenarios)
        if (!o.bed.scenario(u))
          in.fail("unknown scenario '" + u + "' (the testbed " + o.bed.source + " has " +
                  join(o.bed.scenario_names(), ", ") + ")");
    }
    o.strategies = strategies.empty() ? default_strategies() : split_list(strategies);
    if (o.strategies.empty()) in.fail("--strategies needs at least one strategy");
    const std::vector<std::string>& known_strategies = strategy_names();
    for (const std::string& s : o.strategies)
      if (std::find(known_strategies.begin(), known_strategies.end(), without_codecs_suffix(s)) == known_strategies.end())
        in.fail("unknown strategy '" + s + "' (" + join(known_strategies, ", ") + ", each optionally +codecs)");
    if (codecs_side_by_side) {  // every strategy also with codecs, right after it
      std::vector<std::string> both;
      for (const std::string& s : o.strategies) {
        both.push_back(s);
        if (!with_codecs_suffix(s)) both.push_back(s + codecs_suffix);
      }
      o.strategies = both;
    }
    for (const std::vector<std::string>* list : {&o.models, &o.scenarios, &o.strategies}) {
      std::set<std::string> seen;
      for (const std::string& name : *list)
        if (!seen.insert(name).second) in.fail("'" + name + "' is listed twice");
    }
    if (auto resolved = resolve_local_cluster(o.node_binary, o.tls_option, o.tls); !resolved) in.fail(resolved.message());
    return o;
  });
}

}  // namespace

int bench_grid(int argc, char** argv) {
  bool help = false;
  auto parsed = parse_grid_options(argc, argv, help);
  if (auto code = stop_after_parse(parsed, help, "d3-bench grid")) return *code;
  const grid_options& o = parsed.value();
  if (auto s = make_folder(o.out); !s) {
    std::cerr << "d3-bench grid: --out: " << s.message() << "\n";
    return exit_bad_input;
  }
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
              o.bed.base.cloud_speed, describe(o.bed.base.device_edge).c_str(),
              describe(o.bed.base.edge_edge).c_str(), describe(o.bed.base.edge_cloud).c_str(),
              o.bed.base.device_cloud ? describe(*o.bed.base.device_cloud).c_str() : "device-edge then edge-cloud");
  for (const std::string& u : o.scenarios) std::printf(" %s: %s;", u.c_str(), o.bed.describe_scenario(u).c_str());
  std::printf("\n");
  std::printf("times are EMULATED (virtual clock): node compute = measured thread CPU time / node speed; links = "
              "latency + bytes / bandwidth\n");
  std::fflush(stdout);

  caf::actor_system_config cfg;
  configure_local_app(cfg, o.tls, "d3-bench grid");
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
