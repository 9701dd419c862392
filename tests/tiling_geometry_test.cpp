// Tiling geometry (kernels/tiling.hpp) against regions computed by hand on small graphs: one layer
// per window case (stride, dilation, asymmetric and valid padding, ceil-mode pooling, pad layers),
// then halos that grow along a chain, residual blocks and concats whose branches need different
// halos. Also tile grids, run validation on the built-in models, costs and region copies. Whether
// tiled execution is exact lives in tiling_test.cpp.
#define BOOST_TEST_MODULE tiling_geometry
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tiling.hpp"
#include "tests/test_graphs.hpp"

using namespace d3;
using namespace d3::testing;

namespace {

void infer(graph& g) {
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
}

graph load(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

int find(const graph& g, const std::string& name) {
  int i = g.find(name);
  BOOST_REQUIRE_MESSAGE(i >= 0, "no layer named " << name);
  return i;
}

region rows_cols(int row_begin, int row_end, int col_begin, int col_end) {
  return region{row_begin, row_end, col_begin, col_end};
}

tiled_run run_of(const graph& g, int first, int last) {
  auto run = make_tiled_run(g, first, last);
  BOOST_REQUIRE_MESSAGE(run.is_ok(), run.message());
  return std::move(run.value());
}

std::vector<tile_geometry> plan(const graph& g, const tiled_run& run, const tile_grid& grid) {
  auto tiles = plan_tiles(g, run, grid);
  BOOST_REQUIRE_MESSAGE(tiles.is_ok(), tiles.message());
  BOOST_REQUIRE_EQUAL(int(tiles->size()), grid.tiles());
  return std::move(tiles.value());
}

tile_grid rows_grid(std::vector<int> row_bounds, int width) {
  tile_grid grid;
  grid.row_bounds = std::move(row_bounds);
  grid.col_bounds = {0, width};
  return grid;
}

padding pad_of(int top, int left, int bottom, int right) {
  padding p;
  p.top = top;
  p.left = left;
  p.bottom = bottom;
  p.right = right;
  return p;
}

std::string str(const padding& p) {
  return "{top " + std::to_string(p.top) + ", left " + std::to_string(p.left) + ", bottom " + std::to_string(p.bottom) +
         ", right " + std::to_string(p.right) + "}";
}

#define CHECK_REGION(actual, expected) \
  BOOST_CHECK_MESSAGE((actual) == (expected), #actual ": " << (actual) << ", expected " << (expected))
#define CHECK_PADDING(actual, expected) \
  BOOST_CHECK_MESSAGE((actual) == (expected), #actual ": " << str(actual) << ", expected " << str(expected))

bool mentions(const std::string& text, const std::string& word) { return text.find(word) != std::string::npos; }

// One window layer on an input of `rows` x `cols` x 2 channels; returns {input, layer}.
struct one_layer {
  graph g;
  int input = -1, layer = -1;
};

one_layer convolution_case(int rows, int cols, int kernel, int stride, int dilation, padding pad) {
  one_layer c;
  c.g.name = "one_conv";
  c.input = add_input(c.g, "input", {1, rows, cols, 2});
  c.layer = add_convolution(c.g, "conv", c.input, 2, 3, kernel, stride, 0);
  layer& l = c.g.layers[c.layer];
  l.window.dilation_h = l.window.dilation_w = dilation;
  l.window.pad = pad;
  c.g.outputs = {c.layer};
  infer(c.g);
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Single layers

BOOST_AUTO_TEST_CASE(conv3x3_stride1_pad1_two_row_tiles) {
  one_layer c = convolution_case(8, 6, 3, 1, 1, pad_of(1, 1, 1, 1));
  BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 8, 6, 3}));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  BOOST_TEST(run.layers == std::vector<int>{c.layer});
  BOOST_TEST(run.inputs == std::vector<int>{c.input});
  BOOST_TEST(run.output == c.layer);
  auto grid = tile_grid::uniform(2, 1, 8, 6);
  BOOST_REQUIRE_MESSAGE(grid.is_ok(), grid.message());
  BOOST_TEST(grid->row_bounds == (std::vector<int>{0, 4, 8}));
  BOOST_TEST(grid->col_bounds == (std::vector<int>{0, 6}));
  auto tiles = plan(c.g, run, *grid);
  // Tile 0: output rows [0, 4) need input rows [-1, 5): [0, 5) plus one row of top padding.
  CHECK_REGION(tiles[0].output, rows_cols(0, 4, 0, 6));
  CHECK_REGION(tiles[0].computed[c.layer], rows_cols(0, 4, 0, 6));
  CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 5, 0, 6));
  CHECK_REGION(tiles[0].reads[c.layer].at(0), rows_cols(0, 5, 0, 6));
  CHECK_PADDING(tiles[0].layer_padding[c.layer], pad_of(1, 1, 0, 1));
  // Tile 1: output rows [4, 8) need input rows [3, 9): [3, 8) plus one row of bottom padding.
  CHECK_REGION(tiles[1].output, rows_cols(4, 8, 0, 6));
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(3, 8, 0, 6));
  CHECK_REGION(tiles[1].reads[c.layer].at(0), rows_cols(3, 8, 0, 6));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(0, 1, 1, 1));
}

BOOST_AUTO_TEST_CASE(conv3x3_stride1_pad1_two_by_two) {
  one_layer c = convolution_case(8, 6, 3, 1, 1, pad_of(1, 1, 1, 1));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  auto grid = tile_grid::uniform(2, 2, 8, 6);
  BOOST_REQUIRE(grid.is_ok());
  BOOST_TEST(grid->col_bounds == (std::vector<int>{0, 3, 6}));
  auto tiles = plan(c.g, run, *grid);
  // Row-major: tile 1 is the top right one, tile 2 the bottom left one.
  CHECK_REGION(tiles[1].output, rows_cols(0, 4, 3, 6));
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(0, 5, 2, 6));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(1, 0, 0, 1));
  CHECK_REGION(tiles[2].output, rows_cols(4, 8, 0, 3));
  CHECK_REGION(tiles[2].computed[c.input], rows_cols(3, 8, 0, 4));
  CHECK_PADDING(tiles[2].layer_padding[c.layer], pad_of(0, 1, 1, 0));
  CHECK_REGION(tiles[3].computed[c.input], rows_cols(3, 8, 2, 6));
  CHECK_PADDING(tiles[3].layer_padding[c.layer], pad_of(0, 0, 1, 1));
}

BOOST_AUTO_TEST_CASE(conv3x3_stride2) {
  // 9 rows, pad 1, stride 2: (9 + 2 - 3) / 2 + 1 = 5 output rows; the last window covers rows 7..9,
  // row 9 being the bottom padding.
  one_layer c = convolution_case(9, 9, 3, 2, 1, pad_of(1, 1, 1, 1));
  BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 5, 5, 3}));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  auto tiles = plan(c.g, run, rows_grid({0, 3, 5}, 5));
  // Rows [0, 3): [0*2 - 1, 2*2 - 1 + 3) = [-1, 6).
  CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 6, 0, 9));
  CHECK_PADDING(tiles[0].layer_padding[c.layer], pad_of(1, 1, 0, 1));
  // Rows [3, 5): [5, 4*2 - 1 + 3) = [5, 10): one row past the map.
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(5, 9, 0, 9));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(0, 1, 1, 1));
}

BOOST_AUTO_TEST_CASE(conv3x3_stride2_unused_bottom_padding_is_not_tile_padding) {
  // 8 rows, pad 1, stride 2: 4 output rows, the last window covers rows 5..7 and never touches the
  // declared bottom padding row, so the bottom tile has none.
  one_layer c = convolution_case(8, 8, 3, 2, 1, pad_of(1, 1, 1, 1));
  BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 4, 4, 3}));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  auto tiles = plan(c.g, run, rows_grid({0, 2, 4}, 4));
  CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 4, 0, 8));
  CHECK_PADDING(tiles[0].layer_padding[c.layer], pad_of(1, 1, 0, 0));
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(3, 8, 0, 8));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(0, 1, 0, 0));
}

BOOST_AUTO_TEST_CASE(conv3x3_dilation2) {
  // Dilation 2 makes a 5-row window; pad 2 keeps 8 rows.
  one_layer c = convolution_case(8, 4, 3, 1, 2, pad_of(2, 2, 2, 2));
  BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 8, 4, 3}));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  auto tiles = plan(c.g, run, rows_grid({0, 4, 8}, 4));
  // Rows [0, 4): [-2, 3 - 2 + 4 + 1) = [-2, 6).
  CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 6, 0, 4));
  CHECK_PADDING(tiles[0].layer_padding[c.layer], pad_of(2, 2, 0, 2));
  // Rows [4, 8): [2, 10).
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(2, 8, 0, 4));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(0, 2, 2, 2));
}

BOOST_AUTO_TEST_CASE(conv3x3_asymmetric_padding) {
  // Two rows of padding on top, none at the bottom: 8 + 2 - 3 + 1 = 8 rows.
  one_layer c = convolution_case(8, 5, 3, 1, 1, pad_of(2, 0, 0, 2));
  BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 8, 5, 3}));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  auto tiles = plan(c.g, run, rows_grid({0, 4, 8}, 5));
  // Rows [0, 4): [-2, 4). Columns [0, 5) with left 0, right 2: [0, 7) -> [0, 5), right padding 2.
  CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 4, 0, 5));
  CHECK_PADDING(tiles[0].layer_padding[c.layer], pad_of(2, 0, 0, 2));
  // Rows [4, 8): [2, 8): no padding at the bottom, as in the whole layer.
  CHECK_REGION(tiles[1].computed[c.input], rows_cols(2, 8, 0, 5));
  CHECK_PADDING(tiles[1].layer_padding[c.layer], pad_of(0, 0, 0, 2));
}

BOOST_AUTO_TEST_CASE(valid_padding_reads_lo_s_to_hi_minus_one_s_plus_k) {
  // pad 0: input rows [lo*s, (hi-1)*s + k), never any padding.
  {
    one_layer c = convolution_case(10, 10, 3, 1, 1, pad_of(0, 0, 0, 0));
    BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 8, 8, 3}));
    tiled_run run = run_of(c.g, c.layer, c.layer);
    auto tiles = plan(c.g, run, rows_grid({0, 3, 8}, 8));
    CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 5, 0, 10));
    CHECK_REGION(tiles[1].computed[c.input], rows_cols(3, 10, 0, 10));
    for (const auto& t : tiles) BOOST_TEST(!t.layer_padding[c.layer].any());
  }
  {
    one_layer c = convolution_case(11, 11, 3, 2, 1, pad_of(0, 0, 0, 0));
    BOOST_REQUIRE(c.g.layers[c.layer].output_shape == (tensor_shape{1, 5, 5, 3}));
    tiled_run run = run_of(c.g, c.layer, c.layer);
    auto grid = tile_grid{{0, 2, 5}, {0, 1, 5}};
    auto tiles = plan(c.g, run, grid);
    CHECK_REGION(tiles[0].computed[c.input], rows_cols(0, 3 + 2, 0, 3));   // rows [0, 1*2 + 3), cols [0, 0*2 + 3)
    CHECK_REGION(tiles[1].computed[c.input], rows_cols(0, 5, 2, 11));      // cols [1*2, 4*2 + 3)
    CHECK_REGION(tiles[2].computed[c.input], rows_cols(4, 11, 0, 3));      // rows [2*2, 4*2 + 3)
    CHECK_REGION(tiles[3].computed[c.input], rows_cols(4, 11, 2, 11));
    for (const auto& t : tiles) BOOST_TEST(!t.layer_padding[c.layer].any());
  }
}

BOOST_AUTO_TEST_CASE(max_pool_ceil_mode_overflow_is_tile_padding) {
  // 3x3/2 max pool with ceil_mode on 8 rows: ceil((8 - 3) / 2) + 1 = 4 rows; the last window starts
  // at row 6 and covers rows 6..8, row 8 being past the map.
  graph g;
  g.name = "ceil_pool";
  int in = add_input(g, "input", {1, 8, 8, 2});
  layer pool;
  pool.name = "pool";
  pool.kind = layer_kind::max_pool;
  pool.inputs = {in};
  pool.window.kernel_h = pool.window.kernel_w = 3;
  pool.window.stride_h = pool.window.stride_w = 2;
  pool.window.ceil_mode = true;
  int p = add_layer(g, pool);
  g.outputs = {p};
  infer(g);
  BOOST_REQUIRE(g.layers[p].output_shape == (tensor_shape{1, 4, 4, 2}));
  tiled_run run = run_of(g, p, p);
  auto tiles = plan(g, run, tile_grid{{0, 2, 4}, {0, 2, 4}});
  // Rows [0, 2): [0, 1*2 + 3) = [0, 5), inside the map.
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 5, 0, 5));
  CHECK_PADDING(tiles[0].layer_padding[p], pad_of(0, 0, 0, 0));
  // Rows [2, 4): [4, 9): the overflow row becomes the tile's bottom padding.
  CHECK_REGION(tiles[3].computed[in], rows_cols(4, 8, 4, 8));
  CHECK_PADDING(tiles[3].layer_padding[p], pad_of(0, 0, 1, 1));
  CHECK_PADDING(tiles[1].layer_padding[p], pad_of(0, 0, 0, 1));
  CHECK_PADDING(tiles[2].layer_padding[p], pad_of(0, 0, 1, 0));
}

BOOST_AUTO_TEST_CASE(average_pool_counting_the_ceil_overflow_is_refused) {
  graph g;
  g.name = "ceil_avg_pool";
  int in = add_input(g, "input", {1, 8, 8, 2});
  layer pool;
  pool.name = "pool";
  pool.kind = layer_kind::average_pool;
  pool.inputs = {in};
  pool.window.kernel_h = pool.window.kernel_w = 3;
  pool.window.stride_h = pool.window.stride_w = 2;
  pool.window.pad = pad_of(1, 1, 1, 1);
  pool.window.ceil_mode = true;
  pool.window.count_include_pad = true;
  int p = add_layer(g, pool);
  g.outputs = {p};
  infer(g);
  // (8 + 2 - 3) / 2 = 3.5 -> ceil 4, + 1 = 5 rows; the last window starts at row 7 of the padded
  // map and overflows it: PyTorch leaves the overflow out of the divisor, a tile could not.
  BOOST_REQUIRE(g.layers[p].output_shape == (tensor_shape{1, 5, 5, 2}));
  auto run = make_tiled_run(g, p, p);
  bool refused = !run.is_ok();
  if (run.is_ok()) refused = !plan_tiles(g, *run, tile_grid{{0, 2, 5}, {0, 5}}).is_ok();
  BOOST_TEST(refused);
  // Without count_include_pad the same pooling tiles.
  g.layers[p].window.count_include_pad = false;
  auto fine = make_tiled_run(g, p, p);
  BOOST_REQUIRE_MESSAGE(fine.is_ok(), fine.message());
  BOOST_TEST(plan_tiles(g, *fine, tile_grid{{0, 2, 5}, {0, 5}}).is_ok());
}

BOOST_AUTO_TEST_CASE(pad_layer) {
  // Pad 6x5 by top 1, left 2, bottom 3, right 0: 10x7.
  graph g;
  g.name = "pad";
  int in = add_input(g, "input", {1, 6, 5, 2});
  layer l;
  l.name = "pad";
  l.kind = layer_kind::pad;
  l.inputs = {in};
  l.window.pad = pad_of(1, 2, 3, 0);
  int p = add_layer(g, l);
  g.outputs = {p};
  infer(g);
  BOOST_REQUIRE(g.layers[p].output_shape == (tensor_shape{1, 10, 7, 2}));
  tiled_run run = run_of(g, p, p);
  auto tiles = plan(g, run, rows_grid({0, 5, 10}, 7));
  // Rows [0, 5) of the padded map are input rows [-1, 4); columns [0, 7) are [-2, 5).
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 4, 0, 5));
  CHECK_PADDING(tiles[0].layer_padding[p], pad_of(1, 2, 0, 0));
  // Rows [5, 10) are input rows [4, 9): [4, 6) and three rows of padding.
  CHECK_REGION(tiles[1].computed[in], rows_cols(4, 6, 0, 5));
  CHECK_PADDING(tiles[1].layer_padding[p], pad_of(0, 2, 3, 0));
}

// ---------------------------------------------------------------------------------------------
// Several layers

BOOST_AUTO_TEST_CASE(conv_conv_pool_chain_halo_grows) {
  graph g;
  g.name = "chain";
  int in = add_input(g, "input", {1, 16, 16, 2});
  int a = add_convolution(g, "a", in, 2, 4);
  int b = add_convolution(g, "b", a, 4, 4);
  layer pool;
  pool.name = "pool";
  pool.kind = layer_kind::max_pool;
  pool.inputs = {b};
  pool.window.kernel_h = pool.window.kernel_w = 2;
  pool.window.stride_h = pool.window.stride_w = 2;
  int p = add_layer(g, pool);
  g.outputs = {p};
  infer(g);
  BOOST_REQUIRE(g.layers[p].output_shape == (tensor_shape{1, 8, 8, 4}));
  tiled_run run = run_of(g, a, p);
  BOOST_TEST(run.layers == (std::vector<int>{a, b, p}));
  BOOST_TEST(run.inputs == std::vector<int>{in});
  auto grid = tile_grid::uniform(2, 2, 8, 8);
  BOOST_REQUIRE(grid.is_ok());
  auto tiles = plan(g, run, *grid);
  // Tile 0, output [0, 4) x [0, 4): the pool needs b [0, 8); b needs a [-1, 9) -> [0, 9);
  // a needs the input [-1, 10) -> [0, 10).
  CHECK_REGION(tiles[0].computed[p], rows_cols(0, 4, 0, 4));
  CHECK_REGION(tiles[0].computed[b], rows_cols(0, 8, 0, 8));
  CHECK_REGION(tiles[0].computed[a], rows_cols(0, 9, 0, 9));
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 10, 0, 10));
  CHECK_PADDING(tiles[0].layer_padding[a], pad_of(1, 1, 0, 0));
  CHECK_PADDING(tiles[0].layer_padding[b], pad_of(1, 1, 0, 0));
  CHECK_PADDING(tiles[0].layer_padding[p], pad_of(0, 0, 0, 0));
  // Tile 3, output [4, 8) x [4, 8): b [8, 16); a [7, 17) -> [7, 16); input [6, 17) -> [6, 16).
  CHECK_REGION(tiles[3].computed[b], rows_cols(8, 16, 8, 16));
  CHECK_REGION(tiles[3].computed[a], rows_cols(7, 16, 7, 16));
  CHECK_REGION(tiles[3].computed[in], rows_cols(6, 16, 6, 16));
  CHECK_PADDING(tiles[3].layer_padding[a], pad_of(0, 0, 1, 1));
  CHECK_PADDING(tiles[3].layer_padding[b], pad_of(0, 0, 1, 1));
  // Tile 1 (top right) mixes both.
  CHECK_REGION(tiles[1].computed[in], rows_cols(0, 10, 6, 16));
  CHECK_PADDING(tiles[1].layer_padding[a], pad_of(1, 0, 0, 1));
  // Layers outside the run have no region.
  for (const auto& t : tiles) BOOST_TEST(t.computed.size() == g.layers.size());
}

BOOST_AUTO_TEST_CASE(residual_block_skip_is_the_bounding_box) {
  // c0 -> c1 -> add(c1, c0): c0's tensor feeds both the 3x3 convolution (halo 1) and the add
  // (no halo).
  graph g;
  g.name = "residual";
  int in = add_input(g, "input", {1, 8, 8, 2});
  int c0 = add_convolution(g, "c0", in, 2, 4);
  int c1 = add_convolution(g, "c1", c0, 4, 4);
  int add = add_simple(g, "add", layer_kind::add, {c1, c0});
  g.outputs = {add};
  infer(g);
  tiled_run run = run_of(g, c0, add);
  BOOST_TEST(run.layers == (std::vector<int>{c0, c1, add}));
  BOOST_TEST(run.inputs == std::vector<int>{in});
  BOOST_TEST(run.output == add);
  auto tiles = plan(g, run, rows_grid({0, 4, 8}, 8));
  // Tile 0: the add needs c1 and c0 rows [0, 4); c1 needs c0 [-1, 5) -> [0, 5).
  CHECK_REGION(tiles[0].computed[c1], rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].computed[c0], rows_cols(0, 5, 0, 8));
  CHECK_REGION(tiles[0].reads[c1].at(0), rows_cols(0, 5, 0, 8));
  CHECK_REGION(tiles[0].reads[add].at(0), rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].reads[add].at(1), rows_cols(0, 4, 0, 8));  // the smaller region
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 6, 0, 8));
  CHECK_PADDING(tiles[0].layer_padding[c0], pad_of(1, 1, 0, 1));
  // Tile 1: c0 [3, 8) computed, [4, 8) read by the add; input [2, 8).
  CHECK_REGION(tiles[1].computed[c0], rows_cols(3, 8, 0, 8));
  CHECK_REGION(tiles[1].reads[c1].at(0), rows_cols(3, 8, 0, 8));
  CHECK_REGION(tiles[1].reads[add].at(1), rows_cols(4, 8, 0, 8));
  CHECK_REGION(tiles[1].computed[in], rows_cols(2, 8, 0, 8));
  CHECK_PADDING(tiles[1].layer_padding[c0], pad_of(0, 1, 1, 1));
  CHECK_PADDING(tiles[1].layer_padding[c1], pad_of(0, 1, 1, 1));
}

BOOST_AUTO_TEST_CASE(residual_block_with_the_skip_as_run_input) {
  // The run reads its input twice: through a 3x3 convolution and directly in the add. The tile
  // receives the bounding box; the add reads a cropped part of it.
  graph g;
  g.name = "residual_input";
  int in = add_input(g, "input", {1, 8, 8, 4});
  int c1 = add_convolution(g, "c1", in, 4, 4);
  int add = add_simple(g, "add", layer_kind::add, {c1, in});
  g.outputs = {add};
  infer(g);
  tiled_run run = run_of(g, c1, add);
  BOOST_TEST(run.inputs == std::vector<int>{in});
  auto tiles = plan(g, run, rows_grid({0, 4, 8}, 8));
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 5, 0, 8));
  CHECK_REGION(tiles[0].reads[c1].at(0), rows_cols(0, 5, 0, 8));
  CHECK_REGION(tiles[0].reads[add].at(1), rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[1].computed[in], rows_cols(3, 8, 0, 8));
  CHECK_REGION(tiles[1].reads[add].at(1), rows_cols(4, 8, 0, 8));
}

BOOST_AUTO_TEST_CASE(concat_of_branches_with_different_halos) {
  // input -> b1 (1x1, no halo) and input -> b2a (3x3) -> b2b (3x3): halo 2; concat(b1, b2b).
  graph g;
  g.name = "concat";
  int in = add_input(g, "input", {1, 8, 8, 2});
  int b1 = add_convolution(g, "b1", in, 2, 3, 1, 1, 0);
  int b2a = add_convolution(g, "b2a", in, 2, 3);
  int b2b = add_convolution(g, "b2b", b2a, 3, 3);
  int cat = add_simple(g, "concat", layer_kind::concat, {b1, b2b});
  g.outputs = {cat};
  infer(g);
  BOOST_REQUIRE(g.layers[cat].output_shape == (tensor_shape{1, 8, 8, 6}));
  tiled_run run = run_of(g, b1, cat);
  BOOST_TEST(run.layers == (std::vector<int>{b1, b2a, b2b, cat}));
  BOOST_TEST(run.inputs == std::vector<int>{in});
  auto tiles = plan(g, run, rows_grid({0, 4, 8}, 8));
  // Tile 0: b1 reads input [0, 4); b2b needs b2a [0, 5); b2a needs the input [0, 6).
  CHECK_REGION(tiles[0].computed[b1], rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].computed[b2b], rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].computed[b2a], rows_cols(0, 5, 0, 8));
  CHECK_REGION(tiles[0].reads[b1].at(0), rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].reads[b2a].at(0), rows_cols(0, 6, 0, 8));
  CHECK_REGION(tiles[0].computed[in], rows_cols(0, 6, 0, 8));
  CHECK_REGION(tiles[0].reads[cat].at(0), rows_cols(0, 4, 0, 8));
  CHECK_REGION(tiles[0].reads[cat].at(1), rows_cols(0, 4, 0, 8));
  CHECK_PADDING(tiles[0].layer_padding[b1], pad_of(0, 0, 0, 0));
  CHECK_PADDING(tiles[0].layer_padding[b2a], pad_of(1, 1, 0, 1));
  // Tile 1: b1 reads [4, 8); b2a computes [3, 8) from input [2, 8).
  CHECK_REGION(tiles[1].reads[b1].at(0), rows_cols(4, 8, 0, 8));
  CHECK_REGION(tiles[1].computed[b2a], rows_cols(3, 8, 0, 8));
  CHECK_REGION(tiles[1].computed[in], rows_cols(2, 8, 0, 8));
  CHECK_PADDING(tiles[1].layer_padding[b1], pad_of(0, 0, 0, 0));
  CHECK_PADDING(tiles[1].layer_padding[b2b], pad_of(0, 1, 1, 1));
}

BOOST_AUTO_TEST_CASE(plan_rejects_grids_that_do_not_match_the_output) {
  one_layer c = convolution_case(8, 6, 3, 1, 1, pad_of(1, 1, 1, 1));
  tiled_run run = run_of(c.g, c.layer, c.layer);
  BOOST_TEST(!plan_tiles(c.g, run, rows_grid({0, 4, 9}, 6)).is_ok());  // 9 rows, the output has 8
  BOOST_TEST(!plan_tiles(c.g, run, rows_grid({0, 4, 8}, 5)).is_ok());  // 5 columns, it has 6
  BOOST_TEST(!plan_tiles(c.g, run, rows_grid({0, 4, 4, 8}, 6)).is_ok());  // an empty tile
  BOOST_TEST(!plan_tiles(c.g, run, tile_grid{}).is_ok());
}

// ---------------------------------------------------------------------------------------------
// Tile grids

BOOST_AUTO_TEST_CASE(uniform_grid_sizes_differ_by_at_most_one) {
  auto grid = tile_grid::uniform(3, 1, 7, 5);
  BOOST_REQUIRE_MESSAGE(grid.is_ok(), grid.message());
  BOOST_TEST(grid->rows() == 3);
  BOOST_TEST(grid->cols() == 1);
  BOOST_TEST(grid->tiles() == 3);
  BOOST_TEST(grid->row_bounds.front() == 0);
  BOOST_TEST(grid->row_bounds.back() == 7);
  BOOST_TEST(grid->col_bounds == (std::vector<int>{0, 5}));
  std::vector<int> sizes;
  for (int i = 0; i < grid->rows(); ++i) sizes.push_back(grid->row_bounds[i + 1] - grid->row_bounds[i]);
  std::sort(sizes.begin(), sizes.end());
  BOOST_TEST(sizes == (std::vector<int>{2, 2, 3}));
  // Every (rows, height) pair of a small range: sizes within one of each other, covering the map.
  for (int height = 1; height <= 40; ++height)
    for (int n = 1; n <= height; ++n) {
      auto g = tile_grid::uniform(n, 1, height, 1);
      BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
      BOOST_REQUIRE(g->rows() == n);
      int lo = height, hi = 0;
      for (int i = 0; i < n; ++i) {
        int size = g->row_bounds[i + 1] - g->row_bounds[i];
        lo = std::min(lo, size);
        hi = std::max(hi, size);
      }
      BOOST_CHECK_MESSAGE(lo >= 1 && hi - lo <= 1, n << " tiles on " << height << " rows: sizes " << lo << ".." << hi);
      BOOST_CHECK(g->row_bounds.front() == 0 && g->row_bounds.back() == height);
    }
}

BOOST_AUTO_TEST_CASE(tile_numbering_is_row_major) {
  auto grid = tile_grid::parse("2x3", 10, 12);
  BOOST_REQUIRE_MESSAGE(grid.is_ok(), grid.message());
  BOOST_TEST(grid->rows() == 2);
  BOOST_TEST(grid->cols() == 3);
  BOOST_TEST(grid->tiles() == 6);
  BOOST_TEST(grid->row_bounds == (std::vector<int>{0, 5, 10}));
  BOOST_TEST(grid->col_bounds == (std::vector<int>{0, 4, 8, 12}));
  CHECK_REGION(grid->tile(0), rows_cols(0, 5, 0, 4));
  CHECK_REGION(grid->tile(1), rows_cols(0, 5, 4, 8));
  CHECK_REGION(grid->tile(3), rows_cols(5, 10, 0, 4));
  CHECK_REGION(grid->tile(5), rows_cols(5, 10, 8, 12));
}

BOOST_AUTO_TEST_CASE(proportional_grid) {
  auto grid = tile_grid::proportional({1, 3}, {1}, 8, 4);
  BOOST_REQUIRE_MESSAGE(grid.is_ok(), grid.message());
  BOOST_TEST(grid->row_bounds == (std::vector<int>{0, 2, 8}));
  BOOST_TEST(grid->col_bounds == (std::vector<int>{0, 4}));
  auto cols = tile_grid::proportional({1}, {2, 1, 1}, 4, 8);
  BOOST_REQUIRE(cols.is_ok());
  BOOST_TEST(cols->col_bounds == (std::vector<int>{0, 4, 6, 8}));
  // A tiny weight still gets one row.
  auto tiny = tile_grid::proportional({0.001, 1, 1}, {1}, 6, 1);
  BOOST_REQUIRE(tiny.is_ok());
  for (int i = 0; i < tiny->rows(); ++i) BOOST_TEST(tiny->row_bounds[i + 1] - tiny->row_bounds[i] >= 1);
  BOOST_TEST(tiny->row_bounds.back() == 6);
  BOOST_TEST(!tile_grid::proportional({1, 0}, {1}, 8, 4).is_ok());
  BOOST_TEST(!tile_grid::proportional({1, -1}, {1}, 8, 4).is_ok());
  BOOST_TEST(!tile_grid::proportional({}, {1}, 8, 4).is_ok());
  BOOST_TEST(!tile_grid::proportional({1, 1, 1}, {1}, 2, 4).is_ok());
}

BOOST_AUTO_TEST_CASE(grid_errors) {
  auto too_many = tile_grid::uniform(9, 1, 8, 8);
  BOOST_TEST(!too_many.is_ok());
  BOOST_TEST(!tile_grid::uniform(1, 9, 8, 8).is_ok());
  BOOST_TEST(!tile_grid::uniform(0, 1, 8, 8).is_ok());
  BOOST_TEST(!tile_grid::parse("3x3", 2, 2).is_ok());
  for (const std::string text : {"0x2", "ax2", "2x", "x2", "2", "", "2x2x2", "-1x2", "2 x 2", "2x0"}) {
    auto g = tile_grid::parse(text, 16, 16);
    BOOST_CHECK_MESSAGE(!g.is_ok(), "'" << text << "' parsed");
    if (!g.is_ok()) BOOST_CHECK_MESSAGE(!g.message().empty(), "'" << text << "': empty message");
  }
  auto one = tile_grid::parse("1x1", 16, 16);
  BOOST_REQUIRE(one.is_ok());
  BOOST_TEST(one->tiles() == 1);
  CHECK_REGION(one->tile(0), rows_cols(0, 16, 0, 16));
}

// ---------------------------------------------------------------------------------------------
// Runs on the built-in models

BOOST_AUTO_TEST_CASE(longest_run_of_resnet18_stops_at_the_global_average_pool) {
  graph g = load("resnet18");
  run_extent e = longest_tileable_run(g, find(g, "conv1"));
  BOOST_REQUIRE(e.last >= 0);
  BOOST_TEST(g.layers[e.last].name == "layer4.1.add");  // relu2 fused into the add
  BOOST_TEST(mentions(e.stop_reason, "avgpool"), e.stop_reason);
  BOOST_TEST(make_tiled_run(g, find(g, "conv1"), e.last).is_ok());
  // From the max pool, whose tensor the first block's add reads: the run must reach that add, and
  // then goes on to the same end.
  run_extent from_pool = longest_tileable_run(g, find(g, "maxpool"));
  BOOST_TEST(from_pool.last == e.last);
  // A fully connected layer cannot start a run.
  run_extent fc = longest_tileable_run(g, find(g, "fc"));
  BOOST_TEST(fc.last == -1);
  BOOST_TEST(mentions(fc.stop_reason, "fc"), fc.stop_reason);
}

BOOST_AUTO_TEST_CASE(longest_run_of_vgg16_stops_at_flatten) {
  graph g = load("vgg16");
  run_extent e = longest_tileable_run(g, find(g, "features.0"));
  BOOST_REQUIRE(e.last >= 0);
  BOOST_TEST(g.layers[e.last].name == "features.30");
  BOOST_TEST((mentions(e.stop_reason, "flatten") || mentions(e.stop_reason, "classifier")), e.stop_reason);
  auto run = make_tiled_run(g, find(g, "features.0"), find(g, "features.16"));
  BOOST_REQUIRE_MESSAGE(run.is_ok(), run.message());
  BOOST_TEST(run->inputs == std::vector<int>{g.input_layers().at(0)});
  BOOST_TEST(run->layers.size() == 10u);  // 7 convolutions (ReLUs fused) and 3 pools
}

BOOST_AUTO_TEST_CASE(longest_run_in_googlenet_spans_inception_blocks) {
  graph g = load("googlenet");
  // From the first branch of an inception block, the run cannot end inside the block (the other
  // branches' tensors would leave it); it goes on through the whole feature extractor.
  run_extent e = longest_tileable_run(g, find(g, "inception3a.branch1.conv"));
  BOOST_REQUIRE(e.last >= 0);
  BOOST_TEST(g.layers[e.last].name == "inception5b.concat");
  BOOST_TEST(mentions(e.stop_reason, "avgpool"), e.stop_reason);
  auto inside = make_tiled_run(g, find(g, "inception3a.branch1.conv"), find(g, "inception3a.branch2.0.conv"));
  BOOST_TEST(!inside.is_ok());
}

BOOST_AUTO_TEST_CASE(make_tiled_run_errors_name_the_layer) {
  graph g = load("resnet18");
  // A branch leaving the run: the max pool's tensor is read by layer1.0.add, outside the run.
  auto branch = make_tiled_run(g, find(g, "maxpool"), find(g, "layer1.0.conv1"));
  BOOST_REQUIRE(!branch.is_ok());
  BOOST_TEST((mentions(branch.message(), "branch") || mentions(branch.message(), "layer1.0.add")), branch.message());
  BOOST_TEST(mentions(branch.message(), "maxpool"), branch.message());
  // Inside a block is fine when only the last tensor leaves: the max pool's tensor is an input.
  auto inside = make_tiled_run(g, find(g, "layer1.0.conv1"), find(g, "layer1.0.conv2"));
  BOOST_REQUIRE_MESSAGE(inside.is_ok(), inside.message());
  BOOST_TEST(inside->inputs == std::vector<int>{find(g, "maxpool")});
  BOOST_TEST(inside->layers.size() == 2u);
  // Across the global average pool and the classifier.
  auto across = make_tiled_run(g, find(g, "layer4.1.conv1"), find(g, "fc"));
  BOOST_REQUIRE(!across.is_ok());
  BOOST_TEST(mentions(across.message(), "avgpool"), across.message());
  // Backwards.
  auto backwards = make_tiled_run(g, find(g, "layer1.0.conv2"), find(g, "layer1.0.conv1"));
  BOOST_TEST(!backwards.is_ok());
  // The graph input is not a computed layer.
  BOOST_TEST(!make_tiled_run(g, g.input_layers().at(0), find(g, "conv1")).is_ok());

  graph vgg = load("vgg16");
  auto flat = make_tiled_run(vgg, find(vgg, "features.28"), find(vgg, "classifier.0"));
  BOOST_REQUIRE(!flat.is_ok());
  BOOST_TEST(mentions(flat.message(), "flatten"), flat.message());
}

BOOST_AUTO_TEST_CASE(a_run_across_a_fully_connected_layer_names_it) {
  // conv 1x1 -> fully connected -> conv 1x1 on a 1x1 map: only the fully connected layer is not
  // spatially local.
  graph g;
  g.name = "fc_between";
  int in = add_input(g, "input", {1, 1, 1, 8});
  int c1 = add_convolution(g, "c1", in, 8, 8, 1, 1, 0);
  layer fc;
  fc.name = "the_fc";
  fc.kind = layer_kind::fully_connected;
  fc.inputs = {c1};
  fc.output_channels = 8;
  fc.weights = random_weights(64, 5, 0.3f);
  int f = add_layer(g, fc);
  int c2 = add_convolution(g, "c2", f, 8, 8, 1, 1, 0);
  g.outputs = {c2};
  infer(g);
  auto run = make_tiled_run(g, c1, c2);
  BOOST_REQUIRE(!run.is_ok());
  BOOST_TEST(mentions(run.message(), "the_fc"), run.message());
  run_extent e = longest_tileable_run(g, c1);
  BOOST_TEST(e.last == c1);
  BOOST_TEST(mentions(e.stop_reason, "the_fc"), e.stop_reason);
}

// ---------------------------------------------------------------------------------------------
// Costs

BOOST_AUTO_TEST_CASE(one_tile_costs_nothing_extra) {
  graph g = load("resnet18");
  tiled_run run = run_of(g, find(g, "layer1.0.conv1"), find(g, "layer2.1.add"));
  const tensor_shape& out = g.layers[run.output].output_shape;
  auto grid = tile_grid::uniform(1, 1, out.h, out.w);
  BOOST_REQUIRE(grid.is_ok());
  auto tiles = plan(g, run, *grid);
  tiling_cost cost = cost_of_tiling(g, run, tiles);
  double untiled = 0;
  for (int l : run.layers) untiled += cost_of(g, l).flops;
  BOOST_TEST(cost.untiled_flops == untiled);
  BOOST_TEST(cost.tiled_flops == cost.untiled_flops);
  BOOST_TEST(cost.overhead() == 0.0);
  BOOST_REQUIRE(cost.tile_input_bytes.size() == 1u);
  BOOST_TEST(cost.tile_input_bytes[0] == cost.untiled_input_bytes);
  BOOST_TEST(cost.tile_output_bytes[0] == cost.untiled_output_bytes);
  BOOST_TEST(cost.untiled_input_bytes == g.layers[find(g, "maxpool")].output_shape.bytes());
  BOOST_TEST(cost.untiled_output_bytes == out.bytes());
  // The single tile computes every tensor whole, with the layers' own padding where the windows
  // reach it (stride 1 here; layer2.0.conv1's stride-2 windows never reach its bottom/right row).
  for (int l : run.layers) {
    const layer& L = g.layers[l];
    CHECK_REGION(tiles[0].computed[l], rows_cols(0, L.output_shape.h, 0, L.output_shape.w));
    if (L.window.stride_h == 1 && L.window.stride_w == 1) CHECK_PADDING(tiles[0].layer_padding[l], L.window.pad);
  }
  const layer& strided = g.layers[find(g, "layer2.0.conv1")];
  CHECK_PADDING(tiles[0].layer_padding[find(g, "layer2.0.conv1")], pad_of(1, 1, 0, 0));
  BOOST_TEST(strided.window.pad.bottom == 1);
}

BOOST_AUTO_TEST_CASE(two_by_two_of_a_conv_chain_matches_a_hand_count) {
  // 8x8x2 -> 3x3 conv to 4 channels -> 3x3 conv to 4 channels, a 2x2 grid of 4x4 tiles.
  graph g;
  g.name = "chain2";
  int in = add_input(g, "input", {1, 8, 8, 2});
  int a = add_convolution(g, "a", in, 2, 4);
  int b = add_convolution(g, "b", a, 4, 4);
  g.outputs = {b};
  infer(g);
  tiled_run run = run_of(g, a, b);
  auto grid = tile_grid::uniform(2, 2, 8, 8);
  BOOST_REQUIRE(grid.is_ok());
  auto tiles = plan(g, run, *grid);
  tiling_cost cost = cost_of_tiling(g, run, tiles);
  // Per output pixel: a 2*9*2*4 = 144 FLOP, b 2*9*4*4 = 288 FLOP. Untiled 64 pixels each.
  const double untiled = 64.0 * 144 + 64.0 * 288;
  // Each tile computes b over 4x4 and a over 5x5 (one halo row and column inside the map).
  const double tiled = 4 * (25.0 * 144 + 16.0 * 288);
  BOOST_TEST(cost.untiled_flops == untiled);
  BOOST_TEST(cost.tiled_flops == tiled);
  BOOST_TEST(cost.overhead() > 0);
  BOOST_TEST(cost.overhead() == tiled / untiled - 1, boost::test_tools::tolerance(1e-12));
  // Each tile receives input rows and columns [0, 6) or [2, 8): 6x6 pixels x 2 channels.
  BOOST_REQUIRE(cost.tile_input_bytes.size() == 4u);
  for (int t = 0; t < 4; ++t) {
    BOOST_TEST(cost.tile_input_bytes[t] == 6u * 6 * 2 * sizeof(float));
    BOOST_TEST(cost.tile_output_bytes[t] == 4u * 4 * 4 * sizeof(float));
  }
  BOOST_TEST(cost.untiled_input_bytes == 8u * 8 * 2 * sizeof(float));
  BOOST_TEST(cost.untiled_output_bytes == 8u * 8 * 4 * sizeof(float));
}

BOOST_AUTO_TEST_CASE(tile_input_bytes_sum_over_inputs) {
  // Two run inputs of different channel counts added after a 3x3 convolution of the first.
  graph g;
  g.name = "two_inputs";
  int x = add_input(g, "x", {1, 6, 6, 2});
  int y = add_input(g, "y", {1, 6, 6, 3});
  int c = add_convolution(g, "c", x, 2, 3);
  int add = add_simple(g, "add", layer_kind::add, {c, y});
  g.outputs = {add};
  infer(g);
  tiled_run run = run_of(g, c, add);
  BOOST_TEST(run.inputs == (std::vector<int>{x, y}));
  auto tiles = plan(g, run, rows_grid({0, 2, 6}, 6));
  tiling_cost cost = cost_of_tiling(g, run, tiles);
  // Tile 0: x rows [0, 3), y rows [0, 2). Tile 1: x rows [1, 6), y rows [2, 6).
  CHECK_REGION(tiles[0].computed[x], rows_cols(0, 3, 0, 6));
  CHECK_REGION(tiles[0].computed[y], rows_cols(0, 2, 0, 6));
  CHECK_REGION(tiles[1].computed[x], rows_cols(1, 6, 0, 6));
  CHECK_REGION(tiles[1].computed[y], rows_cols(2, 6, 0, 6));
  BOOST_TEST(cost.tile_input_bytes.at(0) == (3u * 6 * 2 + 2u * 6 * 3) * sizeof(float));
  BOOST_TEST(cost.tile_input_bytes.at(1) == (5u * 6 * 2 + 4u * 6 * 3) * sizeof(float));
  BOOST_TEST(cost.tile_output_bytes.at(0) == 2u * 6 * 3 * sizeof(float));
  BOOST_TEST(cost.tile_output_bytes.at(1) == 4u * 6 * 3 * sizeof(float));
  BOOST_TEST(cost.untiled_input_bytes == (36u * 2 + 36u * 3) * sizeof(float));
}

BOOST_AUTO_TEST_CASE(overhead_grows_with_the_tile_count) {
  graph g = load("vgg16");
  tiled_run run = run_of(g, find(g, "features.0"), find(g, "features.16"));
  const tensor_shape& out = g.layers[run.output].output_shape;
  BOOST_REQUIRE(out.h == 28 && out.w == 28);
  double previous = -1;
  for (const auto& shape : std::vector<std::pair<int, int>>{{1, 1}, {2, 1}, {2, 2}, {4, 2}, {4, 4}}) {
    const int rows = shape.first, cols = shape.second;
    auto grid = tile_grid::uniform(rows, cols, out.h, out.w);
    BOOST_REQUIRE(grid.is_ok());
    tiling_cost cost = cost_of_tiling(g, run, plan(g, run, *grid));
    BOOST_TEST(cost.overhead() > previous, rows << "x" << cols << ": " << cost.overhead());
    previous = cost.overhead();
    size_t out_bytes = 0;
    for (size_t b : cost.tile_output_bytes) out_bytes += b;
    BOOST_TEST(out_bytes == cost.untiled_output_bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// Region copies

BOOST_AUTO_TEST_CASE(extract_and_insert_round_trip) {
  tensor whole = random_tensor({1, 7, 9, 3}, 42);
  region r = rows_cols(2, 5, 1, 8);
  tensor part = extract_region(whole, r);
  BOOST_REQUIRE(part.shape() == (tensor_shape{1, 3, 7, 3}));
  bool same = true;
  for (int h = 0; h < 3; ++h)
    for (int w = 0; w < 7; ++w)
      for (int c = 0; c < 3; ++c)
        same &= part.data()[(h * 7 + w) * 3 + c] == whole.data()[((h + 2) * 9 + (w + 1)) * 3 + c];
  BOOST_TEST(same);
  // Inserting into zeros writes the region and nothing else.
  tensor zeros(whole.shape());
  insert_region(zeros, r, part);
  bool outside_zero = true, inside_equal = true;
  for (int h = 0; h < 7; ++h)
    for (int w = 0; w < 9; ++w)
      for (int c = 0; c < 3; ++c) {
        size_t i = (size_t(h) * 9 + w) * 3 + c;
        bool inside = h >= 2 && h < 5 && w >= 1 && w < 8;
        if (inside)
          inside_equal &= zeros.data()[i] == whole.data()[i];
        else
          outside_zero &= zeros.data()[i] == 0.0f;
      }
  BOOST_TEST(inside_equal);
  BOOST_TEST(outside_zero);
  // The tiles of a grid reassemble the tensor bitwise.
  auto grid = tile_grid::uniform(3, 2, 7, 9);
  BOOST_REQUIRE(grid.is_ok());
  tensor rebuilt(whole.shape());
  for (int t = 0; t < grid->tiles(); ++t) insert_region(rebuilt, grid->tile(t), extract_region(whole, grid->tile(t)));
  BOOST_TEST(bitwise_equal(rebuilt, whole));
  // Batch > 1.
  tensor batch = random_tensor({2, 4, 4, 2}, 7);
  tensor b_part = extract_region(batch, rows_cols(1, 3, 2, 4));
  BOOST_REQUIRE(b_part.shape() == (tensor_shape{2, 2, 2, 2}));
  BOOST_TEST(b_part.data()[(((1 * 2 + 1) * 2) + 1) * 2 + 1] == batch.data()[(((1 * 4 + 2) * 4) + 3) * 2 + 1]);
  tensor b_back(batch.shape());
  insert_region(b_back, rows_cols(1, 3, 2, 4), b_part);
  BOOST_TEST(b_back.data()[(((1 * 4 + 2) * 4) + 3) * 2 + 1] == batch.data()[(((1 * 4 + 2) * 4) + 3) * 2 + 1]);
}
