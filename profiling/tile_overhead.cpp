#include "profiling/tile_overhead.hpp"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"

namespace d3 {

namespace {

double median_of(std::vector<double> v) {
  std::nth_element(v.begin(), v.begin() + long(v.size() / 2), v.end());
  return v[v.size() / 2];
}

double elapsed_ms(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// The overhead of one run's layers (see the header), or an error naming the run.
result<double> run_overhead(const graph& g, const tiled_run& run, const std::map<std::string, tensor>& tensors,
                            const layer_profile& profile, int repeats) {
  const tensor_shape& out = g.layers[size_t(run.output)].output_shape;
  auto grid = tile_grid::uniform(std::min(2, out.h), std::min(2, out.w), out.h, out.w);
  if (!grid) return grid.error();
  auto tiles = plan_tiles(g, run, *grid);
  if (!tiles) return tiles.error();
  const int n = grid->tiles();
  auto whole = executor::create(g, run.layers);
  if (!whole) return whole.error();
  std::vector<const tensor*> whole_inputs;
  for (const std::string& name : (*whole)->input_names()) {
    auto it = tensors.find(name);
    if (it == tensors.end()) return status::error("no sample tensor '" + name + "'");
    whole_inputs.push_back(&it->second);
  }
  std::vector<std::unique_ptr<tile_executor>> executors;
  std::vector<std::vector<tensor>> parts(static_cast<size_t>(n));
  std::vector<std::vector<const tensor*>> part_pointers(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    auto e = tile_executor::create(g, run, *tiles, {t});
    if (!e) return e.error();
    const std::vector<std::string>& names = (*e)->input_names();
    for (size_t i = 0; i < names.size(); ++i) {
      auto it = tensors.find(names[i]);
      if (it == tensors.end()) return status::error("no sample tensor '" + names[i] + "'");
      parts[size_t(t)].push_back(extract_region(it->second, (*tiles)[size_t(t)].computed[size_t(run.inputs[i])]));
    }
    for (const tensor& p : parts[size_t(t)]) part_pointers[size_t(t)].push_back(&p);
    executors.push_back(std::move(e.value()));
  }
  std::vector<double> ratios;
  for (int round = 0; round <= repeats; ++round) {  // round 0 warms up
    auto start = std::chrono::steady_clock::now();
    auto w = (*whole)->run(whole_inputs);
    const double whole_ms = elapsed_ms(start);
    if (!w) return w.error();
    double tiles_ms = 0;
    for (int t = 0; t < n; ++t) {
      start = std::chrono::steady_clock::now();
      auto part = executors[size_t(t)]->run_tile(t, part_pointers[size_t(t)]);
      tiles_ms += elapsed_ms(start);
      if (!part) return part.error();
    }
    if (round > 0 && whole_ms > 0) ratios.push_back(tiles_ms / whole_ms);
  }
  if (ratios.empty()) return status::error("no timed round");
  double whole_profile = 0, area_priced = 0;
  for (int l : run.layers) {
    const double ms = profile.milliseconds[size_t(l)];
    whole_profile += ms;
    for (const tile_geometry& geo : *tiles) area_priced += ms * computed_share(g, geo, l);
  }
  const double spread = double(n) * whole_profile - area_priced;  // what a = 1 would add
  if (!(spread > 0)) return 0.0;
  const double a = (median_of(ratios) * whole_profile - area_priced) / spread;
  return std::clamp(a, -0.5, 0.9);
}

}  // namespace

status measure_tile_overheads(const graph& g, const std::map<std::string, tensor>& tensors, layer_profile& profile,
                              int repeats) {
  if (profile.milliseconds.size() != g.layers.size())
    return status::error("tile overheads: the profile has " + std::to_string(profile.milliseconds.size()) +
                         " layers, the model " + std::to_string(g.layers.size()));
  auto order = topological_order(g);
  if (!order) return order.error();
  profile.tile_overhead.assign(g.layers.size(), 0.0);
  std::vector<int> position(g.layers.size(), -1);
  for (size_t p = 0; p < order->size(); ++p) position[size_t((*order)[p])] = int(p);
  // Runs of one resolution: a tile's overhead depends most on its size, and the planner's runs
  // start and end at resolution changes more often than they span a whole feature extractor
  // (measured: DenseNet-121's whole extractor cut 2x2 ends in 4x4 tiles whose halos cover nearly
  // all of its first layers, and the fit then says nothing).
  auto same_size = [&](int a, int b) {
    const tensor_shape &x = g.layers[size_t(a)].output_shape, &y = g.layers[size_t(b)].output_shape;
    return x.h == y.h && x.w == y.w;
  };
  for (size_t p = 0; p < order->size();) {
    const int first = (*order)[p];
    const run_extent extent = g.layers[size_t(first)].kind == layer_kind::input ? run_extent{} : longest_tileable_run(g, first);
    if (extent.last < 0) {
      ++p;
      continue;
    }
    size_t end = p;
    while (end + 1 <= size_t(position[size_t(extent.last)]) && same_size(first, (*order)[end + 1])) ++end;
    // The longest valid run of them (a tensor may leave the group before its end).
    result<tiled_run> run = status::error("none");
    for (size_t q = end + 1; q-- > p && !run;) run = make_tiled_run(g, first, (*order)[q]);
    if (!run) {
      ++p;
      continue;
    }
    const int last = run->output;
    p = size_t(position[size_t(last)]) + 1;
    const tensor_shape& out = g.layers[size_t(last)].output_shape;
    if (out.h < 2 && out.w < 2) continue;
    auto a = run_overhead(g, *run, tensors, profile, std::max(1, repeats));
    if (!a)
      return status::error("tile overheads: the run " + g.layers[size_t(first)].name + ".." + g.layers[size_t(last)].name +
                           ": " + a.message());
    for (int l : run->layers) profile.tile_overhead[size_t(l)] = *a;
  }
  return status::ok();
}

}  // namespace d3
