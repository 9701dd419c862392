// d3-bench tiling: vertical separation's halo FLOP overhead and the summed time of a run's tiles
// against the same run untiled, on one thread.
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

const char* tiling_usage = R"(usage: d3-bench tiling [options]

What vertical separation costs on one thread, by default for two runs of layers of the built-in
models (--case picks others):
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
  - bytes each tile receives (its input regions, halos included) and returns (its output region),
  - the largest tile as the cost model prices it (planner/cost_model.hpp: each layer's untiled
    time, measured here per layer, times the share of its output the tile computes, halo
    included), and that price over the largest tile's measured time: where it is not 1, tiles of
    this run do not cost their area share.
Medians over --repeat rounds; each round runs the untiled run once, then every tile once, so both
see the same machine state over time. Inputs are the model's own tensors (from a whole run on a
seeded input), and the reassembled tiles are checked bitwise against the untiled output.

  --case M:FIRST:LAST a run to cut instead of the defaults (repeatable): a model as d3-run takes it
                      (built-in name, .onnx or d3 model file) and its first and last layer names
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
  double max_tile_priced_ms = 0;  // the largest tile (by measured time) at the cost model's area price
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
  if (first < 0 || last < 0) bench_fail(bench_exit_failed, c.model + ": no layer '" + (first < 0 ? c.first : c.last) + "'");
  auto run = d3::make_tiled_run(g, first, last);
  if (!run) bench_fail(bench_exit_failed, c.model + ": " + run.message());
  const d3::tensor_shape& out = g.layers[run->output].output_shape;
  auto grid = d3::tile_grid::parse(grid_text, out.h, out.w);
  if (!grid) bench_fail(bench_exit_bad_input, grid.message());
  auto tiles = d3::plan_tiles(g, *run, *grid);
  if (!tiles) bench_fail(bench_exit_failed, c.model + ": " + tiles.message());
  tiling_row row;
  row.model = c.model;
  row.label = c.label;
  row.first = c.first;
  row.last = c.last;
  row.grid = grid_text;
  row.tiles = grid->tiles();
  row.cost = d3::cost_of_tiling(g, *run, *tiles);

  auto untiled = d3::executor::create(g, run->layers);  // one thread
  if (!untiled) bench_fail(bench_exit_failed, untiled.message());
  // One executor per tile, as each node of a cluster runs its own tile: an executor running
  // every tile re-binds the operators the tiles share before each one (reshape and setup).
  std::vector<std::unique_ptr<d3::tile_executor>> per_tile;
  for (int t = 0; t < row.tiles; ++t) {
    auto tiled = d3::tile_executor::create(g, *run, *tiles, {t});
    if (!tiled) bench_fail(bench_exit_failed, tiled.message());
    per_tile.push_back(std::move(tiled.value()));
  }
  // The run's inputs, whole for the untiled executor and cut into each tile's regions (the cut is
  // the sender's work, not timed).
  std::vector<const d3::tensor*> whole;
  for (const std::string& name : (*untiled)->input_names()) whole.push_back(&tensors.at(name));
  const std::vector<std::string>& tile_input_names = per_tile.front()->input_names();
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
  std::map<int, std::vector<double>> layer_times;  // untiled, per layer
  d3::tensor expected, assembled(out);
  for (int round = 0; round < warmup + repeat; ++round) {
    auto start = std::chrono::steady_clock::now();
    auto whole_out = (*untiled)->run(whole);
    const double untiled_ms = elapsed(start);
    if (!whole_out) bench_fail(bench_exit_failed, whole_out.message());
    // Per-layer times from a run of their own, so the timed run above carries no timing overhead.
    std::vector<d3::layer_timing> timings;
    auto timed = (*untiled)->run(whole, &timings);
    if (!timed) bench_fail(bench_exit_failed, timed.message());
    if (round >= warmup)
      for (const d3::layer_timing& t : timings) layer_times[t.layer].push_back(t.milliseconds);
    double sum = 0;
    for (int t = 0; t < row.tiles; ++t) {
      auto tile_start = std::chrono::steady_clock::now();
      auto part = per_tile[size_t(t)]->run_tile(t, part_pointers[t]);
      const double ms = elapsed(tile_start);
      if (!part) bench_fail(bench_exit_failed, part.message());
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
  const auto largest = std::max_element(row.tile_ms.begin(), row.tile_ms.end());
  row.max_tile_ms = *largest;
  // The cost model's price of the largest tile: computed_share (kernels/tiling.hpp) on this
  // machine's per-layer times.
  const d3::tile_geometry& geo = (*tiles)[size_t(largest - row.tile_ms.begin())];
  for (int l : run->layers) {
    auto times = layer_times.find(l);
    if (times != layer_times.end()) row.max_tile_priced_ms += median(times->second) * d3::computed_share(g, geo, l);
  }
  row.identical = d3::bitwise_equal(assembled, expected);
  return row;
}

}  // namespace

int bench_tiling(int argc, char** argv) {
  std::vector<std::string> grids = {"2x1", "2x2", "4x2"};
  int repeat = 10, warmup = 2;
  uint64_t seed = d3::default_model_seed;
  bool json = false;
  bool help = false;
  std::vector<tiling_case> cases;
  read_bench_options(argc, argv, "see d3-bench tiling --help", [&](option_reader& in) {
    if (in.is("--help", "-h")) help = true;
    else if (in.is("--grids")) {
      grids = split_list(in.value());
      if (grids.empty()) in.fail("--grids needs at least one RxC grid");
    } else if (in.is("--repeat")) repeat = int(in.integer(1, 100000));
    else if (in.is("--warmup")) warmup = int(in.integer(0, 100000));
    else if (in.is("--seed")) seed = uint64_t(in.integer(0, 0x7fffffffffffffffL));
    else if (in.is("--json")) json = true;
    else if (in.is("--case")) {
      // MODEL:FIRST:LAST, split at the last two colons (a model path may hold one).
      const std::string text = in.value();
      const size_t second = text.rfind(':');
      const size_t first = second == std::string::npos || second == 0 ? std::string::npos : text.rfind(':', second - 1);
      if (first == std::string::npos || first == 0 || second == first + 1 || second + 1 == text.size())
        in.fail("--case needs MODEL:FIRST:LAST (a model and the names of its run's first and last layers), got '" +
                text + "'");
      const std::string first_layer = text.substr(first + 1, second - first - 1), last_layer = text.substr(second + 1);
      cases.push_back({text.substr(0, first), first_layer, last_layer, first_layer + ".." + last_layer});
    } else in.unknown();
  });
  if (help) {
    std::cout << tiling_usage;
    return 0;
  }
  // Malformed grids fail before anything runs; a grid with more tiles than the run's output has
  // rows or columns fails at its case.
  for (const std::string& grid : grids) {
    auto parsed = d3::tile_grid::parse(grid, 1 << 20, 1 << 20);
    if (!parsed) bench_fail(bench_exit_bad_input, parsed.message());
  }
  if (cases.empty())
    cases = {
        {"vgg16", "features.0", "features.16", "conv1_1..pool3"},
        {"resnet18", "layer1.0.conv1", "layer2.1.add", "layer1..layer2"},
    };
  if (!json)
    std::printf("%-9s %-15s %-5s %5s %9s %11s %11s %8s %11s %12s %8s %20s %20s  %s\n", "model", "run", "grid",
                "tiles", "halo FLOP", "untiled ms", "tile sum ms", "sum/unt", "max tile ms", "priced ms", "pr/max",
                "in KiB/tile min..max", "out KiB/tile min..max", "reassembled");
  bool all_identical = true;
  for (const tiling_case& c : cases) {
    auto g = d3::load_model_by_name(c.model, seed);
    if (!g) bench_fail(bench_exit_failed, g.message());
    const int input = g->input_layers().at(0);
    d3::tensor x = d3::random_tensor(g->layers[input].output_shape, 1);
    d3::executor_options every_tensor;  // run_all
    every_tensor.fuse_residual_adds = false;
    auto whole = d3::executor::create(*g, {}, every_tensor);
    if (!whole) bench_fail(bench_exit_failed, whole.message());
    auto all = (*whole)->run_all({&x});
    if (!all) bench_fail(bench_exit_failed, all.message());
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
            "\"ratio_tile_sum_over_untiled\": %.4f, \"max_tile_median_ms\": %.3f, \"max_tile_priced_ms\": %.3f, "
            "\"ratio_priced_over_max_tile\": %.4f, \"tile_median_ms\": [%s], "
            "\"untiled_input_bytes\": %zu, \"untiled_output_bytes\": %zu, \"tile_input_bytes\": [%s], "
            "\"tile_output_bytes\": [%s], \"reassembled_identical\": %s}\n",
            row.model.c_str(), row.first.c_str(), row.last.c_str(), row.label.c_str(), row.grid.c_str(), row.tiles,
            repeat, row.cost.untiled_flops / 1e9, row.cost.tiled_flops / 1e9, row.cost.overhead(), row.untiled_ms,
            row.tile_sum_ms, row.tile_sum_ms / row.untiled_ms, row.max_tile_ms, row.max_tile_priced_ms,
            row.max_tile_priced_ms / row.max_tile_ms, join_ms(row.tile_ms).c_str(),
            row.cost.untiled_input_bytes, row.cost.untiled_output_bytes, join_numbers(in).c_str(),
            join_numbers(out).c_str(), row.identical ? "true" : "false");
      } else {
        auto kib = [](size_t b) { return double(b) / 1024; };
        char in_text[48], out_text[48];
        std::snprintf(in_text, sizeof in_text, "%.0f..%.0f", kib(*std::min_element(in.begin(), in.end())),
                      kib(*std::max_element(in.begin(), in.end())));
        std::snprintf(out_text, sizeof out_text, "%.0f..%.0f", kib(*std::min_element(out.begin(), out.end())),
                      kib(*std::max_element(out.begin(), out.end())));
        std::printf("%-9s %-15s %-5s %5d %8.1f%% %11.2f %11.2f %8.3f %11.2f %12.2f %8.3f %20s %20s  %s\n",
                    row.model.c_str(), row.label.c_str(), row.grid.c_str(), row.tiles, 100 * row.cost.overhead(),
                    row.untiled_ms, row.tile_sum_ms, row.tile_sum_ms / row.untiled_ms, row.max_tile_ms,
                    row.max_tile_priced_ms, row.max_tile_priced_ms / row.max_tile_ms, in_text, out_text,
                    row.identical ? "bitwise" : "DIFFERS");
      }
      std::fflush(stdout);
    }
  }
  if (!all_identical) bench_fail(bench_exit_failed, "reassembled tiles differ from the untiled run");
  return 0;
}


}  // namespace d3
