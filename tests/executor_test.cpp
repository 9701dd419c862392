#define BOOST_TEST_MODULE executor
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include "kernels/cpu_features.hpp"
#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/reference.hpp"
#include "tests/test_graphs.hpp"

using namespace d3;

namespace {

graph load(const std::string& name) {
  auto g = builtin_model(name);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

// Adds unfused unless `fuse`: the tests take every tensor (run_all).
std::unique_ptr<executor> make_executor(const graph& g, std::vector<int> layers = {}, int threads = 1,
                                        bool fuse = false) {
  executor_options options;
  options.threads = threads;
  options.fuse_residual_adds = fuse;
  auto e = executor::create(g, std::move(layers), options);
  BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
  return std::move(e.value());
}

// Runs `g` as consecutive pieces of its topological order, cut before each position in `cuts`,
// passing tensors between pieces by name the way nodes will. Returns every tensor that crossed a
// cut and the graph's outputs.
std::map<std::string, tensor> run_in_pieces(const graph& g, const tensor& input, std::vector<size_t> cuts,
                                            bool fuse = false) {
  auto order = topological_order(g);
  BOOST_REQUIRE(order.is_ok());
  std::vector<int> computed;
  for (int i : *order)
    if (g.layers[i].kind != layer_kind::input) computed.push_back(i);
  cuts.push_back(computed.size());
  std::map<std::string, tensor> available{{g.layers[g.input_layers().at(0)].name, input}};
  size_t begin = 0;
  for (size_t end : cuts) {
    std::vector<int> piece(computed.begin() + long(begin), computed.begin() + long(end));
    begin = end;
    auto e = make_executor(g, piece, 1, fuse);
    auto out = e->run(available);
    BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
    for (auto& [name, t] : out.value()) available[name] = std::move(t);
  }
  return available;
}

// Position in the computed-layer order just before layer `name` (a cut there).
size_t cut_before(const graph& g, const std::string& name) {
  auto order = topological_order(g);
  size_t position = 0;
  for (int i : *order) {
    if (g.layers[i].kind == layer_kind::input) continue;
    if (g.layers[i].name == name) return position;
    ++position;
  }
  BOOST_FAIL("no layer named " + name);
  return 0;
}

}  // namespace

// Every layer of every built-in model against the naive reference, fed the executor's own inputs
// of that layer (so rounding does not compound), and the whole model end to end.
BOOST_AUTO_TEST_CASE(models_match_the_reference_layer_by_layer) {
  for (const std::string& name : builtin_model_names()) {
    auto started = std::chrono::steady_clock::now();
    graph g = load(name);
    auto e = make_executor(g);
    tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 11);
    auto all = e->run_all({&x});
    BOOST_REQUIRE_MESSAGE(all.is_ok(), all.message());
    std::map<std::string, tensor>& tensors = all.value();
    tensors[g.layers[g.input_layers()[0]].name] = x;
    int checked = 0;
    for (const layer& l : g.layers) {
      if (l.kind == layer_kind::input) continue;
      std::vector<const tensor*> inputs;
      for (int in : l.inputs) inputs.push_back(&tensors.at(g.layers[in].name));
      tensor expected = reference_layer(l, inputs);
      std::string mismatch = compare_relative(tensors.at(l.name), expected, 1e-5);
      BOOST_CHECK_MESSAGE(mismatch.empty(), name << " layer " << l.name << ": " << mismatch);
      ++checked;
    }
    BOOST_TEST(checked > 7);
    // End to end the executor and the reference drift apart by rounding only: intermediate tensors
    // (not only the logits) stay within a small relative error through the whole depth.
    std::map<std::string, tensor> reference = reference_run(g, {{g.layers[g.input_layers()[0]].name, x}});
    double worst = 0;
    std::string worst_layer;
    for (const layer& l : g.layers) {
      if (l.kind == layer_kind::input) continue;
      const tensor& a = tensors.at(l.name);
      const tensor& r = reference.at(l.name);
      double rms = 0;
      for (size_t k = 0; k < r.elements(); ++k) rms += double(r.data()[k]) * r.data()[k];
      rms = std::sqrt(rms / double(r.elements()));
      double max_diff = 0;
      for (size_t k = 0; k < r.elements(); ++k) max_diff = std::max(max_diff, double(std::fabs(a.data()[k] - r.data()[k])));
      if (max_diff / rms > worst) worst = max_diff / rms, worst_layer = l.name;
    }
    BOOST_TEST_MESSAGE(name << ": " << checked << " layers checked; end-to-end worst |diff|/rms " << worst << " at "
                            << worst_layer << " ("
                            << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
                            << " s)");
    BOOST_CHECK_MESSAGE(worst < 1e-3, name << ": end-to-end drift " << worst << " at " << worst_layer);
  }
}

// A partition boundary may cut several tensors at once: the pieces must reproduce the whole run
// bit for bit, including cuts inside residual blocks and inception modules.
BOOST_AUTO_TEST_CASE(sub_graphs_reproduce_the_whole_graph_bit_for_bit) {
  struct split {
    std::string model;
    std::vector<std::string> cut_before;  // 1 or 2 cuts: 2 or 3 pieces
    size_t min_crossing;                  // tensors crossing the first cut
  };
  const std::vector<split> splits = {
      {"resnet18", {"layer2.0.conv2", "layer3.1.add"}, 2},       // skip connection and branch cut
      {"resnet18", {"layer1.0.add"}, 2},
      {"googlenet", {"inception4b.branch3.1.conv", "inception5a.branch2.0.conv"}, 3},  // inside modules
      {"googlenet", {"inception3a.branch4.1.conv"}, 3},
      {"mobilenet_v2", {"features.3.conv.2", "features.14.conv.1.0"}, 2},  // inside inverted residuals
      {"alexnet", {"features.6", "classifier.4"}, 1},
      {"vgg16", {"features.10", "classifier.3"}, 1},
  };
  for (const split& s : splits) {
    graph g = load(s.model);
    tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 5);
    auto whole = make_executor(g);
    auto expected = whole->run_all({&x});
    BOOST_REQUIRE(expected.is_ok());
    std::vector<size_t> cuts;
    for (const std::string& name : s.cut_before) cuts.push_back(cut_before(g, name));
    // How many tensors cross the first cut (the test is about multi-tensor boundaries).
    auto order = topological_order(g);
    std::vector<int> first_piece;
    for (int i : *order)
      if (g.layers[i].kind != layer_kind::input && first_piece.size() < cuts[0]) first_piece.push_back(i);
    BOOST_TEST(boundary_of(g, first_piece).outputs.size() >= s.min_crossing, s.model << " cut " << s.cut_before[0]);

    auto pieces = run_in_pieces(g, x, cuts);
    int compared = 0;
    for (auto& [name, t] : pieces) {
      auto it = expected.value().find(name);
      if (it == expected.value().end()) continue;  // the input
      BOOST_CHECK_MESSAGE(bitwise_equal(t, it->second), s.model << ": tensor " << name << " differs from the whole run");
      ++compared;
    }
    const std::string output = g.layers[g.outputs[0]].name;
    BOOST_REQUIRE(pieces.count(output) == 1);
    BOOST_TEST(bitwise_equal(pieces.at(output), expected.value().at(output)), s.model);
    BOOST_TEST(compared >= int(s.min_crossing) + 1);
  }
}

BOOST_AUTO_TEST_CASE(random_cuts_reproduce_the_whole_graph) {
  seeded_generator gen(99);
  for (const std::string name : {"resnet18", "googlenet", "mobilenet_v2"}) {
    graph g = load(name);
    tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 6);
    auto whole = make_executor(g);
    auto expected = whole->run({&x});
    BOOST_REQUIRE(expected.is_ok());
    size_t computed = g.layers.size() - 1;
    for (int trial = 0; trial < 4; ++trial) {
      size_t a = 1 + gen.next_u64() % (computed - 2), b = 1 + gen.next_u64() % (computed - 2);
      std::vector<size_t> cuts = {std::min(a, b)};
      if (a != b) cuts.push_back(std::max(a, b));
      auto pieces = run_in_pieces(g, x, cuts);
      const std::string output = g.layers[g.outputs[0]].name;
      BOOST_TEST(bitwise_equal(pieces.at(output), expected.value()[0]), name << " cut at " << a << ", " << b);
    }
  }
}

// One thread splits large convolutions into output-channel blocks, two threads do not: both
// must compute the same dot products in the same order.
BOOST_AUTO_TEST_CASE(two_threads_compute_the_same_bits) {
  for (const std::string name : {"googlenet", "resnet18"}) {
    graph g = load(name);
    tensor x = random_tensor(g.layers[g.input_layers()[0]].output_shape, 3);
    auto one = make_executor(g, {}, 1)->run_all({&x});
    auto two = make_executor(g, {}, 2)->run_all({&x});
    BOOST_REQUIRE(one.is_ok() && two.is_ok());
    for (const auto& [layer_name, t] : one.value())
      BOOST_CHECK_MESSAGE(bitwise_equal(t, two.value().at(layer_name)), name << " layer " << layer_name);
  }
}

BOOST_AUTO_TEST_CASE(repeated_runs_and_new_input_buffers) {
  graph g = load("mobilenet_v2");
  auto e = make_executor(g);
  tensor x = random_tensor({1, 224, 224, 3}, 1), y = random_tensor({1, 224, 224, 3}, 2);
  auto first = e->run({&x});
  auto other = e->run({&y});
  tensor x_copy = x;  // a different buffer with the same values: operators must be bound again
  auto again = e->run({&x_copy});
  BOOST_REQUIRE(first.is_ok() && other.is_ok() && again.is_ok());
  BOOST_TEST(bitwise_equal(first.value()[0], again.value()[0]));
  BOOST_TEST(!bitwise_equal(first.value()[0], other.value()[0]));
}

BOOST_AUTO_TEST_CASE(bad_inputs_are_rejected_by_name) {
  graph g = load("resnet18");
  auto e = make_executor(g);
  tensor wrong({1, 224, 223, 3});
  auto out = e->run({&wrong});
  BOOST_TEST(!out.is_ok());
  BOOST_TEST(out.message().find("'input'") != std::string::npos, out.message());
  BOOST_TEST(out.message().find("1x3x224x224") != std::string::npos, out.message());
  out = e->run(std::vector<const tensor*>{});
  BOOST_TEST(!out.is_ok());
  auto named = e->run(std::map<std::string, tensor>{{"image", tensor({1, 224, 224, 3})}});
  BOOST_TEST(!named.is_ok());
  BOOST_TEST(named.message().find("missing") != std::string::npos, named.message());
  // the executor still works after rejected requests
  tensor x = random_tensor({1, 224, 224, 3}, 1);
  BOOST_TEST(e->run({&x}).is_ok());
}

// DenseNet's dense block: every layer concatenates all features so far, so each concat's inputs
// are a prefix of the next one's. The concats share the widest one's buffer (the features are
// written in place once, the batch norms read the prefixes with a stride): the same bits as
// copying every concat, every layer within 1e-5 of the reference, and cuts inside the block
// (the block's input then arrives from outside and is copied once) reproduce the whole run.
BOOST_AUTO_TEST_CASE(dense_block_concats_share_one_buffer) {
  using namespace d3::testing;
  graph g;
  int x = add_input(g, "image", {1, 12, 10, 5});
  int stem = add_relu(g, "stem.relu", add_convolution(g, "stem", x, 5, 16));
  std::vector<int> features{stem};
  int channels = 16;
  for (int i = 1; i <= 4; ++i) {
    const std::string p = "block.layer" + std::to_string(i);
    int cat = add_simple(g, p + ".concat", layer_kind::concat, features);
    int bn = add_relu(g, p + ".relu1", add_batch_norm(g, p + ".norm1", cat, channels));
    int c1 = add_relu(g, p + ".relu2", add_convolution(g, p + ".conv1", bn, channels, 24, 1, 1, 0));
    features.push_back(add_convolution(g, p + ".conv2", c1, 24, 8));
    channels += 8;
  }
  int cat = add_simple(g, "block.concat", layer_kind::concat, features);
  int bn = add_relu(g, "transition.relu", add_batch_norm(g, "transition.norm", cat, channels));
  int out = add_convolution(g, "transition.conv", bn, channels, 12, 1, 1, 0);
  g.outputs = {out};
  BOOST_REQUIRE_MESSAGE(prepare_for_inference(g).is_ok(), "prepare");  // fuses the ReLUs: indices change
  const std::string output = g.layers[g.outputs.at(0)].name;

  tensor input = random_tensor({1, 12, 10, 5}, 21);
  auto shared = make_executor(g);
  executor_options copying_options;
  copying_options.share_concat_prefixes = false;
  copying_options.fuse_residual_adds = false;
  auto copying = executor::create(g, {}, copying_options);
  BOOST_REQUIRE(copying.is_ok());
  BOOST_TEST(shared->copied_concat_inputs() == 0);
  BOOST_TEST(copying.value()->copied_concat_inputs() > 8);
  auto a = shared->run_all({&input});
  auto b = copying.value()->run_all({&input});
  BOOST_REQUIRE(a.is_ok() && b.is_ok());
  BOOST_REQUIRE(a.value().size() == b.value().size());
  for (const auto& [name, t] : b.value())
    BOOST_CHECK_MESSAGE(bitwise_equal(a.value().at(name), t), "tensor " << name << " differs from the copying run");
  std::map<std::string, tensor> tensors = a.value();
  tensors["image"] = input;
  int checked = 0;
  for (const layer& l : g.layers) {
    if (l.kind == layer_kind::input) continue;
    std::vector<const tensor*> inputs;
    for (int in : l.inputs) inputs.push_back(&tensors.at(g.layers[in].name));
    std::string mismatch = compare_relative(tensors.at(l.name), reference_layer(l, inputs), 1e-5);
    BOOST_CHECK_MESSAGE(mismatch.empty(), "layer " << l.name << ": " << mismatch);
    ++checked;
  }
  BOOST_TEST(checked >= 16);
  // A second run on the same buffers (views and in-place writes leave nothing stale).
  auto again = shared->run({&input});
  BOOST_REQUIRE(again.is_ok());
  BOOST_TEST(bitwise_equal(again.value()[0], a.value().at(output)));

  for (std::vector<std::string> cuts : std::vector<std::vector<std::string>>{
           {"block.layer2.concat"}, {"block.layer2.conv2", "block.layer4.concat"}, {"block.concat"}}) {
    std::vector<size_t> positions;
    for (const std::string& name : cuts) positions.push_back(cut_before(g, name));
    auto pieces = run_in_pieces(g, input, positions);
    BOOST_TEST(bitwise_equal(pieces.at(output), a.value().at(output)), "cut before " << cuts[0]);
  }
}

// SiLU writes over its input when it is the input's last reader (one step here: the second SiLU's
// input is also read by the add after it). Every layer against the reference; run() and the
// all-tensors run (which copies each tensor right after its step, before it is overwritten) alike;
// a second run on the same buffers; cut into pieces at the in-place step, the same bits.
BOOST_AUTO_TEST_CASE(silu_overwrites_its_input_only_at_the_last_read) {
  using namespace d3::testing;
  graph g;
  int x = add_input(g, "image", {1, 9, 11, 6});
  int c1 = add_convolution(g, "conv1", x, 6, 16);
  int s1 = add_simple(g, "silu1", layer_kind::silu, {c1});
  int c2 = add_convolution(g, "conv2", s1, 16, 16);
  int s2 = add_simple(g, "silu2", layer_kind::silu, {c2});
  int sum = add_simple(g, "sum", layer_kind::add, {s2, c2});
  g.outputs = {sum};
  BOOST_REQUIRE_MESSAGE(prepare_for_inference(g).is_ok(), "prepare");
  auto e = make_executor(g);
  BOOST_TEST(e->in_place_steps() == 1);
  tensor input = random_tensor({1, 9, 11, 6}, 31);
  auto all = e->run_all({&input});
  BOOST_REQUIRE_MESSAGE(all.is_ok(), all.message());
  std::map<std::string, tensor> tensors = all.value();
  tensors["image"] = input;
  for (const layer& l : g.layers) {
    if (l.kind == layer_kind::input) continue;
    std::vector<const tensor*> inputs;
    for (int in : l.inputs) inputs.push_back(&tensors.at(g.layers[in].name));
    std::string mismatch = compare_relative(tensors.at(l.name), reference_layer(l, inputs), 1e-5);
    BOOST_CHECK_MESSAGE(mismatch.empty(), "layer " << l.name << ": " << mismatch);
  }
  for (int round = 0; round < 2; ++round) {
    auto out = e->run({&input});
    BOOST_REQUIRE(out.is_ok());
    BOOST_TEST(bitwise_equal(out.value()[0], tensors.at("sum")), "run " << round);
  }
  auto pieces = run_in_pieces(g, input, {cut_before(g, "silu1"), cut_before(g, "conv2")});
  BOOST_TEST(bitwise_equal(pieces.at("sum"), tensors.at("sum")));
}

// Residual adds fused into the convolution before them compute the bits of the two layers apart
// (the unfused executor), memcmp-equal: after an add with ReLU (its clamp fused into it) and one
// without, a convolution clamped itself, 48 channels (a panel and a half), 143 pixels (a last
// block of fewer rows), the residual the graph's input, the residual written over at its last
// read, the operands either way round, NaN and infinities in the input; in the pieces a cut leaves
// (a convolution whose add is in the next piece stays unfused), and again on the same buffers.
BOOST_AUTO_TEST_CASE(residual_adds_fused_into_convolutions_keep_the_bits) {
  using namespace d3::testing;
  if (!cpu_has_avx512f()) {
    BOOST_TEST_MESSAGE("no AVX-512: the native GEMM takes no fused add here");
    return;
  }
  graph g;
  int x = add_input(g, "image", {1, 13, 11, 32});
  int c1 = add_convolution(g, "conv1", x, 32, 32);
  int r1 = add_relu(g, "relu1", c1);
  int c2 = add_convolution(g, "conv2", r1, 32, 32);
  int s1 = add_simple(g, "sum1", layer_kind::add, {c2, x});  // residual: the graph's input
  int a1 = add_relu(g, "relu_sum1", s1);
  int c3 = add_convolution(g, "conv3", a1, 32, 48);
  int r3 = add_relu(g, "relu3", c3);
  int c4 = add_convolution(g, "conv4", r3, 48, 48);
  int c5 = add_convolution(g, "shortcut", a1, 32, 48, 1, 1, 0);
  int s2 = add_simple(g, "sum2", layer_kind::add, {c5, c4});  // no clamp; the later convolution fuses
  int c6 = add_convolution(g, "conv6", s2, 48, 48);
  int r6 = add_relu(g, "relu6", c6);  // fused into conv6: a clamped convolution, then the add
  int s3 = add_simple(g, "sum3", layer_kind::add, {s2, r6});  // sum2's last read: written over
  int a3 = add_relu(g, "relu_sum3", s3);
  g.outputs = {a3, a1};
  BOOST_REQUIRE_MESSAGE(prepare_for_inference(g).is_ok(), "prepare");
  auto fused = make_executor(g, {}, 1, true);
  auto apart = make_executor(g);
  BOOST_TEST(fused->fused_adds() == 3);
  BOOST_TEST(apart->fused_adds() == 0);
  BOOST_TEST(fused->in_place_steps() >= 1);
  BOOST_TEST(!fused->run_all({}).is_ok(), "run_all must refuse an executor with fused adds");

  tensor input = random_tensor({1, 13, 11, 32}, 41);
  input.data()[5] = std::numeric_limits<float>::quiet_NaN();
  input.data()[777] = std::numeric_limits<float>::infinity();
  input.data()[2000] = -std::numeric_limits<float>::infinity();
  int finite_outputs = 0;
  auto expected = apart->run({&input});
  BOOST_REQUIRE_MESSAGE(expected.is_ok(), expected.message());
  for (int round = 0; round < 2; ++round) {
    auto got = fused->run({&input});
    BOOST_REQUIRE_MESSAGE(got.is_ok(), got.message());
    for (size_t k = 0; k < expected->size(); ++k)
      BOOST_TEST(bitwise_equal(got.value()[k], expected.value()[k]), "output " << k << ", run " << round);
  }
  for (const tensor& t : expected.value())
    for (size_t i = 0; i < t.elements(); ++i) finite_outputs += std::isfinite(t.data()[i]) ? 1 : 0;
  BOOST_TEST(finite_outputs > 0, "the NaN and infinities reached every output: this run checks only them");
  // A finite input (NaN spreads over most outputs): against every tensor of the executor apart.
  tensor finite = random_tensor({1, 13, 11, 32}, 42);
  auto all = apart->run_all({&finite});
  BOOST_REQUIRE(all.is_ok());
  auto got = fused->run({&finite});
  BOOST_REQUIRE(got.is_ok());
  for (size_t k = 0; k < got->size(); ++k)
    BOOST_TEST(bitwise_equal(got.value()[k], all->at(fused->output_names()[k])), fused->output_names()[k]);

  for (std::vector<std::string> cuts : std::vector<std::vector<std::string>>{
           {"sum1"}, {"conv4", "sum3"}, {"shortcut"}}) {
    std::vector<size_t> positions;
    for (const std::string& name : cuts) positions.push_back(cut_before(g, name));
    auto pieces = run_in_pieces(g, finite, positions, true);
    for (const std::string& name : fused->output_names())
      BOOST_TEST(bitwise_equal(pieces.at(name), all->at(name)), "cut before " << cuts[0] << ": " << name);
  }
}
