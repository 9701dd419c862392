// Vertical separation: a run of consecutive, spatially local layers (convolution, pooling, pad,
// element-wise layers, residual adds and concats whose branches are tiled alike) is cut into tiles
// of its output. Each tile is computed from exactly the input region it needs (its halo) with zero
// padding only at true image borders, so the tiles reassemble into exactly the untiled result.
//
// Geometry, for one layer and one axis (DeepThings' formula generalised; field.md): output rows
// [lo, hi) of a window layer (kernel k, stride s, dilation d, leading padding p) need input rows
// [lo*s - p, (hi-1)*s - p + (k-1)*d + 1), clipped to the map; what falls outside the map becomes
// the tile's padding on that side. A tensor read by several layers of the run is computed over the
// bounding box of what they need; a reader needing less reads a cropped copy.
#pragma once

#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "base/status.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

// Rows [row_begin, row_end) x columns [col_begin, col_end) of a feature map.
struct region {
  int row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
  int rows() const { return row_end - row_begin; }
  int cols() const { return col_end - col_begin; }
  bool empty() const { return rows() <= 0 || cols() <= 0; }
  bool operator==(const region& o) const {
    return row_begin == o.row_begin && row_end == o.row_end && col_begin == o.col_begin && col_end == o.col_end;
  }
  bool operator!=(const region& o) const { return !(*this == o); }
  std::string to_string() const;  // "rows [0, 28) cols [14, 28)"
};
std::ostream& operator<<(std::ostream& out, const region& r);

// Where the run's output is cut: row_bounds = {0, r1, ..., height}, col_bounds = {0, ..., width},
// strictly increasing. Tiles are numbered row-major.
struct tile_grid {
  std::vector<int> row_bounds, col_bounds;

  int rows() const { return int(row_bounds.size()) - 1; }
  int cols() const { return int(col_bounds.size()) - 1; }
  int tiles() const { return rows() * cols(); }
  region tile(int index) const;

  // rows x cols tiles of near-equal size (sizes differ by at most one row/column).
  static result<tile_grid> uniform(int rows, int cols, int height, int width);
  // Sizes proportional to the weights (e.g. edge node speeds), each at least one row/column.
  static result<tile_grid> proportional(const std::vector<double>& row_weights,
                                        const std::vector<double>& col_weights, int height, int width);
  // "RxC" (e.g. "2x2"), uniform.
  static result<tile_grid> parse(const std::string& text, int height, int width);
};

// A tileable run: the computed layers at topological positions first..last.
// Invariants: every layer is spatially local; the only tensor leaving the run is the last layer's
// (nothing produced inside is read outside or returned by the graph before the end).
struct tiled_run {
  std::vector<int> layers;  // execution order
  std::vector<int> inputs;  // tensors entering the run (producer layer indices), ascending
  int output = -1;          // the last layer, whose tensor is the only one leaving the run
};

// Validates the run from layer `first` to layer `last` (graph layer indices; `last` must not come
// before `first` in topological order). Errors say why, naming the layer: not spatially local
// (fully connected, global pooling, softmax, flatten), a tensor leaving the run before its end
// (a branch leaving the run), a run output with a different spatial size than a layer needs.
result<tiled_run> make_tiled_run(const graph& g, int first, int last);

// Whether a tile can compute `layer` from a spatial window of its inputs (its kind is spatially
// local, and an average pool counting padding has no ceil_mode overflow). A run is tileable iff
// every layer is, and no tensor but the last one's leaves the run or is read by no run layer.
bool tileable_layer(const graph& g, int layer);

// The longest tileable run starting at `first`, and why it cannot go one layer further.
struct run_extent {
  int last = -1;             // layer index; -1 when `first` itself cannot be tiled
  std::string stop_reason;   // e.g. "layer 'fc' (fully_connected) is not spatially local"
};
run_extent longest_tileable_run(const graph& g, int first);

// What one tile computes: for every tensor of the run (indexed by graph layer index; entries of
// layers outside the run are empty) the region of that tensor it computes (for run inputs: the
// region it receives), and for each run layer the per-side zero padding it applies and the region
// of each input it reads (equal to, or inside, that input's computed region).
struct tile_geometry {
  region output;
  std::vector<region> computed;                // [layer index]
  std::vector<padding> layer_padding;          // [layer index]: convolution, pooling, pad layers
  std::vector<std::vector<region>> reads;      // [layer index][input slot]
};

// The share of layer `layer`'s output (height x width) that a tile computes, halo included: what
// its work is priced at, as every layer kind's work is proportional to the output it computes.
double computed_share(const graph& g, const tile_geometry& geo, int layer);

// Precondition: g's shapes inferred; run from make_tiled_run; grid bounds match the run output's
// height and width. Errors for tilings that cannot be exact (e.g. average pooling with ceil_mode
// and count_include_pad) or an empty grid.
result<std::vector<tile_geometry>> plan_tiles(const graph& g, const tiled_run& run, const tile_grid& grid);

// What a tiling costs, for a planner to price it.
struct tiling_cost {
  double untiled_flops = 0;                 // the run computed once, whole
  double tiled_flops = 0;                   // sum over tiles, halo recomputation included
  size_t untiled_input_bytes = 0, untiled_output_bytes = 0;
  std::vector<size_t> tile_input_bytes;     // per tile: bytes of all input regions it receives
  std::vector<size_t> tile_output_bytes;    // per tile: bytes of its output region
  double overhead() const { return untiled_flops > 0 ? tiled_flops / untiled_flops - 1 : 0; }
};
tiling_cost cost_of_tiling(const graph& g, const tiled_run& run, const std::vector<tile_geometry>& tiles);

// Region copies between a whole NHWC tensor and a tile-sized one.
tensor extract_region(const tensor& whole, const region& r);
void insert_region(tensor& whole, const region& r, const tensor& part);

}  // namespace d3
