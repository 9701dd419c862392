#define BOOST_TEST_MODULE graph
#include <boost/test/unit_test.hpp>

#include <algorithm>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/reference.hpp"
#include "tests/test_graphs.hpp"

using namespace d3;
using namespace d3::testing;

BOOST_AUTO_TEST_CASE(window_output_size_follows_pytorch) {
  // conv 3x3 pad 1 stride 1 keeps the size; stride 2 halves it (rounding down).
  BOOST_TEST(window_output_size(56, 3, 1, 1, 1, 1, false) == 56);
  BOOST_TEST(window_output_size(57, 3, 2, 1, 1, 1, false) == 29);
  // dilation 2 widens a 3-tap window to 5.
  BOOST_TEST(window_output_size(10, 3, 1, 2, 0, 0, false) == 6);
  // GoogLeNet's max pools (3x3 stride 2, ceil_mode): 112 -> 56, 56 -> 28, 28 -> 14; 2x2/2 14 -> 7.
  BOOST_TEST(window_output_size(112, 3, 2, 1, 0, 0, true) == 56);
  BOOST_TEST(window_output_size(28, 3, 2, 1, 0, 0, true) == 14);
  BOOST_TEST(window_output_size(14, 2, 2, 1, 0, 0, true) == 7);
  // floor mode on the same input gives one less.
  BOOST_TEST(window_output_size(112, 3, 2, 1, 0, 0, false) == 55);
  // PyTorch drops a last ceil-mode window that would start in the trailing padding:
  // MaxPool2d(2, 2, padding=1, ceil_mode=True) on 5 rows gives 3, not 4.
  BOOST_TEST(window_output_size(5, 2, 2, 1, 1, 1, true) == 3);
  BOOST_TEST(ceil_mode_extra_padding(112, 56, 3, 2, 1, 0, 0) == 1);
  BOOST_TEST(ceil_mode_extra_padding(56, 56, 3, 1, 1, 1, 1) == 0);
  // a window larger than the padded input does not fit.
  BOOST_TEST(window_output_size(2, 5, 1, 1, 1, 1, false) == 0);
}

BOOST_AUTO_TEST_CASE(shapes_of_a_small_network) {
  graph g;
  g.name = "small";
  int in = add_input(g, "input", {1, 17, 13, 3});
  int c1 = add_convolution(g, "conv1", in, 3, 8, 3, 2, 1);
  layer& conv1 = g.layers[c1];
  conv1.window.pad = {2, 0, 1, 3};  // top, left, bottom, right
  int r1 = add_relu(g, "relu1", c1);
  layer pool;
  pool.name = "pool";
  pool.kind = layer_kind::max_pool;
  pool.inputs = {r1};
  pool.window.kernel_h = pool.window.kernel_w = 3;
  pool.window.stride_h = pool.window.stride_w = 2;
  pool.window.ceil_mode = true;
  int p = add_layer(g, pool);
  int f = add_simple(g, "flatten", layer_kind::flatten, {p});
  g.outputs = {f};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  // rows: (17 + 2 + 1 - 3) / 2 + 1 = 9; columns: (13 + 0 + 3 - 3) / 2 + 1 = 7
  BOOST_TEST(g.layers[c1].output_shape == (tensor_shape{1, 9, 7, 8}));
  // ceil mode: rows ceil((9 - 3) / 2) + 1 = 4; columns ceil((7 - 3) / 2) + 1 = 3
  BOOST_TEST(g.layers[p].output_shape == (tensor_shape{1, 4, 3, 8}));
  BOOST_TEST(g.layers[f].output_shape == (tensor_shape{1, 1, 1, 96}));
  // costs: 2 FLOP per multiply-accumulate, 3*3*3 per output element
  layer_cost cost = cost_of(g, c1);
  BOOST_TEST(cost.flops == 2.0 * 9 * 7 * 8 * 27);
  BOOST_TEST(cost.weight_bytes == (8 * 27 + 8) * sizeof(float));
  BOOST_TEST(cost.output_bytes == size_t(9 * 7 * 8) * sizeof(float));
}

BOOST_AUTO_TEST_CASE(topological_order_of_shuffled_layers) {
  graph g;
  g.name = "shuffled";
  // Layers listed consumers first: add(relu(conv(x)), x).
  g.layers.resize(4);
  g.layers[0].name = "add";
  g.layers[0].kind = layer_kind::add;
  g.layers[0].inputs = {3, 1};
  g.layers[1].name = "relu";
  g.layers[1].kind = layer_kind::clamp;
  g.layers[1].act = activation::relu();
  g.layers[1].inputs = {2};
  g.layers[2].name = "clamp";
  g.layers[2].kind = layer_kind::clamp;
  g.layers[2].inputs = {3};
  g.layers[3].name = "x";
  g.layers[3].kind = layer_kind::input;
  g.layers[3].input_shape = {1, 4, 4, 2};
  g.outputs = {0};
  auto order = topological_order(g);
  BOOST_REQUIRE(order.is_ok());
  BOOST_TEST((*order == std::vector<int>{3, 2, 1, 0}));
  BOOST_REQUIRE(infer_shapes(g).is_ok());
  BOOST_TEST(g.layers[0].output_shape == (tensor_shape{1, 4, 4, 2}));
}

BOOST_AUTO_TEST_CASE(cycles_and_bad_edges_are_rejected) {
  graph g;
  g.name = "cyclic";
  int in = add_input(g, "input", {1, 4, 4, 2});
  int a = add_simple(g, "a", layer_kind::add, {in, 3});  // reads c, defined below
  int b = add_relu(g, "b", a);
  int c = add_relu(g, "c", b);  // a -> b -> c -> a
  BOOST_REQUIRE(c == 3);
  g.outputs = {c};
  status s = infer_shapes(g);
  BOOST_TEST(!s.is_ok());
  BOOST_TEST(s.message().find("cycle") != std::string::npos, s.message());

  graph h;
  h.name = "dangling";
  add_input(h, "input", {1, 4, 4, 2});
  add_simple(h, "relu", layer_kind::clamp, {7});
  h.outputs = {1};
  s = infer_shapes(h);
  BOOST_TEST(!s.is_ok());
  BOOST_TEST(s.message().find("'relu'") != std::string::npos, s.message());
  BOOST_TEST(s.message().find("out of range") != std::string::npos, s.message());
}

BOOST_AUTO_TEST_CASE(bad_layers_are_named_in_errors) {
  auto expect_error = [](graph g, const std::string& layer_name, const std::string& word) {
    status s = infer_shapes(g);
    BOOST_TEST(!s.is_ok());
    BOOST_TEST(s.message().find("'" + layer_name + "'") != std::string::npos, s.message());
    BOOST_TEST(s.message().find(word) != std::string::npos, s.message());
  };
  graph g;
  g.name = "bad";
  int in = add_input(g, "input", {1, 8, 8, 4});
  int c = add_convolution(g, "conv", in, 4, 6);
  g.outputs = {c};
  BOOST_REQUIRE(infer_shapes(g).is_ok());

  graph wrong_weights = g;
  wrong_weights.layers[c].weights = random_weights(6 * 9 * 4 - 1, 1, 0.1f);
  expect_error(wrong_weights, "conv", "weights");

  graph wrong_groups = g;
  wrong_groups.layers[c].groups = 3;  // 4 channels not divisible by 3
  expect_error(wrong_groups, "conv", "groups");

  graph too_large = g;
  too_large.layers[c].window.kernel_h = too_large.layers[c].window.kernel_w = 11;
  too_large.layers[c].weights = random_weights(6 * 121 * 4, 1, 0.1f);
  expect_error(too_large, "conv", "does not fit");

  graph mismatched_add = g;
  int a = add_simple(mismatched_add, "sum", layer_kind::add, {in, c});  // 4 vs 6 channels
  mismatched_add.outputs = {a};
  expect_error(mismatched_add, "sum", "differ");

  graph duplicate = g;
  add_relu(duplicate, "conv", c);
  status s = infer_shapes(duplicate);
  BOOST_TEST(s.message().find("duplicate") != std::string::npos, s.message());
}

BOOST_AUTO_TEST_CASE(batch_norm_folds_and_activations_fuse) {
  graph g;
  g.name = "fold";
  int in = add_input(g, "input", {1, 11, 9, 5});
  int c = add_convolution(g, "conv", in, 5, 7);
  int bn = add_batch_norm(g, "bn", c, 7);
  int r = add_relu(g, "relu", bn);
  int c2 = add_convolution(g, "conv2", r, 7, 7, 1, 1, 0);
  int bn2 = add_batch_norm(g, "bn2", c2, 7);
  int sum = add_simple(g, "add", layer_kind::add, {bn2, r});
  int r2 = add_relu(g, "relu2", sum);
  g.outputs = {r2};
  BOOST_REQUIRE(infer_shapes(g).is_ok());
  graph folded = g;
  status s = prepare_for_inference(folded);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  // conv+bn+relu -> conv(relu); conv2+bn2 -> conv2; add+relu2 -> add(relu)
  BOOST_TEST(folded.layers.size() == 4u);
  for (const layer& l : folded.layers) BOOST_TEST(l.kind != layer_kind::batch_norm);
  int conv = folded.find("conv");
  BOOST_REQUIRE(conv >= 0);
  BOOST_TEST((folded.layers[conv].act == activation::relu()));
  BOOST_TEST((folded.layers[folded.find("add")].act == activation::relu()));
  BOOST_TEST(folded.outputs.size() == 1u);
  BOOST_TEST(folded.layers[folded.outputs[0]].name == "add");
  // The original graph keeps its own weights (folding writes new buffers).
  BOOST_TEST(g.layers[c].weights.data() != folded.layers[conv].weights.data());

  // Numerically the folded graph equals the unfolded reference.
  tensor x = random_tensor({1, 11, 9, 5}, 7);
  auto reference = reference_run(g, {{"input", x}});
  auto exec = executor::create(folded);
  BOOST_REQUIRE_MESSAGE(exec.is_ok(), exec.message());
  auto out = (*exec)->run({&x});
  BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
  std::string mismatch = compare_relative(out.value()[0], reference.at("relu2"), 1e-5);
  BOOST_TEST(mismatch.empty(), mismatch);
}

BOOST_AUTO_TEST_CASE(fusion_keeps_tensors_read_elsewhere) {
  graph g;
  g.name = "shared";
  int in = add_input(g, "input", {1, 6, 6, 3});
  int c = add_convolution(g, "conv", in, 3, 4);
  int r = add_relu(g, "relu", c);
  int sum = add_simple(g, "add", layer_kind::add, {c, r});  // reads the pre-ReLU tensor too
  g.outputs = {sum};
  BOOST_REQUIRE(prepare_for_inference(g).is_ok());
  BOOST_TEST(g.layers.size() == 4u);
  BOOST_TEST(g.layers[g.find("conv")].act.is_identity());
}

BOOST_AUTO_TEST_CASE(sub_graph_boundaries_cut_skip_connections) {
  graph g;
  g.name = "residual";
  int in = add_input(g, "input", {1, 8, 8, 4});
  int c1 = add_convolution(g, "conv1", in, 4, 4);
  int c2 = add_convolution(g, "conv2", c1, 4, 4);
  int sum = add_simple(g, "add", layer_kind::add, {c2, c1});
  int c3 = add_convolution(g, "conv3", sum, 4, 4);
  g.outputs = {c3};
  BOOST_REQUIRE(infer_shapes(g).is_ok());
  // {conv2, add}: reads conv1 twice (once as the skip), returns add.
  subgraph_boundary b = boundary_of(g, {c2, sum});
  BOOST_TEST((b.inputs == std::vector<int>{c1}));
  BOOST_TEST((b.outputs == std::vector<int>{sum}));
  // {conv1, conv2}: conv1's tensor leaves too (the skip connection crosses the cut).
  b = boundary_of(g, {c1, c2});
  BOOST_TEST((b.inputs == std::vector<int>{in}));
  BOOST_TEST((b.outputs == std::vector<int>{c1, c2}));
  // the whole graph returns only its output
  b = boundary_of(g, {c1, c2, sum, c3});
  BOOST_TEST((b.outputs == std::vector<int>{c3}));
}
