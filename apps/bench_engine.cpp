// d3-bench engine: d3 against ONNX Runtime on the same ONNX files, runs alternating, one process each.
#include <dirent.h>
#include <sched.h>
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

#include "apps/bench_support.hpp"
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

namespace d3 {

namespace {

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
  --cpu N             run both engines on CPU N only (this process and ORT's, which inherits it;
                      needs --threads 1). Unpinned, the scheduler keeps each engine's process on
                      its own core, and on a shared host a busy neighbour on one core slows that
                      engine alone for a whole round (measured: single rounds of d3/ORT from 0.9
                      to 1.4 unpinned, 0.94-1.03 pinned)
  --json              one JSON object per row on stdout instead of the table
  --help              this text

ORT runs with graph optimisations on, intra-op threads = the thread count, sequential execution,
and (unless --ort-spinning) workers that block when idle, as d3's do.
Times are wall time of one inference inside each engine's process (d3: executor::run; ORT:
session.run). Exit code 2 for bad options or missing inputs, 1 when an engine fails.
)";

// Ends the benchmark: main catches it, prints "d3-bench: <message>" and returns `code` (the
// stack unwinds: child processes and files are cleaned up as usual).

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
      bench_fail(bench_exit_bad_input, "no .onnx files in '" + spec + "' (write them with /usr/bin/python3 tools/export_models.py --out " +
                               spec + ")");
    return files;
  }
  files = split_list(spec);
  for (const std::string& f : files)
    if (access(f.c_str(), R_OK) != 0) bench_fail(bench_exit_bad_input, "cannot read model '" + f + "'");
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
  if (!s) bench_fail(bench_exit_failed, "ONNX Runtime: " + s.message());
  auto line = ort.read_line(600000);
  if (!line) bench_fail(bench_exit_failed, "ONNX Runtime: " + line.message());
  if (line->find("\"error\"") != std::string::npos) bench_fail(bench_exit_failed, "ONNX Runtime: " + *line);
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
  if (!g) bench_fail(bench_exit_bad_input, g.message());
  std::vector<int> inputs = g->input_layers();
  if (inputs.size() != 1) bench_fail(bench_exit_bad_input, "'" + path + "' has " + std::to_string(inputs.size()) + " inputs; need 1");
  const d3::tensor_shape shape = g->layers[inputs[0]].output_shape;
  d3::tensor input = d3::random_tensor(shape, 1);
  d3::executor_options options;
  options.threads = threads;
  auto exec = d3::executor::create(*g, {}, options);
  if (!exec) bench_fail(bench_exit_failed, exec.message());

  // Same input for both engines, in NCHW order for ORT.
  char input_path[] = "/tmp/d3-bench-input-XXXXXX";
  int fd = mkstemp(input_path);
  if (fd < 0) bench_fail(bench_exit_failed, std::string("cannot create a temporary file: ") + std::strerror(errno));
  std::vector<float> nchw(shape.elements());
  d3::nhwc_to_nchw(input.data(), shape, nchw.data());
  if (write(fd, nchw.data(), nchw.size() * sizeof(float)) != ssize_t(nchw.size() * sizeof(float))) bench_fail(bench_exit_failed, "cannot write the input");
  close(fd);
  auto ort = d3::child_process::start({"node", ort_dir + "/ort_runner.js", path, std::to_string(threads), input_path,
                                       ort_spinning ? "1" : "0"});
  if (!ort) bench_fail(bench_exit_failed, ort.message());

  auto run_d3 = [&]() {
    auto start = std::chrono::steady_clock::now();
    auto out = (*exec)->run({&input});
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (!out) bench_fail(bench_exit_failed, out.message());
    return std::make_pair(ms, std::move(out.value()[0]));
  };
  auto run_ort = [&]() {
    double ms = json_number(ask(*ort, "run"), "ms");
    if (std::isnan(ms)) bench_fail(bench_exit_failed, "ONNX Runtime answered without a time");
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

}  // namespace

int bench_engine(int argc, char** argv) {
  std::string models = "build/onnx-models", ort_dir = "tools/ort";
  std::vector<int> threads = {1, 2};
  int repeat = 10, warmup = 3, block = 5, settle_ms = 20;
  bool json = false, ort_spinning = false;
  bool help = false;
  int cpu = -1;
  read_bench_options(argc, argv, "see d3-bench engine --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--models")) models = in.value();
    else if (in.is("--threads")) {
      threads.clear();
      for (double t : in.positive_numbers()) {
        if (t != double(int(t)) || t > 64) in.fail("--threads expects integers in [1, 64], got " + format("%g", t));
        threads.push_back(int(t));
      }
    } else if (in.is("--repeat")) repeat = int(in.integer(1, 100000));
    else if (in.is("--warmup")) warmup = int(in.integer(0, 100000));
    else if (in.is("--block")) block = int(in.integer(1, 100000));
    else if (in.is("--settle-ms")) settle_ms = int(in.integer(0, 10000));
    else if (in.is("--ort")) ort_dir = in.value();
    else if (in.is("--json")) json = true;
    else if (in.is("--ort-spinning")) ort_spinning = true;
    else if (in.is("--cpu")) cpu = int(in.integer(0, CPU_SETSIZE - 1));
    else in.unknown();
  });
  if (help) {
    std::cout << usage;
    return 0;
  }
  if (cpu >= 0) {
    if (std::any_of(threads.begin(), threads.end(), [](int t) { return t != 1; }))
      bench_fail(bench_exit_bad_input, "--cpu " + std::to_string(cpu) + " pins both engines to one CPU: it needs --threads 1");
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
      bench_fail(bench_exit_bad_input, "--cpu " + std::to_string(cpu) + ": cannot run on that CPU: " + std::strerror(errno));
  }
  if (access((ort_dir + "/node_modules/onnxruntime-node/package.json").c_str(), R_OK) != 0)
    bench_fail(bench_exit_bad_input, "ONNX Runtime is not installed in '" + ort_dir + "': run scripts/install-bench-deps.sh");
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


}  // namespace d3
