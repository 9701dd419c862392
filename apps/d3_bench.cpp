// d3-bench: benchmarks that print JSON. Subcommands:
//   engine   d3 against ONNX Runtime on the same ONNX files, runs alternating, one process each.
//   tiling   vertical separation: halo FLOP overhead and the summed time of a run's tiles against
//            the same run untiled, on one thread.
//   grid     the evaluation grid: models x uplinks x strategies deployed on d3-node processes under
//            the virtual clock (apps/bench_grid.cpp).
//   adapt    live adaptation under an uplink trace: partial adjustment against a full
//            re-partition and the per-step optimum (apps/bench_adapt.cpp).
//   regimes  where three tiers pay: hpa over the best two-tier baseline across bandwidths and
//            device speeds, on the cost model, with measured points (apps/bench_regimes.cpp).
//   plan     HPA's planning time per model and uplink.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "apps/bench_adapt.hpp"
#include "apps/bench_grid.hpp"
#include "apps/bench_regimes.hpp"
#include "apps/app_support.hpp"
#include "apps/child_process.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/reference.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "planner/cost_model.hpp"
#include "planner/profile.hpp"
#include "planner/three_tier_space.hpp"
#include "onnx/onnx_import.hpp"

namespace {

constexpr int exit_bad_input = 2;

const char* usage = R"(usage: d3-bench engine [options]
       d3-bench tiling [options]
       d3-bench grid [options]
       d3-bench adapt [options]
       d3-bench regimes [options]
       d3-bench plan [options]

Subcommands (each has --help): engine, d3 against ONNX Runtime; tiling, the cost of cutting a
run of layers into spatial tiles (vertical separation); grid, every strategy's plan for each
model and uplink deployed on d3-node processes on the emulated testbed (virtual clock): latency,
bytes per link and backbone, verified answers, CSV/Markdown/PNG outputs and a CI --check; adapt,
the planner actor following an uplink trace (WiFi -> 3G -> WiFi) by partial migration, against a
full re-partition and the per-step optimum; regimes, where three tiers pay: hpa's predicted speedup
over the best two-tier baseline across link bandwidths and device speeds (heatmaps), with points
measured on d3-node processes; plan, how long HPA takes to plan each model.

d3-bench engine:

Runs d3 and ONNX Runtime (CPU, npm package onnxruntime-node) side by side on the same ONNX files:
for each model and thread count, both engines load the model once, run warm-up inferences, then
alternate blocks of inferences (d3 block, ORT block, d3 block, ...) so both see the same machine
state over time. Each block starts with one untimed run (the other engine just flushed the
caches). Prints a table of medians and the ratio d3/ORT, checks that both engines' outputs agree,
and with --json writes one JSON object per row.

  --models DIR|F1,F2  ONNX files, or a folder of them (default: build/onnx-models, written by
                      /usr/bin/python3 tools/export_models.py --out build/onnx-models)
  --threads LIST      thread counts, comma-separated (default 1,2)
  --repeat R          alternating timed runs per engine (default 10)
  --warmup W          untimed runs per engine first (default 3)
  --block K           timed runs per block (default 5); 1 alternates single runs with no untimed
                      run, i.e. measures each inference with caches flushed by the other engine
  --ort DIR           folder with ort_runner.js and node_modules (default tools/ort; install with
                      scripts/install-bench-deps.sh)
  --settle-ms MS      pause after each run so idle threads settle before the other engine runs
                      (default 20)
  --ort-spinning      keep ORT's spin-waiting intra-op workers (default: off, because spinning
                      workers keep a core busy and slow the engine timed next; 1 thread: no effect)
  --json              one JSON object per row on stdout instead of the table
  --help              this text

ORT runs with graph optimisations on, intra-op threads = the thread count, sequential execution,
and (unless --ort-spinning) workers that block when idle, as d3's do.
Times are wall time of one inference inside each engine's process (d3: executor::run; ORT:
session.run). Exit code 2 for bad options or missing inputs, 1 when an engine fails.
)";

// Ends the benchmark: main catches it, prints "d3-bench: <message>" and returns `code` (the
// stack unwinds: child processes and files are cleaned up as usual).
struct bench_failure {
  int code;
  std::string message;
};

[[noreturn]] void fail(int code, const std::string& message) { throw bench_failure{code, message}; }

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, separator))
    if (!part.empty()) parts.push_back(part);
  return parts;
}

std::vector<std::string> onnx_files(const std::string& spec) {
  std::vector<std::string> files;
  DIR* dir = opendir(spec.c_str());
  if (dir != nullptr) {
    while (dirent* entry = readdir(dir)) {
      std::string name = entry->d_name;
      if (d3::is_onnx_path(name)) files.push_back(spec + "/" + name);
    }
    closedir(dir);
    std::sort(files.begin(), files.end());
    if (files.empty())
      fail(exit_bad_input, "no .onnx files in '" + spec + "' (write them with /usr/bin/python3 tools/export_models.py --out " +
                               spec + ")");
    return files;
  }
  files = split(spec, ',');
  for (const std::string& f : files)
    if (access(f.c_str(), R_OK) != 0) fail(exit_bad_input, "cannot read model '" + f + "'");
  return files;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The number after "key": in a one-line JSON answer; NaN when absent.
double json_number(const std::string& line, const std::string& key) {
  size_t at = line.find("\"" + key + "\":");
  if (at == std::string::npos) return NAN;
  return std::strtod(line.c_str() + at + key.size() + 3, nullptr);
}

std::string ask(d3::child_process& ort, const std::string& command) {
  d3::status s = ort.write_line(command);
  if (!s) fail(1, "ONNX Runtime: " + s.message());
  auto line = ort.read_line(600000);
  if (!line) fail(1, "ONNX Runtime: " + line.message());
  if (line->find("\"error\"") != std::string::npos) fail(1, "ONNX Runtime: " + *line);
  return *line;
}

struct engine_row {
  std::string model;
  int threads;
  double d3_ms, ort_ms;
  std::string agreement;
};

engine_row bench_one(const std::string& path, int threads, int repeat, int warmup, int block, int settle_ms,
                     bool ort_spinning, const std::string& ort_dir) {
  auto g = d3::import_onnx(path);
  if (!g) fail(exit_bad_input, g.message());
  std::vector<int> inputs = g->input_layers();
  if (inputs.size() != 1) fail(exit_bad_input, "'" + path + "' has " + std::to_string(inputs.size()) + " inputs; need 1");
  const d3::tensor_shape shape = g->layers[inputs[0]].output_shape;
  d3::tensor input = d3::random_tensor(shape, 1);
  d3::executor_options options;
  options.threads = threads;
  auto exec = d3::executor::create(*g, {}, options);
  if (!exec) fail(1, exec.message());

  // Same input for both engines, in NCHW order for ORT.
  char input_path[] = "/tmp/d3-bench-input-XXXXXX";
  int fd = mkstemp(input_path);
  if (fd < 0) fail(1, std::string("cannot create a temporary file: ") + std::strerror(errno));
  std::vector<float> nchw(shape.elements());
  d3::nhwc_to_nchw(input.data(), shape, nchw.data());
  if (write(fd, nchw.data(), nchw.size() * sizeof(float)) != ssize_t(nchw.size() * sizeof(float))) fail(1, "cannot write the input");
  close(fd);
  auto ort = d3::child_process::start({"node", ort_dir + "/ort_runner.js", path, std::to_string(threads), input_path,
                                       ort_spinning ? "1" : "0"});
  if (!ort) fail(1, ort.message());

  auto run_d3 = [&]() {
    auto start = std::chrono::steady_clock::now();
    auto out = (*exec)->run({&input});
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!out) fail(1, out.message());
    return std::make_pair(ms, std::move(out.value()[0]));
  };
  auto run_ort = [&]() {
    double ms = json_number(ask(*ort, "run"), "ms");
    if (std::isnan(ms)) fail(1, "ONNX Runtime answered without a time");
    return ms;
  };
  // A short pause after each run lets either engine's idle threads stop spinning before the other
  // engine is timed.
  auto settle = [settle_ms] { std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms)); };
  for (int i = 0; i < warmup; ++i) {
    run_d3();
    settle();
    run_ort();
    settle();
  }
  // Blocks alternate: each engine runs one untimed inference (its caches were just flushed by the
  // other engine's run) and then `block` timed ones, until each has `repeat` timed runs. Blocks of
  // 1 measure cold-cache latency; the default measures an engine serving back to back.
  std::vector<double> d3_times, ort_times;
  d3::tensor d3_output;
  while (int(d3_times.size()) < repeat) {
    const int runs = std::min(block, repeat - int(d3_times.size()));
    if (block > 1) run_d3();
    for (int i = 0; i < runs; ++i) {
      auto [ms, out] = run_d3();
      d3_times.push_back(ms);
      d3_output = std::move(out);
    }
    settle();
    if (block > 1) run_ort();
    for (int i = 0; i < runs; ++i) ort_times.push_back(run_ort());
    settle();
  }

  // Do both engines compute the same function? (Not bitwise: different kernels round differently.)
  std::string output_path = std::string(input_path) + ".ort-output";
  ask(*ort, "output " + output_path);
  ort->write_line("quit");  // no answer: the runner exits
  std::ifstream in(output_path, std::ios::binary | std::ios::ate);
  std::string agreement;
  if (size_t(in.tellg()) != d3_output.bytes()) {
    agreement = "output sizes differ";
  } else {
    std::vector<float> ort_nchw(d3_output.elements());
    in.seekg(0);
    in.read(reinterpret_cast<char*>(ort_nchw.data()), std::streamsize(d3_output.bytes()));
    d3::tensor ort_output(d3_output.shape());
    d3::nchw_to_nhwc(ort_nchw.data(), d3_output.shape(), ort_output.data());
    std::string mismatch = d3::compare_relative(d3_output, ort_output, 1e-4);
    agreement = mismatch.empty() ? "within 1e-4" : mismatch;
  }
  unlink(output_path.c_str());
  unlink(input_path);
  std::string name = path.substr(path.find_last_of('/') + 1);
  return {name.substr(0, name.size() - 5), threads, median(d3_times), median(ort_times), agreement};
}

int engine(int argc, char** argv) {
  std::string models = "build/onnx-models", ort_dir = "tools/ort";
  std::vector<int> threads = {1, 2};
  int repeat = 10, warmup = 3, block = 5, settle_ms = 20;
  bool json = false, ort_spinning = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(exit_bad_input, arg + " needs a value (see --help)");
      return argv[++i];
    };
    auto number = [&](const std::string& text, int low, int high) {
      char* end = nullptr;
      long v = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || v < low || v > high)
        fail(exit_bad_input, arg + " expects integers in [" + std::to_string(low) + ", " + std::to_string(high) +
                                 "], got '" + text + "'");
      return int(v);
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << usage;
      return 0;
    } else if (arg == "--models") {
      models = value();
    } else if (arg == "--threads") {
      threads.clear();
      for (const std::string& t : split(value(), ',')) threads.push_back(number(t, 1, 64));
    } else if (arg == "--repeat") {
      repeat = number(value(), 1, 100000);
    } else if (arg == "--warmup") {
      warmup = number(value(), 0, 100000);
    } else if (arg == "--block") {
      block = number(value(), 1, 100000);
    } else if (arg == "--settle-ms") {
      settle_ms = number(value(), 0, 10000);
    } else if (arg == "--ort") {
      ort_dir = value();
    } else if (arg == "--json") {
      json = true;
    } else if (arg == "--ort-spinning") {
      ort_spinning = true;
    } else {
      fail(exit_bad_input, "unknown option '" + arg + "' (see --help)");
    }
  }
  if (access((ort_dir + "/node_modules/onnxruntime-node/package.json").c_str(), R_OK) != 0)
    fail(exit_bad_input, "ONNX Runtime is not installed in '" + ort_dir + "': run scripts/install-bench-deps.sh");
  std::vector<std::string> files = onnx_files(models);
  if (!json)
    std::printf("%-16s %7s %12s %12s %10s  %s\n", "model", "threads", "d3 ms", "ORT ms", "d3/ORT", "outputs");
  for (const std::string& file : files)
    for (int t : threads) {
      engine_row row = bench_one(file, t, repeat, warmup, block, settle_ms, ort_spinning, ort_dir);
      if (json)
        std::printf("{\"bench\": \"engine\", \"model\": \"%s\", \"threads\": %d, \"repeat\": %d, \"d3_median_ms\": %.3f, "
                    "\"ort_median_ms\": %.3f, \"ratio_d3_over_ort\": %.4f, \"outputs\": \"%s\"}\n",
                    row.model.c_str(), row.threads, repeat, row.d3_ms, row.ort_ms, row.d3_ms / row.ort_ms,
                    row.agreement.c_str());
      else
        std::printf("%-16s %7d %12.2f %12.2f %10.3f  %s\n", row.model.c_str(), row.threads, row.d3_ms, row.ort_ms,
                    row.d3_ms / row.ort_ms, row.agreement.c_str());
      std::fflush(stdout);
    }
  return 0;
}

const char* tiling_usage = R"(usage: d3-bench tiling [options]

What vertical separation costs on one thread, for two runs of layers of the built-in models:
  vgg16     features.0..features.16      conv1_1 .. pool3 (7 convolutions, 3 max pools)
  resnet18  layer1.0.conv1..layer2.1.add  layer1 and layer2 (8 convolutions + downsample, 4 adds)
each cut into 2, 4 and 8 tiles of the run's output: grids 2x1, 2x2 and 4x2 (rows x columns;
horizontal strips first, as row partitions are the usual first split, then columns). For each
case it reports
  - the halo FLOP overhead: FLOP of all tiles (halo recomputation included) / FLOP of the run
    computed whole - 1 (cost_of_tiling; no timing involved),
  - the untiled time: one executor over exactly the run's layers, whole input in, output out,
  - the tile sum: each tile run by the tile executor (run_tile) from its input region, timed
    individually, summed over the tiles (the work a cluster does in total; the largest tile is
    what one node of a cluster waits for, also shown),
  - bytes each tile receives (its input regions, halos included) and returns (its output region).
Medians over --repeat rounds; each round runs the untiled run once, then every tile once, so both
see the same machine state over time. Inputs are the model's own tensors (from a whole run on a
seeded input), and the reassembled tiles are checked bitwise against the untiled output.

  --grids LIST        grids to try, comma-separated RxC (default 2x1,2x2,4x2)
  --repeat R          timed rounds (default 10)
  --warmup W          untimed rounds first (default 2)
  --seed S            seed of the models' weights (default 2021)
  --json              one JSON object per row (case x grid) on stdout instead of the table
  --help              this text

Exit code 2 for bad options, 1 when a run fails or the tiles do not reassemble the untiled output.
)";

struct tiling_case {
  std::string model, first, last, label;
};

struct tiling_row {
  std::string model, label, first, last, grid;
  int tiles = 0;
  d3::tiling_cost cost;
  double untiled_ms = 0, tile_sum_ms = 0, max_tile_ms = 0;
  std::vector<double> tile_ms;
  bool identical = false;
};

std::string join_numbers(const std::vector<size_t>& v) {
  std::string s;
  for (size_t x : v) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

std::string join_ms(const std::vector<double>& v) {
  std::string s;
  char buffer[32];
  for (double x : v) {
    std::snprintf(buffer, sizeof buffer, "%.3f", x);
    s += (s.empty() ? "" : ", ") + std::string(buffer);
  }
  return s;
}

tiling_row bench_tiling(const d3::graph& g, const tiling_case& c, const std::map<std::string, d3::tensor>& tensors,
                        const std::string& grid_text, int repeat, int warmup) {
  const int first = g.find(c.first), last = g.find(c.last);
  if (first < 0 || last < 0) fail(1, c.model + ": no layer '" + (first < 0 ? c.first : c.last) + "'");
  auto run = d3::make_tiled_run(g, first, last);
  if (!run) fail(1, c.model + ": " + run.message());
  const d3::tensor_shape& out = g.layers[run->output].output_shape;
  auto grid = d3::tile_grid::parse(grid_text, out.h, out.w);
  if (!grid) fail(exit_bad_input, grid.message());
  auto tiles = d3::plan_tiles(g, *run, *grid);
  if (!tiles) fail(1, c.model + ": " + tiles.message());
  tiling_row row;
  row.model = c.model;
  row.label = c.label;
  row.first = c.first;
  row.last = c.last;
  row.grid = grid_text;
  row.tiles = grid->tiles();
  row.cost = d3::cost_of_tiling(g, *run, *tiles);

  auto untiled = d3::executor::create(g, run->layers);  // one thread
  if (!untiled) fail(1, untiled.message());
  auto tiled = d3::tile_executor::create(g, *run, *tiles);
  if (!tiled) fail(1, tiled.message());
  // The run's inputs, whole for the untiled executor and cut into each tile's regions (the cut is
  // the sender's work, not timed).
  std::vector<const d3::tensor*> whole;
  for (const std::string& name : (*untiled)->input_names()) whole.push_back(&tensors.at(name));
  const std::vector<std::string>& tile_input_names = (*tiled)->input_names();
  std::vector<std::vector<d3::tensor>> parts(size_t(row.tiles));
  std::vector<std::vector<const d3::tensor*>> part_pointers(size_t(row.tiles));
  for (int t = 0; t < row.tiles; ++t) {
    for (size_t i = 0; i < tile_input_names.size(); ++i)
      parts[t].push_back(d3::extract_region(tensors.at(tile_input_names[i]), (*tiles)[t].computed[run->inputs[i]]));
    for (const d3::tensor& p : parts[t]) part_pointers[t].push_back(&p);
  }

  auto elapsed = [](auto start) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  };
  std::vector<double> untiled_times, sum_times;
  std::vector<std::vector<double>> tile_times(size_t(row.tiles));
  d3::tensor expected, assembled(out);
  for (int round = 0; round < warmup + repeat; ++round) {
    auto start = std::chrono::steady_clock::now();
    auto whole_out = (*untiled)->run(whole);
    const double untiled_ms = elapsed(start);
    if (!whole_out) fail(1, whole_out.message());
    double sum = 0;
    for (int t = 0; t < row.tiles; ++t) {
      auto tile_start = std::chrono::steady_clock::now();
      auto part = (*tiled)->run_tile(t, part_pointers[t]);
      const double ms = elapsed(tile_start);
      if (!part) fail(1, part.message());
      sum += ms;
      if (round >= warmup) tile_times[t].push_back(ms);
      if (round + 1 == warmup + repeat) d3::insert_region(assembled, (*tiles)[t].output, part.value());
    }
    if (round < warmup) continue;
    untiled_times.push_back(untiled_ms);
    sum_times.push_back(sum);
    if (round + 1 == warmup + repeat) expected = std::move(whole_out.value().at(0));
  }
  row.untiled_ms = median(untiled_times);
  row.tile_sum_ms = median(sum_times);
  for (auto& times : tile_times) row.tile_ms.push_back(median(times));
  row.max_tile_ms = *std::max_element(row.tile_ms.begin(), row.tile_ms.end());
  row.identical = d3::bitwise_equal(assembled, expected);
  return row;
}

int tiling(int argc, char** argv) {
  std::vector<std::string> grids = {"2x1", "2x2", "4x2"};
  int repeat = 10, warmup = 2;
  uint64_t seed = d3::default_model_seed;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(exit_bad_input, arg + " needs a value (see --help)");
      return argv[++i];
    };
    auto number = [&](const std::string& text, long low, long high) {
      char* end = nullptr;
      long v = std::strtol(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0' || v < low || v > high)
        fail(exit_bad_input, arg + " expects an integer in [" + std::to_string(low) + ", " + std::to_string(high) +
                                 "], got '" + text + "'");
      return v;
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << tiling_usage;
      return 0;
    } else if (arg == "--grids") {
      grids = split(value(), ',');
      if (grids.empty()) fail(exit_bad_input, "--grids needs at least one RxC grid");
    } else if (arg == "--repeat") {
      repeat = int(number(value(), 1, 100000));
    } else if (arg == "--warmup") {
      warmup = int(number(value(), 0, 100000));
    } else if (arg == "--seed") {
      seed = uint64_t(number(value(), 0, 0x7fffffffffffffffL));
    } else if (arg == "--json") {
      json = true;
    } else {
      fail(exit_bad_input, "unknown option '" + arg + "' (see d3-bench tiling --help)");
    }
  }
  // Malformed grids fail before anything runs; a grid with more tiles than the run's output has
  // rows or columns fails at its case.
  for (const std::string& grid : grids) {
    auto parsed = d3::tile_grid::parse(grid, 1 << 20, 1 << 20);
    if (!parsed) fail(exit_bad_input, parsed.message());
  }
  const std::vector<tiling_case> cases = {
      {"vgg16", "features.0", "features.16", "conv1_1..pool3"},
      {"resnet18", "layer1.0.conv1", "layer2.1.add", "layer1..layer2"},
  };
  if (!json)
    std::printf("%-9s %-15s %-5s %5s %9s %11s %11s %8s %11s %20s %20s  %s\n", "model", "run", "grid", "tiles",
                "halo FLOP", "untiled ms", "tile sum ms", "sum/unt", "max tile ms", "in KiB/tile min..max",
                "out KiB/tile min..max", "reassembled");
  bool all_identical = true;
  for (const tiling_case& c : cases) {
    auto g = d3::builtin_model(c.model, seed);
    if (!g) fail(1, g.message());
    const int input = g->input_layers().at(0);
    d3::tensor x = d3::random_tensor(g->layers[input].output_shape, 1);
    auto whole = d3::executor::create(*g);
    if (!whole) fail(1, whole.message());
    auto all = (*whole)->run_all({&x});
    if (!all) fail(1, all.message());
    std::map<std::string, d3::tensor> tensors = std::move(all.value());
    tensors[g->layers[input].name] = x;
    whole->reset();
    for (const std::string& grid : grids) {
      tiling_row row = bench_tiling(*g, c, tensors, grid, repeat, warmup);
      all_identical &= row.identical;
      const auto& in = row.cost.tile_input_bytes;
      const auto& out = row.cost.tile_output_bytes;
      if (json) {
        std::printf(
            "{\"bench\": \"tiling\", \"model\": \"%s\", \"run\": \"%s:%s\", \"label\": \"%s\", \"grid\": \"%s\", "
            "\"tiles\": %d, \"threads\": 1, \"repeat\": %d, \"untiled_gflop\": %.5f, \"tiled_gflop\": %.5f, "
            "\"halo_flop_overhead\": %.5f, \"untiled_median_ms\": %.3f, \"tile_sum_median_ms\": %.3f, "
            "\"ratio_tile_sum_over_untiled\": %.4f, \"max_tile_median_ms\": %.3f, \"tile_median_ms\": [%s], "
            "\"untiled_input_bytes\": %zu, \"untiled_output_bytes\": %zu, \"tile_input_bytes\": [%s], "
            "\"tile_output_bytes\": [%s], \"reassembled_identical\": %s}\n",
            row.model.c_str(), row.first.c_str(), row.last.c_str(), row.label.c_str(), row.grid.c_str(), row.tiles,
            repeat, row.cost.untiled_flops / 1e9, row.cost.tiled_flops / 1e9, row.cost.overhead(), row.untiled_ms,
            row.tile_sum_ms, row.tile_sum_ms / row.untiled_ms, row.max_tile_ms, join_ms(row.tile_ms).c_str(),
            row.cost.untiled_input_bytes, row.cost.untiled_output_bytes, join_numbers(in).c_str(),
            join_numbers(out).c_str(), row.identical ? "true" : "false");
      } else {
        auto kib = [](size_t b) { return double(b) / 1024; };
        char in_text[48], out_text[48];
        std::snprintf(in_text, sizeof in_text, "%.0f..%.0f", kib(*std::min_element(in.begin(), in.end())),
                      kib(*std::max_element(in.begin(), in.end())));
        std::snprintf(out_text, sizeof out_text, "%.0f..%.0f", kib(*std::min_element(out.begin(), out.end())),
                      kib(*std::max_element(out.begin(), out.end())));
        std::printf("%-9s %-15s %-5s %5d %8.1f%% %11.2f %11.2f %8.3f %11.2f %20s %20s  %s\n", row.model.c_str(),
                    row.label.c_str(), row.grid.c_str(), row.tiles, 100 * row.cost.overhead(), row.untiled_ms,
                    row.tile_sum_ms, row.tile_sum_ms / row.untiled_ms, row.max_tile_ms, in_text, out_text,
                    row.identical ? "bitwise" : "DIFFERS");
      }
      std::fflush(stdout);
    }
  }
  if (!all_identical) fail(1, "reassembled tiles differ from the untiled run");
  return 0;
}

const char* plan_usage = R"(usage: d3-bench plan [options]

How long planning takes: for each model and uplink of the evaluation testbed (device 0.1, 4 edges
0.5, cloud 4), HPA (planner/three_tier_space.hpp) plans on a FLOP profile (100 GFLOP/s) on one
thread, --repeat times after one warm-up; prints one JSON object per row with the median and
minimum milliseconds and the plan's predicted latency. The goal: googlenet <= 5 ms.

  --models LIST       comma-separated built-in models (default: the five)
  --uplinks LIST      CAT1,3G,4G,WiFi (default: all)
  --repeat R          timed plannings per row (default 20)
  --help              this text
)";

int plan(int argc, char** argv) {
  std::vector<std::string> models = d3::builtin_model_names(), uplinks = {"CAT1", "3G", "4G", "WiFi"};
  int repeat = 20;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) fail(exit_bad_input, arg + " needs a value (see d3-bench plan --help)");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << plan_usage;
      return 0;
    } else if (arg == "--models") {
      models = split(value(), ',');
    } else if (arg == "--uplinks") {
      uplinks = split(value(), ',');
    } else if (arg == "--repeat") {
      auto r = d3::parse_integer(arg, value(), 1, 100000);
      if (!r) fail(exit_bad_input, r.message());
      repeat = int(*r);
    } else {
      fail(exit_bad_input, "unknown option '" + arg + "' (see d3-bench plan --help)");
    }
  }
  for (const std::string& name : models) {
    auto g = d3::builtin_model(name);
    if (!g) fail(exit_bad_input, g.message());
    const d3::layer_profile profile = d3::profile_from_flops(g.value(), 100.0);
    for (const std::string& uplink : uplinks) {
      auto t = d3::testbed::with_uplink(uplink);
      if (!t) fail(exit_bad_input, t.message());
      const d3::cluster_model cluster = d3::cluster_model::evaluation(t.value(), 4);
      std::vector<double> ms;
      double predicted = 0;
      for (int r = 0; r <= repeat; ++r) {
        const auto start = std::chrono::steady_clock::now();
        auto planned = d3::hpa_strategy(g.value(), profile, cluster);
        const double took = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
        if (!planned) fail(1, name + " " + uplink + ": " + planned.message());
        predicted = planned->prediction.latency_ms;
        if (r > 0) ms.push_back(took);
      }
      std::sort(ms.begin(), ms.end());
      std::printf("{\"model\": \"%s\", \"uplink\": \"%s\", \"layers\": %zu, \"repeat\": %d, \"median_ms\": %.3f, "
                  "\"min_ms\": %.3f, \"predicted_ms\": %.2f}\n",
                  name.c_str(), uplink.c_str(), g->layers.size(), repeat, ms[ms.size() / 2], ms.front(), predicted);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

int dispatch(int argc, char** argv) {
  std::string command = argc > 1 ? argv[1] : "";
  if (command == "engine") return engine(argc, argv);
  if (command == "tiling") return tiling(argc, argv);
  if (command == "grid") return d3::bench_grid(argc, argv);
  if (command == "adapt") return d3::bench_adapt(argc, argv);
  if (command == "regimes") return d3::bench_regimes(argc, argv);
  if (command == "plan") return plan(argc, argv);
  if (command == "--help" || command == "-h" || command.empty()) {
    std::cout << usage;
    return command.empty() ? exit_bad_input : 0;
  }
  fail(exit_bad_input, "unknown benchmark '" + command + "' (available: engine, tiling, grid, adapt, regimes, plan; see --help)");
}

int main(int argc, char** argv) {
  try {
    return dispatch(argc, argv);
  } catch (const bench_failure& f) {
    std::cerr << "d3-bench: " << f.message << "\n";
    return f.code;
  }
}
