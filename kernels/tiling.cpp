#include "kernels/tiling.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <ostream>

namespace d3 {

namespace {

std::string name_of(const graph& g, int layer) {
  return "layer '" + g.layers[layer].name + "' (" + to_string(g.layers[layer].kind) + ")";
}

// Kinds a tile can compute from a spatial window of its inputs.
bool spatially_local(layer_kind kind) {
  switch (kind) {
    case layer_kind::convolution:
    case layer_kind::max_pool:
    case layer_kind::average_pool:
    case layer_kind::pad:
    case layer_kind::add:
    case layer_kind::multiply:
    case layer_kind::concat:
    case layer_kind::clamp:
    case layer_kind::sigmoid:
    case layer_kind::layer_norm:
    case layer_kind::gelu:
    case layer_kind::tanh:
    case layer_kind::silu:
    case layer_kind::hardswish:
    case layer_kind::preprocess:
    case layer_kind::channel_shuffle:
    case layer_kind::channel_slice:
      return true;
    default:
      return false;
  }
}

bool has_window(layer_kind kind) {
  return kind == layer_kind::convolution || kind == layer_kind::max_pool || kind == layer_kind::average_pool;
}

region bounding_box(const region& a, const region& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return {std::min(a.row_begin, b.row_begin), std::max(a.row_end, b.row_end), std::min(a.col_begin, b.col_begin),
          std::max(a.col_end, b.col_end)};
}

// Input span [begin, end) of a window layer for output span [lo, hi), unclipped: negative begin or
// end past the input are padding.
void window_span(int lo, int hi, int kernel, int stride, int dilation, int pad_before, int* begin, int* end) {
  *begin = lo * stride - pad_before;
  *end = (hi - 1) * stride - pad_before + (kernel - 1) * dilation + 1;
}

// Computed layers in topological order.
result<std::vector<int>> computed_order(const graph& g) {
  auto order = topological_order(g);
  if (!order) return order.error();
  std::vector<int> computed;
  for (int i : *order)
    if (g.layers[i].kind != layer_kind::input) computed.push_back(i);
  return computed;
}

}  // namespace

std::string region::to_string() const {
  return "rows [" + std::to_string(row_begin) + ", " + std::to_string(row_end) + ") cols [" + std::to_string(col_begin) +
         ", " + std::to_string(col_end) + ")";
}

std::ostream& operator<<(std::ostream& out, const region& r) { return out << r.to_string(); }

region tile_grid::tile(int index) const {
  int r = index / cols(), c = index % cols();
  return {row_bounds[r], row_bounds[r + 1], col_bounds[c], col_bounds[c + 1]};
}

result<tile_grid> tile_grid::proportional(const std::vector<double>& row_weights, const std::vector<double>& col_weights,
                                          int height, int width) {
  auto split = [](const std::vector<double>& weights, int size, const char* axis) -> result<std::vector<int>> {
    if (weights.empty()) return status::error(std::string("tile grid: no ") + axis + " given");
    if (int(weights.size()) > size)
      return status::error("tile grid: " + std::to_string(weights.size()) + " tile " + axis + " but the run's output has only " +
                           std::to_string(size) + " " + axis);
    double total = 0;
    for (double w : weights) {
      if (!(w > 0) || !std::isfinite(w)) return status::error(std::string("tile grid: ") + axis + " weights must be positive");
      total += w;
    }
    // Largest-remainder rounding of the ideal boundaries, then at least one row/column per tile.
    std::vector<int> bounds{0};
    double cumulative = 0;
    const int n = int(weights.size());
    for (int i = 0; i + 1 < n; ++i) {
      cumulative += weights[i];
      int b = int(std::lround(cumulative / total * size));
      b = std::max(b, bounds.back() + 1);
      b = std::min(b, size - (n - 1 - i));
      bounds.push_back(b);
    }
    bounds.push_back(size);
    return bounds;
  };
  auto rows = split(row_weights, height, "rows");
  if (!rows) return rows.error();
  auto cols = split(col_weights, width, "columns");
  if (!cols) return cols.error();
  tile_grid grid;
  grid.row_bounds = std::move(rows.value());
  grid.col_bounds = std::move(cols.value());
  return grid;
}

result<tile_grid> tile_grid::uniform(int rows, int cols, int height, int width) {
  if (rows < 1 || cols < 1)
    return status::error("tile grid " + std::to_string(rows) + "x" + std::to_string(cols) + ": needs at least one tile per axis");
  return proportional(std::vector<double>(size_t(rows), 1.0), std::vector<double>(size_t(cols), 1.0), height, width);
}

result<tile_grid> tile_grid::parse(const std::string& text, int height, int width) {
  size_t x = text.find('x');
  auto number = [](const std::string& s) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
    return std::stoi(s);
  };
  int rows = x == std::string::npos ? -1 : number(text.substr(0, x));
  int cols = x == std::string::npos ? -1 : number(text.substr(x + 1));
  if (rows < 1 || cols < 1) return status::error("tile grid '" + text + "': expected ROWSxCOLS with positive numbers, e.g. 2x2");
  return uniform(rows, cols, height, width);
}

bool tileable_layer(const graph& g, int layer_index) {
  const layer& L = g.layers[size_t(layer_index)];
  if (!spatially_local(L.kind)) return false;
  if (L.kind == layer_kind::average_pool && L.window.ceil_mode && L.window.count_include_pad) {
    const tensor_shape& in = g.layers[L.inputs[0]].output_shape;
    const window_params& w = L.window;
    if (ceil_mode_extra_padding(in.h, L.output_shape.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom) > 0 ||
        ceil_mode_extra_padding(in.w, L.output_shape.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right) > 0)
      return false;
  }
  return true;
}

result<tiled_run> make_tiled_run(const graph& g, int first, int last) {
  const int n = int(g.layers.size());
  if (first < 0 || first >= n || last < 0 || last >= n) return status::error("tiled run: layer index out of range");
  auto order = computed_order(g);
  if (!order) return order.error();
  auto position = [&](int layer) {
    return int(std::find(order->begin(), order->end(), layer) - order->begin());
  };
  const int from = position(first), to = position(last);
  if (from == int(order->size())) return status::error("tiled run: " + name_of(g, first) + " is an input, not a computed layer");
  if (to == int(order->size())) return status::error("tiled run: " + name_of(g, last) + " is an input, not a computed layer");
  if (to < from)
    return status::error("tiled run: " + name_of(g, last) + " comes before " + name_of(g, first) + " in execution order");
  tiled_run run;
  run.layers.assign(order->begin() + from, order->begin() + to + 1);
  for (int l : run.layers) {
    const layer& L = g.layers[l];
    if (!spatially_local(L.kind)) return status::error("tiled run: " + name_of(g, l) + " is not spatially local");
    if (!tileable_layer(g, l))
      return status::error("tiled run: " + name_of(g, l) +
                           " counts padding but not its ceil_mode overflow; a tile cannot tell them apart");
  }
  subgraph_boundary b = boundary_of(g, run.layers);
  std::vector<std::vector<int>> readers = g.consumers();
  for (int out : b.outputs) {
    if (out == last) continue;
    std::string reader = "the graph's outputs";
    for (int r : readers[out])
      if (std::find(run.layers.begin(), run.layers.end(), r) == run.layers.end()) {
        reader = name_of(g, r);
        break;
      }
    return status::error("tiled run: the tensor of " + name_of(g, out) + " leaves the run before its end (a branch leaving the run, read by " +
                         reader + ")");
  }
  for (int l : run.layers) {
    if (l == last) continue;
    bool read_inside = false;
    for (int r : readers[l]) read_inside |= std::find(run.layers.begin(), run.layers.end(), r) != run.layers.end();
    if (!read_inside) return status::error("tiled run: the tensor of " + name_of(g, l) + " is read by no layer of the run");
  }
  run.inputs = b.inputs;
  run.output = last;
  return run;
}

run_extent longest_tileable_run(const graph& g, int first) {
  run_extent extent;
  auto order = computed_order(g);
  if (!order) {
    extent.stop_reason = order.message();
    return extent;
  }
  auto start = std::find(order->begin(), order->end(), first);
  if (start == order->end()) {
    extent.stop_reason = first >= 0 && first < int(g.layers.size()) ? name_of(g, first) + " is not a computed layer"
                                                                    : "layer index out of range";
    return extent;
  }
  // Validity is not monotonic (a run ending inside a residual block has a branch leaving it; one
  // ending at the block's add does not): try every end up to the first layer that is not
  // spatially local, keep the last valid one, and explain why the next layer cannot join.
  auto it = start;
  for (; it != order->end() && spatially_local(g.layers[*it].kind); ++it)
    if (make_tiled_run(g, first, *it).is_ok()) extent.last = *it;
  if (extent.last < 0) {
    extent.stop_reason = it == start ? name_of(g, first) + " is not spatially local"
                                     : make_tiled_run(g, first, *std::prev(it)).message();
    return extent;
  }
  auto next = std::next(std::find(order->begin(), order->end(), extent.last));
  if (next == order->end())
    extent.stop_reason = "the graph ends";
  else if (!spatially_local(g.layers[*next].kind))
    extent.stop_reason = name_of(g, *next) + " is not spatially local";
  else
    extent.stop_reason = make_tiled_run(g, first, *next).message();
  return extent;
}

double computed_share(const graph& g, const tile_geometry& geo, int layer) {
  const tensor_shape& shape = g.layers[size_t(layer)].output_shape;
  const region& r = geo.computed[size_t(layer)];
  return double(r.rows()) * r.cols() / (double(shape.h) * shape.w);
}

result<std::vector<tile_geometry>> plan_tiles(const graph& g, const tiled_run& run, const tile_grid& grid) {
  const tensor_shape& out = g.layers[run.output].output_shape;
  auto check_bounds = [](const std::vector<int>& bounds, int size, const char* axis) -> status {
    if (bounds.size() < 2 || bounds.front() != 0 || bounds.back() != size)
      return status::error(std::string("tile grid: ") + axis + " bounds must run from 0 to " + std::to_string(size));
    for (size_t i = 1; i < bounds.size(); ++i)
      if (bounds[i] <= bounds[i - 1]) return status::error(std::string("tile grid: ") + axis + " bounds must increase strictly");
    return status::ok();
  };
  D3_RETURN_IF_ERROR(check_bounds(grid.row_bounds, out.h, "row"));
  D3_RETURN_IF_ERROR(check_bounds(grid.col_bounds, out.w, "column"));

  const size_t n = g.layers.size();
  std::vector<tile_geometry> tiles;
  for (int t = 0; t < grid.tiles(); ++t) {
    tile_geometry geo;
    geo.output = grid.tile(t);
    geo.computed.assign(n, region{});
    geo.layer_padding.assign(n, padding{});
    geo.reads.assign(n, {});
    geo.computed[run.output] = geo.output;
    // Backwards through the run: every reader of a tensor comes after its producer, so when a
    // layer is reached, the region of its tensor is final.
    for (auto it = run.layers.rbegin(); it != run.layers.rend(); ++it) {
      const int l = *it;
      const layer& L = g.layers[l];
      const region& r = geo.computed[l];
      geo.reads[l].assign(L.inputs.size(), region{});
      for (size_t slot = 0; slot < L.inputs.size(); ++slot) {
        const int producer = L.inputs[slot];
        const tensor_shape& in = g.layers[producer].output_shape;
        region need;
        if (has_window(L.kind) || L.kind == layer_kind::pad) {
          const window_params& w = L.window;
          int top, bottom, left, right;
          if (L.kind == layer_kind::pad) {
            top = r.row_begin - w.pad.top, bottom = r.row_end - w.pad.top;
            left = r.col_begin - w.pad.left, right = r.col_end - w.pad.left;
          } else {
            window_span(r.row_begin, r.row_end, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, &top, &bottom);
            window_span(r.col_begin, r.col_end, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, &left, &right);
          }
          need = {std::max(top, 0), std::min(bottom, in.h), std::max(left, 0), std::min(right, in.w)};
          if (need.empty())
            return status::error("tile " + std::to_string(t) + " (" + geo.output.to_string() + "): " + name_of(g, l) +
                                 " would read no input (the tile lies in padding only); use fewer tiles");
          // What falls outside the map is zero padding, and only there: at true image borders.
          geo.layer_padding[l] = {std::max(0, -top), std::max(0, -left), std::max(0, bottom - in.h), std::max(0, right - in.w)};
        } else if (in.h == 1 && in.w == 1 && (L.output_shape.h != 1 || L.output_shape.w != 1)) {
          need = {0, 1, 0, 1};  // a per-channel operand broadcast over the map
        } else {
          need = r;  // element-wise, concat, shuffle, slice: the same positions
        }
        geo.reads[l][slot] = need;
        geo.computed[producer] = bounding_box(geo.computed[producer], need);
      }
    }
    tiles.push_back(std::move(geo));
  }
  return tiles;
}

tiling_cost cost_of_tiling(const graph& g, const tiled_run& run, const std::vector<tile_geometry>& tiles) {
  tiling_cost cost;
  for (int l : run.layers) cost.untiled_flops += cost_of(g, l).flops;
  for (int in : run.inputs) cost.untiled_input_bytes += g.layers[in].output_shape.bytes();
  cost.untiled_output_bytes = g.layers[run.output].output_shape.bytes();
  auto bytes = [&](int layer, const region& r) {
    const tensor_shape& s = g.layers[layer].output_shape;
    return size_t(s.n) * size_t(r.rows()) * size_t(r.cols()) * size_t(s.c) * sizeof(float);
  };
  for (const tile_geometry& geo : tiles) {
    for (int l : run.layers) cost.tiled_flops += cost_of(g, l).flops * computed_share(g, geo, l);
    size_t in_bytes = 0;
    for (int in : run.inputs) in_bytes += bytes(in, geo.computed[in]);
    cost.tile_input_bytes.push_back(in_bytes);
    cost.tile_output_bytes.push_back(bytes(run.output, geo.output));
  }
  return cost;
}

tensor extract_region(const tensor& whole, const region& r) {
  const tensor_shape& s = whole.shape();
  tensor part(tensor_shape{s.n, r.rows(), r.cols(), s.c});
  const size_t row_bytes = size_t(r.cols()) * s.c * sizeof(float);
  for (int n = 0; n < s.n; ++n)
    for (int h = 0; h < r.rows(); ++h)
      std::memcpy(part.data() + ((size_t(n) * r.rows() + h) * r.cols()) * s.c,
                  whole.data() + ((size_t(n) * s.h + r.row_begin + h) * s.w + r.col_begin) * s.c, row_bytes);
  return part;
}

void insert_region(tensor& whole, const region& r, const tensor& part) {
  const tensor_shape& s = whole.shape();
  const size_t row_bytes = size_t(r.cols()) * s.c * sizeof(float);
  for (int n = 0; n < s.n; ++n)
    for (int h = 0; h < r.rows(); ++h)
      std::memcpy(whole.data() + ((size_t(n) * s.h + r.row_begin + h) * s.w + r.col_begin) * s.c,
                  part.data() + ((size_t(n) * r.rows() + h) * r.cols()) * s.c, row_bytes);
}

}  // namespace d3
