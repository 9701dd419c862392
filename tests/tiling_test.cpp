// Vertical separation end to end: runs of the built-in models (and of an imported ONNX model) cut
// into tiles, each tile computed from its halo by the tile executor, reassembled and compared BIT
// FOR BIT with the untiled tensor the whole-graph executor computes. Runs start and end inside
// residual blocks and inception modules, grids are even and uneven; a wrong halo must break the
// equality, invalid tilings are rejected, operators are shared between tiles.
//
// The ONNX part reads resnet18 from the export directory in the environment variable
// D3_ONNX_EXPORT_DIR (ctest sets it and runs the exporter once as a fixture, as for
// onnx_models_test).
#define BOOST_TEST_MODULE tiling
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/operators.hpp"
#include "kernels/tile_executor.hpp"
#include "kernels/tiling.hpp"
#include "onnx/onnx_import.hpp"
#include "tests/test_graphs.hpp"

using namespace d3;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// A model with every tensor of one whole-graph run (the input included), computed once.
struct computed_model {
  graph g;
  std::map<std::string, tensor> tensors;
};

computed_model compute(graph g, uint64_t input_seed) {
  computed_model m;
  m.g = std::move(g);
  executor_options every_tensor;  // run_all below
  every_tensor.fuse_residual_adds = false;
  auto e = executor::create(m.g, {}, every_tensor);
  BOOST_TEST_REQUIRE(e.is_ok(), m.g.name << ": " << e.message());
  std::vector<tensor> inputs;
  for (int i : m.g.input_layers()) inputs.push_back(random_tensor(m.g.layers[size_t(i)].output_shape, input_seed + size_t(i)));
  std::vector<const tensor*> pointers;
  for (const tensor& t : inputs) pointers.push_back(&t);
  auto all = e.value()->run_all(pointers);
  BOOST_TEST_REQUIRE(all.is_ok(), m.g.name << ": " << all.message());
  m.tensors = std::move(all.value());
  for (size_t k = 0; k < inputs.size(); ++k) m.tensors[m.g.layers[size_t(m.g.input_layers()[k])].name] = inputs[k];
  return m;
}

const computed_model& builtin(const std::string& name) {
  static std::map<std::string, computed_model> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    auto g = builtin_model(name);
    BOOST_TEST_REQUIRE(g.is_ok(), g.message());
    it = cache.emplace(name, compute(std::move(g.value()), 17)).first;
  }
  return it->second;
}

int find_layer(const graph& g, const std::string& name) {
  int i = g.find(name);
  BOOST_TEST_REQUIRE(i >= 0, g.name << ": no layer named '" << name << "'");
  return i;
}

tiled_run make_run(const graph& g, const std::string& first, const std::string& last) {
  auto run = make_tiled_run(g, find_layer(g, first), find_layer(g, last));
  BOOST_TEST_REQUIRE(run.is_ok(), g.name << " " << first << " .. " << last << ": " << run.message());
  return std::move(run.value());
}

std::vector<const tensor*> run_inputs(const computed_model& m, const tiled_run& run) {
  std::vector<const tensor*> inputs;
  for (int in : run.inputs) inputs.push_back(&m.tensors.at(m.g.layers[size_t(in)].name));
  return inputs;
}

std::string grid_text(const tile_grid& grid) {
  std::ostringstream out;
  out << grid.rows() << "x" << grid.cols() << " (rows";
  for (int b : grid.row_bounds) out << " " << b;
  out << "; cols";
  for (int b : grid.col_bounds) out << " " << b;
  out << ")";
  return out.str();
}

// Which tiles differ from the untiled output, and by how many values (for failure messages).
std::string tile_mismatches(const tensor& actual, const tensor& expected, const std::vector<tile_geometry>& tiles) {
  if (actual.shape() != expected.shape()) return "shape " + actual.shape().to_string() + " vs " + expected.shape().to_string();
  std::ostringstream out;
  for (size_t t = 0; t < tiles.size(); ++t) {
    tensor a = extract_region(actual, tiles[t].output), e = extract_region(expected, tiles[t].output);
    size_t differ = 0;
    for (size_t k = 0; k < a.elements(); ++k) differ += std::memcmp(a.data() + k, e.data() + k, sizeof(float)) != 0;
    if (differ > 0) out << " tile " << t << " (" << tiles[t].output << "): " << differ << " of " << a.elements() << " values differ;";
  }
  return out.str();
}

struct tiled_result {
  bool equal = false;
  int operators = 0;
  double create_seconds = 0, run_seconds = 0, overhead = 0;
};

// Plans `grid` over `run`, runs every tile through one tile executor and compares the reassembled
// output with the untiled tensor.
// With `require_exact` false a difference is only reported in the result (for known failures).
tiled_result check_tiling(const computed_model& m, const tiled_run& run, const tile_grid& grid, int threads = 1,
                          bool require_exact = true) {
  const graph& g = m.g;
  const std::string what = g.name + " run " + g.layers[size_t(run.layers.front())].name + " .. " +
                           g.layers[size_t(run.output)].name + ", grid " + grid_text(grid);
  auto tiles = plan_tiles(g, run, grid);
  BOOST_TEST_REQUIRE(tiles.is_ok(), what << ": " << tiles.message());
  tiled_result r;
  r.overhead = cost_of_tiling(g, run, tiles.value()).overhead();
  auto started = std::chrono::steady_clock::now();
  executor_options options;
  options.threads = threads;
  auto e = tile_executor::create(g, run, tiles.value(), {}, options);
  BOOST_TEST_REQUIRE(e.is_ok(), what << ": " << e.message());
  r.create_seconds = seconds_since(started);
  r.operators = e.value()->operator_count();
  BOOST_TEST(e.value()->tile_count() == grid.tiles(), what);
  started = std::chrono::steady_clock::now();
  auto out = e.value()->run(run_inputs(m, run));
  r.run_seconds = seconds_since(started);
  BOOST_TEST_REQUIRE(out.is_ok(), what << ": " << out.message());
  const tensor& expected = m.tensors.at(g.layers[size_t(run.output)].name);
  r.equal = bitwise_equal(out.value(), expected);
  if (require_exact)
    BOOST_CHECK_MESSAGE(r.equal, what << ": tiled output differs from the untiled run:"
                                    << tile_mismatches(out.value(), expected, tiles.value()));
  if (!r.equal && !require_exact)
    BOOST_TEST_MESSAGE(what << ": differs:" << tile_mismatches(out.value(), expected, tiles.value()));
  BOOST_TEST_MESSAGE(what << ": " << (r.equal ? "bit-exact" : "DIFFERS") << ", " << grid.tiles() << " tiles, "
                          << r.operators << " operators for " << run.layers.size() << " layers, halo overhead "
                          << int(r.overhead * 1000) / 10.0 << "%, create " << int(r.create_seconds * 1e4) / 10.0
                          << " ms, run " << int(r.run_seconds * 1e4) / 10.0 << " ms");
  return r;
}

// The grids every run is cut into: 1x2, 2x2, 3x1, 4x4 and an uneven one.
std::vector<tile_grid> standard_grids(const tensor_shape& out) {
  std::vector<tile_grid> grids;
  for (auto [rows, cols] : std::vector<std::pair<int, int>>{{1, 2}, {2, 2}, {3, 1}, {4, 4}}) {
    auto grid = tile_grid::uniform(rows, cols, out.h, out.w);
    BOOST_TEST_REQUIRE(grid.is_ok(), grid.message());
    grids.push_back(grid.value());
  }
  auto uneven = tile_grid::proportional({1, 2}, {3, 1}, out.h, out.w);
  BOOST_TEST_REQUIRE(uneven.is_ok(), uneven.message());
  grids.push_back(uneven.value());
  return grids;
}

struct run_case {
  std::string model, first, last;
  size_t inputs;  // tensors entering the run
};

void check_runs(const std::vector<run_case>& cases) {
  for (const run_case& c : cases) {
    const computed_model& m = builtin(c.model);
    tiled_run run = make_run(m.g, c.first, c.last);
    BOOST_TEST(run.inputs.size() == c.inputs, c.model << " " << c.first << " .. " << c.last);
    for (const tile_grid& grid : standard_grids(m.g.layers[size_t(run.output)].output_shape)) check_tiling(m, run, grid);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(chains_are_bit_exact) {
  check_runs({
      {"vgg16", "features.0", "features.16", 1},   // conv1_1 .. pool3
      {"vgg16", "features.17", "features.30", 1},  // conv4_1 .. pool5 (14x14 -> 7x7)
      {"alexnet", "features.0", "features.12", 1}, // 11x11 stride 4, pools without padding
      {"alexnet", "features.3", "features.10", 1}, // 5x5 pad 2 .. 3x3, ending on a convolution
  });
}

BOOST_AUTO_TEST_CASE(residual_blocks_are_bit_exact) {
  check_runs({
      {"resnet18", "conv1", "layer1.0.add", 1},             // 7x7 stride 2, padded max pool, a block
      {"resnet18", "layer1.0.conv1", "layer2.1.add", 1},    // through a downsampling block
      {"resnet18", "layer2.0.conv2", "layer2.1.add", 2},    // starting inside a block: two inputs
      {"resnet18", "layer2.0.conv2", "layer3.0.add", 2},
      {"mobilenet_v2", "features.0.0", "features.3.add", 1},
      {"mobilenet_v2", "features.2.conv.0.0", "features.6.add", 1},  // three inverted residuals
      {"mobilenet_v2", "features.3.conv.1.0", "features.5.add", 2},  // starting inside one
  });
}

BOOST_AUTO_TEST_CASE(inception_modules_are_bit_exact) {
  check_runs({
      {"googlenet", "inception3a.branch1.conv", "inception3b.concat", 1},
      {"googlenet", "inception3a.branch3.0.conv", "inception3a.concat", 3},  // inside a module
      {"googlenet", "conv1.conv", "maxpool2", 1},                   // ceil_mode max pools
      {"googlenet", "inception3b.branch1.conv", "inception4a.concat", 1},  // through maxpool3 (ceil_mode)
  });
}

// A node runs one tile: an executor with only that tile gets its input regions and returns its
// output region, equal to that region of the untiled output.
BOOST_AUTO_TEST_CASE(single_tiles_run_alone) {
  const computed_model& m = builtin("resnet18");
  tiled_run run = make_run(m.g, "layer1.0.conv1", "layer2.1.add");
  const tensor_shape out = m.g.layers[size_t(run.output)].output_shape;
  auto grid = tile_grid::proportional({2, 1, 1}, {1, 1}, out.h, out.w);
  BOOST_TEST_REQUIRE(grid.is_ok());
  auto tiles = plan_tiles(m.g, run, grid.value());
  BOOST_TEST_REQUIRE(tiles.is_ok(), tiles.message());
  const tensor& expected = m.tensors.at(m.g.layers[size_t(run.output)].name);
  int full_operators = 0;
  {
    auto all = tile_executor::create(m.g, run, tiles.value());
    BOOST_TEST_REQUIRE(all.is_ok(), all.message());
    full_operators = all.value()->operator_count();
  }
  for (int t = 0; t < grid->tiles(); ++t) {
    auto e = tile_executor::create(m.g, run, tiles.value(), {t});
    BOOST_TEST_REQUIRE(e.is_ok(), e.message());
    BOOST_TEST(e.value()->operator_count() <= full_operators);
    BOOST_TEST(e.value()->operator_count() >= int(run.layers.size()));
    BOOST_TEST(e.value()->input_names().size() == run.inputs.size());
    std::vector<tensor> regions;
    for (size_t i = 0; i < run.inputs.size(); ++i) {
      BOOST_TEST(e.value()->input_names()[i] == m.g.layers[size_t(run.inputs[i])].name);
      regions.push_back(extract_region(m.tensors.at(e.value()->input_names()[i]),
                                       e.value()->geometry(t).computed[size_t(run.inputs[i])]));
    }
    std::vector<const tensor*> pointers;
    for (const tensor& r : regions) pointers.push_back(&r);
    for (int repeat = 0; repeat < 2; ++repeat) {  // the second run reuses the bound operators
      auto part = e.value()->run_tile(t, pointers);
      BOOST_TEST_REQUIRE(part.is_ok(), part.message());
      BOOST_TEST(bitwise_equal(part.value(), extract_region(expected, tiles.value()[size_t(t)].output)),
                 "tile " << t << " run " << repeat);
    }
    // Other tiles are not this executor's; run() needs them all; a wrongly sized region is named.
    const int other = (t + 1) % grid->tiles();
    auto not_mine = e.value()->run_tile(other, pointers);
    BOOST_TEST(!not_mine.is_ok());
    auto whole = e.value()->run(run_inputs(m, run));
    BOOST_TEST(!whole.is_ok());
    BOOST_TEST(whole.message().find("run_tile") != std::string::npos, whole.message());
    tensor wrong({1, 3, 3, regions[0].shape().c});
    auto bad = e.value()->run_tile(t, {&wrong});
    BOOST_TEST_REQUIRE(!bad.is_ok());
    BOOST_TEST(bad.message().find("'" + e.value()->input_names()[0] + "'") != std::string::npos, bad.message());
  }
  // Tiles run in any order, repeatedly, on one executor (operators re-bound per tile).
  auto e = tile_executor::create(m.g, run, tiles.value());
  BOOST_TEST_REQUIRE(e.is_ok());
  for (int t : {2, 0, 2, 1, 5, 3, 4, 0}) {
    std::vector<tensor> regions;
    std::vector<const tensor*> pointers;
    for (int in : run.inputs)
      regions.push_back(extract_region(m.tensors.at(m.g.layers[size_t(in)].name), tiles.value()[size_t(t)].computed[size_t(in)]));
    for (const tensor& r : regions) pointers.push_back(&r);
    auto part = e.value()->run_tile(t, pointers);
    BOOST_TEST_REQUIRE(part.is_ok(), part.message());
    BOOST_TEST(bitwise_equal(part.value(), extract_region(expected, tiles.value()[size_t(t)].output)), "tile " << t);
  }
}

// A halo one row short, padded with zeros inside the image instead, changes the output: the
// exactness checks above can fail.
BOOST_AUTO_TEST_CASE(a_wrong_halo_breaks_equality) {
  const computed_model& m = builtin("vgg16");
  tiled_run run = make_run(m.g, "features.0", "features.4");
  const tensor_shape out = m.g.layers[size_t(run.output)].output_shape;
  auto grid = tile_grid::uniform(2, 1, out.h, out.w);
  BOOST_TEST_REQUIRE(grid.is_ok());
  auto planned = plan_tiles(m.g, run, grid.value());
  BOOST_TEST_REQUIRE(planned.is_ok(), planned.message());
  std::vector<tile_geometry> tiles = planned.value();
  const int conv = find_layer(m.g, "features.0"), input = run.inputs.at(0);
  tile_geometry& bottom = tiles[1];
  BOOST_TEST_REQUIRE(bottom.layer_padding[size_t(conv)].top == 0);  // an inner edge: a real halo row
  BOOST_TEST_REQUIRE(bottom.computed[size_t(input)].row_begin > 0);
  // The tile receives one input row less and pads a zero row there instead.
  bottom.computed[size_t(input)].row_begin += 1;
  bottom.reads[size_t(conv)][0].row_begin += 1;
  bottom.layer_padding[size_t(conv)].top = 1;
  auto e = tile_executor::create(m.g, run, tiles);
  BOOST_TEST_REQUIRE(e.is_ok(), e.message());
  auto wrong = e.value()->run(run_inputs(m, run));
  BOOST_TEST_REQUIRE(wrong.is_ok(), wrong.message());
  const tensor& expected = m.tensors.at(m.g.layers[size_t(run.output)].name);
  BOOST_TEST(!bitwise_equal(wrong.value(), expected));
  const std::string where = tile_mismatches(wrong.value(), expected, tiles);
  BOOST_TEST(where.find("tile 0") == std::string::npos, where);  // the untouched tile is still exact
  BOOST_TEST(where.find("tile 1") != std::string::npos, where);
  BOOST_TEST_MESSAGE("wrong halo:" << where);
  // The correct plan on the same executor setup is exact (the difference is the halo alone).
  auto right = tile_executor::create(m.g, run, planned.value());
  BOOST_TEST_REQUIRE(right.is_ok());
  auto exact = right.value()->run(run_inputs(m, run));
  BOOST_TEST_REQUIRE(exact.is_ok());
  BOOST_TEST(bitwise_equal(exact.value(), expected));
}

// Geometry whose sizes do not fit a layer is rejected at create (it would overrun a buffer).
BOOST_AUTO_TEST_CASE(inconsistent_geometry_is_rejected) {
  const computed_model& m = builtin("vgg16");
  tiled_run run = make_run(m.g, "features.0", "features.4");
  auto grid = tile_grid::uniform(2, 2, 112, 112);
  BOOST_TEST_REQUIRE(grid.is_ok());
  auto planned = plan_tiles(m.g, run, grid.value());
  BOOST_TEST_REQUIRE(planned.is_ok());
  std::vector<tile_geometry> tiles = planned.value();
  const int conv = find_layer(m.g, "features.2");
  tiles[3].reads[size_t(conv)][0].row_begin += 1;  // one row short, without padding for it
  auto e = tile_executor::create(m.g, run, tiles);
  BOOST_TEST_REQUIRE(!e.is_ok());
  BOOST_TEST(e.message().find("tile 3") != std::string::npos, e.message());
  BOOST_TEST(e.message().find("'features.2'") != std::string::npos, e.message());
  auto out_of_range = tile_executor::create(m.g, run, planned.value(), {4});
  BOOST_TEST(!out_of_range.is_ok());
}

BOOST_AUTO_TEST_CASE(invalid_tilings_are_rejected) {
  auto too_many = tile_grid::uniform(10, 1, 7, 7);
  BOOST_TEST_REQUIRE(!too_many.is_ok());
  BOOST_TEST_MESSAGE("10x1 tiles of 7x7: " << too_many.message());
  BOOST_TEST(too_many.message().find("10") != std::string::npos, too_many.message());

  const graph& alexnet = builtin("alexnet").g;
  auto across = make_tiled_run(alexnet, find_layer(alexnet, "features.10"), find_layer(alexnet, "classifier.1"));
  BOOST_TEST_REQUIRE(!across.is_ok());
  BOOST_TEST_MESSAGE("alexnet features.10 .. classifier.1: " << across.message());
  BOOST_TEST(across.message().find("not spatially local") != std::string::npos, across.message());
  BOOST_TEST(across.message().find("'flatten'") != std::string::npos, across.message());
  auto fc = make_tiled_run(alexnet, find_layer(alexnet, "classifier.1"), find_layer(alexnet, "classifier.4"));
  BOOST_TEST_REQUIRE(!fc.is_ok());
  BOOST_TEST(fc.message().find("'classifier.1'") != std::string::npos, fc.message());
  BOOST_TEST(fc.message().find("fully_connected") != std::string::npos, fc.message());

  // A run ending inside a residual block leaves a branch behind.
  const graph& resnet = builtin("resnet18").g;
  auto branch = make_tiled_run(resnet, find_layer(resnet, "layer1.0.conv1"), find_layer(resnet, "layer1.1.conv2"));
  BOOST_TEST_REQUIRE(!branch.is_ok());
  BOOST_TEST(branch.message().find("'layer1.0.add'") != std::string::npos, branch.message());
}

// One operator per layer and padding: a 4x4 grid has at most 3 x 3 distinct paddings per layer
// (top/middle/bottom x left/middle/right), not 16.
BOOST_AUTO_TEST_CASE(operators_are_shared_between_tiles) {
  for (const auto& [model, first, last] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"vgg16", "features.0", "features.16"}, {"resnet18", "layer1.0.conv1", "layer2.1.add"},
           {"googlenet", "inception3a.branch1.conv", "inception3b.concat"}}) {
    const computed_model& m = builtin(model);
    tiled_run run = make_run(m.g, first, last);
    const tensor_shape out = m.g.layers[size_t(run.output)].output_shape;
    auto grid = tile_grid::uniform(4, 4, out.h, out.w);
    BOOST_TEST_REQUIRE(grid.is_ok());
    tiled_result r = check_tiling(m, run, grid.value());
    BOOST_TEST(r.operators < 16 * int(run.layers.size()), model);
    BOOST_TEST(r.operators <= 9 * int(run.layers.size()), model);
    BOOST_TEST(r.operators >= int(run.layers.size()), model);
  }
}

BOOST_AUTO_TEST_CASE(two_threads_compute_the_same_bits) {
  for (const auto& [model, first, last] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"resnet18", "layer1.0.conv1", "layer2.1.add"}, {"vgg16", "features.17", "features.30"},
           {"mobilenet_v2", "features.2.conv.0.0", "features.6.add"}}) {
    const computed_model& m = builtin(model);
    tiled_run run = make_run(m.g, first, last);
    const tensor_shape out = m.g.layers[size_t(run.output)].output_shape;
    auto grid = tile_grid::proportional({1, 3}, {2, 1, 1}, out.h, out.w);
    BOOST_TEST_REQUIRE(grid.is_ok());
    BOOST_TEST(check_tiling(m, run, grid.value(), 2).equal, model);
  }
}

namespace {

layer average_pool(const std::string& name, int input, int kernel, int stride, int pad, bool count_include_pad) {
  layer l;
  l.name = name;
  l.kind = layer_kind::average_pool;
  l.inputs = {input};
  l.window.kernel_h = l.window.kernel_w = kernel;
  l.window.stride_h = l.window.stride_w = stride;
  l.window.pad = {pad, pad, pad, pad};
  l.window.count_include_pad = count_include_pad;
  return l;
}

}  // namespace

// The layer kinds the built-in models lack: average pooling (padding not counted), a pad layer,
// a dilated convolution, sigmoid, channel shuffle and slices, a product with a per-channel operand from outside the run
// (a 1x1 region), a concat, a ceil_mode max pool on an odd size.
BOOST_AUTO_TEST_CASE(other_layer_kinds_are_bit_exact) {
  using namespace d3::testing;
  graph g;
  g.name = "kinds";
  const int x = add_input(g, "x", {1, 23, 21, 8});
  const int scale = add_input(g, "scale", {1, 1, 1, 8});
  const int c1 = add_convolution(g, "c1", x, 8, 16);
  const int a1 = add_layer(g, average_pool("avg_5x5", c1, 5, 1, 2, false));
  layer pad;
  pad.name = "pad";
  pad.kind = layer_kind::pad;
  pad.inputs = {a1};
  pad.window.pad = {2, 1, 0, 1};
  const int p = add_layer(g, pad);
  const int c2 = add_convolution(g, "c2", p, 16, 16, 3, 1, 0);
  g.layers[size_t(c2)].window.dilation_h = 2;  // a dilated window: 5x5 rows of halo, 3x3 columns
  const int a2 = add_layer(g, average_pool("avg_3x3_s2", c2, 3, 2, 1, false));
  const int sig = add_simple(g, "sigmoid", layer_kind::sigmoid, {a2});
  layer shuffle;
  shuffle.name = "shuffle";
  shuffle.kind = layer_kind::channel_shuffle;
  shuffle.inputs = {sig};
  shuffle.groups = 2;
  const int sh = add_layer(g, shuffle);
  layer slice;
  slice.name = "low";
  slice.kind = layer_kind::channel_slice;
  slice.inputs = {sh};
  slice.channel_begin = 0;
  slice.channel_end = 8;
  const int low = add_layer(g, slice);
  slice.name = "high";
  slice.channel_begin = 8;
  slice.channel_end = 16;
  const int high = add_layer(g, slice);
  const int product = add_simple(g, "product", layer_kind::multiply, {high, scale});
  const int cat = add_simple(g, "concat", layer_kind::concat, {low, product});
  layer pool;
  pool.name = "pool";
  pool.kind = layer_kind::max_pool;
  pool.inputs = {cat};
  pool.window.kernel_h = pool.window.kernel_w = 2;
  pool.window.stride_h = pool.window.stride_w = 2;
  pool.window.ceil_mode = true;
  const int last = add_layer(g, pool);
  g.outputs = {last};
  BOOST_TEST_REQUIRE(prepare_for_inference(g).is_ok());
  const computed_model m = compute(std::move(g), 3);
  BOOST_TEST_MESSAGE("kinds: output " << m.g.layers[size_t(last)].output_shape);
  auto run = make_tiled_run(m.g, c1, last);
  BOOST_TEST_REQUIRE(run.is_ok(), run.message());
  BOOST_TEST(run->inputs.size() == 2u);
  const tensor_shape out = m.g.layers[size_t(last)].output_shape;
  for (const tile_grid& grid : standard_grids(out)) check_tiling(m, run.value(), grid);
  auto odd = tile_grid::proportional({1, 1, 1}, {2, 3}, out.h, out.w);
  BOOST_TEST_REQUIRE(odd.is_ok());
  check_tiling(m, run.value(), odd.value(), 2);
}

// An imported model (torchvision's resnet18 exported to ONNX): its node names, its weights.
BOOST_AUTO_TEST_CASE(imported_resnet18_is_bit_exact) {
  const char* dir = std::getenv("D3_ONNX_EXPORT_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr,
                     "D3_ONNX_EXPORT_DIR is not set (run through ctest, or export the models with "
                     "tools/export_models.py --out DIR and set it to DIR)");
  const std::string path = std::string(dir) + "/resnet18.onnx";
  BOOST_TEST_REQUIRE(bool(std::ifstream(path)), "cannot open " << path << " (run tools/export_models.py)");
  auto g = import_onnx(path);
  BOOST_TEST_REQUIRE(g.is_ok(), g.message());
  const computed_model m = compute(std::move(g.value()), 23);
  for (const auto& [first, last, inputs] : std::vector<std::tuple<std::string, std::string, size_t>>{
           {"/conv1/Conv", "/layer1/layer1.1/Add", 1},
           {"/layer1/layer1.0/conv1/Conv", "/layer2/layer2.1/Add", 1},
           {"/layer2/layer2.0/conv2/Conv", "/layer3/layer3.0/Add", 2}}) {
    tiled_run run = make_run(m.g, first, last);
    BOOST_TEST(run.inputs.size() == inputs, first);
    for (const tile_grid& grid : standard_grids(m.g.layers[size_t(run.output)].output_shape)) check_tiling(m, run, grid);
  }
}

// Families beyond the built-in models: DenseNet's pre-activation batch norms (per-channel affine
// layers after a concat), MobileNetV3's HardSwish (affine HardSigmoid gate times its input) and
// ConvNeXt's channels-last islands (layer norm, 1x1 convolutions, GELU) between 7x7 depthwise ones.
BOOST_AUTO_TEST_CASE(imported_model_families_tile_bit_exactly) {
  const char* dir = std::getenv("D3_ONNX_EXPORT_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr, "D3_ONNX_EXPORT_DIR is not set (run through ctest)");
  struct case_t {
    std::string model, first, last;
  };
  const std::vector<case_t> cases = {
      {"densenet121", "/features/denseblock1/denselayer1/Concat", "/features/transition1/pool/AveragePool"},
      {"mobilenet_v3_small", "/features/features.0/features.0.0/Conv",
       "/features/features.1/block/block.0/block.0.0/Conv"},
      {"mobilenet_v3_small", "/features/features.2/block/block.0/block.0.0/Conv",
       "/features/features.4/block/block.1/block.1.2/Mul"},
      {"convnext_tiny", "/features/features.0/features.0.0/Conv", "/features/features.2/features.2.1/Conv"},
      // Swin: the patch embedding (convolution, layer norm over a channels-last map), and a
      // block's MLP with its residual add (layer norm, 1x1 convolutions, GELU): per-pixel runs
      // between the windowed attentions, which do not tile.
      {"swin_t", "/features/features.0/features.0.0/Conv", "/features/features.0/features.0.2/Div"},
      {"swin_t", "/features/features.1/features.1.1/norm2/Div", "/features/features.1/features.1.1/Add_1"},
      // MaxViT: the stem (convolutions, GELU on an NCHW map).
      {"maxvit_t", "/stem/stem.0/stem.0.0/Conv", "/stem/stem.1/stem.1.0/Conv"}};
  std::map<std::string, computed_model> models;
  for (const case_t& c : cases) {
    auto it = models.find(c.model);
    if (it == models.end()) {
      auto g = import_onnx(std::string(dir) + "/" + c.model + ".onnx");
      BOOST_TEST_REQUIRE(g.is_ok(), g.message());
      it = models.emplace(c.model, compute(std::move(g.value()), 29)).first;
    }
    const computed_model& m = it->second;
    tiled_run run = make_run(m.g, c.first, c.last);
    int special = 0;  // the run holds the layers this test is about
    for (int i : run.layers) {
      const layer& l = m.g.layers[size_t(i)];
      special += (l.kind == layer_kind::convolution && l.window.kernel_h == 1 && l.groups == l.output_channels &&
                  l.groups > 1) ||
                 l.kind == layer_kind::layer_norm || l.kind == layer_kind::gelu || l.kind == layer_kind::hardswish;
    }
    BOOST_TEST(special >= 1, c.model << " " << c.first << ": no affine, hardswish, layer norm or GELU layer in the run");
    for (const tile_grid& grid : standard_grids(m.g.layers[size_t(run.output)].output_shape)) check_tiling(m, run, grid);
  }
}

// Average pooling that counts its padding (PyTorch's default count_include_pad=True, e.g.
// inception_v3's branch pools) with padding: the untiled layer runs on the native averaging loop
// (XNNPACK cannot count padding), and a tile inside the image has no padding, so it would get
// XNNPACK's average pooling, which rounds differently (26 of 128 values of the middle tile of a 3x3
// grid differed). The tile executor therefore keeps the untiled layer's kernel
// (operator_options::native_average_pool).
BOOST_AUTO_TEST_CASE(counted_average_pool_padding_is_bit_exact) {
  using namespace d3::testing;
  graph g;
  g.name = "counted";
  const int x = add_input(g, "x", {1, 12, 12, 8});
  const int c = add_convolution(g, "c", x, 8, 16);
  const int a = add_layer(g, average_pool("avg_counted", c, 3, 1, 1, true));
  g.outputs = {a};
  BOOST_TEST_REQUIRE(prepare_for_inference(g).is_ok());
  const computed_model m = compute(std::move(g), 9);
  auto run = make_tiled_run(m.g, c, a);
  BOOST_TEST_REQUIRE(run.is_ok(), run.message());
  bool exact = true;
  for (const tile_grid& grid : standard_grids(m.g.layers[size_t(a)].output_shape))
    exact &= check_tiling(m, run.value(), grid, 1, false).equal;
  BOOST_TEST(exact, "tiles of an average pool counting its padding differ from the untiled layer");
}

// reshape(): an operator created for one input size runs another size exactly as an operator
// created for that size does (what lets tiles of different sizes share operators), and rejects
// shapes it cannot take.
BOOST_AUTO_TEST_CASE(operators_reshape_to_other_sizes) {
  using namespace d3::testing;
  auto make = [](int h, int w) {
    graph g;
    const int x = add_input(g, "x", {1, h, w, 64});
    const int skip = add_input(g, "skip", {1, 1, 1, 128});
    // 3x3x64 -> 128: 295 KB of weights, split into output-channel blocks on one thread.
    const int conv = add_convolution(g, "conv", x, 64, 128);
    const int sum = add_simple(g, "sum", layer_kind::add, {conv, skip});
    layer pool;
    pool.name = "pool";
    pool.kind = layer_kind::max_pool;
    pool.inputs = {sum};
    pool.window.kernel_h = pool.window.kernel_w = 3;
    pool.window.stride_h = pool.window.stride_w = 2;
    pool.window.pad = {1, 1, 1, 1};
    const int p = add_layer(g, pool);
    layer pad;
    pad.name = "pad";
    pad.kind = layer_kind::pad;
    pad.inputs = {p};
    pad.window.pad = {1, 0, 2, 1};
    const int padded = add_layer(g, pad);
    const int avg = add_layer(g, average_pool("avg", padded, 3, 1, 1, true));  // the native loop
    const int cat = add_simple(g, "cat", layer_kind::concat, {avg, padded});
    g.outputs = {cat};
    BOOST_TEST_REQUIRE(infer_shapes(g).is_ok());
    return g;
  };
  const graph big = make(10, 12), small = make(7, 9);
  std::map<std::string, tensor> values;
  for (const layer& l : small.layers) {
    if (l.kind != layer_kind::input) continue;
    values[l.name] = random_tensor(l.output_shape, std::hash<std::string>{}(l.name));
  }
  for (size_t i = 0; i < small.layers.size(); ++i) {
    const layer& l = small.layers[i];
    if (l.kind == layer_kind::input) continue;
    std::vector<tensor_shape> big_shapes, small_shapes;
    std::vector<const float*> pointers;
    for (int in : l.inputs) {
      big_shapes.push_back(big.layers[size_t(in)].output_shape);
      small_shapes.push_back(small.layers[size_t(in)].output_shape);
      pointers.push_back(values.at(small.layers[size_t(in)].name).data());
    }
    auto fresh = create_layer_operator(l, small_shapes);
    auto reused = create_layer_operator(big.layers[i], big_shapes);
    BOOST_TEST_REQUIRE(fresh.is_ok(), fresh.message());
    BOOST_TEST_REQUIRE(reused.is_ok(), reused.message());
    tensor expected(l.output_shape), actual(l.output_shape);
    BOOST_TEST_REQUIRE(fresh.value()->setup(pointers, expected.data(), nullptr).is_ok());
    BOOST_TEST_REQUIRE(fresh.value()->run(nullptr).is_ok());
    // Wrong shapes first: rejected, naming the layer, and the operator still usable.
    tensor_shape taller = l.output_shape;
    taller.h += 1;
    status wrong = reused.value()->reshape(small_shapes, taller);
    BOOST_TEST(!wrong.is_ok(), l.name);
    BOOST_TEST(wrong.message().find("'" + l.name + "'") != std::string::npos, wrong.message());
    std::vector<tensor_shape> other_channels = small_shapes;
    other_channels[0].c += 1;
    BOOST_TEST(!reused.value()->reshape(other_channels, l.output_shape).is_ok(), l.name);
    BOOST_TEST_REQUIRE(reused.value()->reshape(small_shapes, l.output_shape).is_ok(), l.name);
    BOOST_TEST_REQUIRE(reused.value()->setup(pointers, actual.data(), nullptr).is_ok());
    BOOST_TEST_REQUIRE(reused.value()->run(nullptr).is_ok());
    BOOST_TEST(bitwise_equal(actual, expected), l.name << " (" << l.kind << ")");
    values[l.name] = expected;
  }
}
