#define BOOST_TEST_MODULE onnx_import
#include <boost/test/unit_test.hpp>

#include <onnx/onnx_pb.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/reference.hpp"
#include "onnx/onnx_import.hpp"

using namespace d3;

namespace {

std::vector<float> seeded(size_t count, uint64_t seed, float scale) {
  seeded_generator gen(seed);
  std::vector<float> v(count);
  for (float& x : v) x = gen.uniform(-scale, scale);
  return v;
}

void set_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
void set_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (int64_t x : v) a->add_ints(x);
}
void set_float(onnx::NodeProto* n, const std::string& name, float v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}
void set_string(onnx::NodeProto* n, const std::string& name, const std::string& v) {
  auto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::STRING);
  a->set_s(v);
}

// A file in the temp directory, removed when the test case ends.
struct temp_file {
  std::string path;
  explicit temp_file(const std::string& tag)
      : path((std::filesystem::temp_directory_path() /
              ("d3_onnx_test_" + std::to_string(::getpid()) + "_" + tag + ".onnx"))
                 .string()) {}
  ~temp_file() { std::remove(path.c_str()); }
};

// Builds an ONNX model with the protobuf API, the way exporters write them.
struct onnx_builder {
  onnx::ModelProto model;
  onnx::GraphProto* g;

  explicit onnx_builder(int opset = 13) {
    model.set_ir_version(8);
    model.set_producer_name("d3-test");
    auto* o = model.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
    g = model.mutable_graph();
    g->set_name("test");
  }
  void input(const std::string& name, const std::vector<int64_t>& dims, bool dynamic_batch = false) {
    auto* in = g->add_input();
    in->set_name(name);
    auto* tt = in->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    for (size_t k = 0; k < dims.size(); ++k) {
      auto* d = tt->mutable_shape()->add_dim();
      if (k == 0 && dynamic_batch) d->set_dim_param("batch");
      else d->set_dim_value(dims[k]);
    }
  }
  void output(const std::string& name) {
    auto* out = g->add_output();
    out->set_name(name);
    out->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& ins,
                        const std::vector<std::string>& outs, const std::string& name = "") {
    auto* n = g->add_node();
    n->set_op_type(op);
    n->set_name(name);
    for (const auto& i : ins) n->add_input(i);
    for (const auto& o : outs) n->add_output(o);
    return n;
  }
  // Float initializer, in raw_data or float_data.
  std::vector<float> weights(const std::string& name, const std::vector<int64_t>& dims, uint64_t seed,
                             float scale = 0.5f, bool raw = false) {
    size_t count = 1;
    for (int64_t d : dims) count *= size_t(d);
    std::vector<float> v = seeded(count, seed, scale);
    floats(name, dims, v, raw);
    return v;
  }
  void floats(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v, bool raw = false) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    if (raw) t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)));
    else
      for (float x : v) t->add_float_data(x);
  }
  void ints(const std::string& name, const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
    auto* t = g->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : dims) t->add_dims(d);
    for (int64_t x : v) t->add_int64_data(x);
  }
  // A Constant node holding int64 values.
  void constant_ints(const std::string& out, const std::vector<int64_t>& dims, const std::vector<int64_t>& v) {
    auto* n = node("Constant", {}, {out}, out + "_node");
    auto* a = n->add_attribute();
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    auto* t = a->mutable_t();
    t->set_data_type(onnx::TensorProto::INT64);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int64_t)));
  }
  void write(const temp_file& f) const {
    std::ofstream out(f.path, std::ios::binary | std::ios::trunc);
    BOOST_REQUIRE(model.SerializeToOstream(&out));
  }
};

graph import_ok(const std::string& path, bool prepared) {
  auto g = prepared ? import_onnx(path) : import_onnx_unprepared(path);
  BOOST_REQUIRE_MESSAGE(g.is_ok(), g.message());
  return std::move(g.value());
}

std::string import_error(const onnx_builder& b, const std::string& tag) {
  temp_file f(tag);
  b.write(f);
  auto g = import_onnx(f.path);
  BOOST_REQUIRE_MESSAGE(!g.is_ok(), "importing the " + tag + " model should fail");
  BOOST_TEST_MESSAGE(tag << ": " << g.message());
  BOOST_CHECK(g.message().find("ONNX file '" + f.path + "'") == 0);
  return g.message();
}

const layer& find_layer(const graph& g, const std::string& name) {
  int i = g.find(name);
  BOOST_REQUIRE_MESSAGE(i >= 0, "no layer named " + name);
  return g.layers[size_t(i)];
}

// The imported model run by the executor (prepared graph) against the naive reference on the
// unprepared graph: every graph output within 1e-5 of the largest magnitude.
void check_runs_like_reference(const onnx_builder& b, const std::string& tag, uint64_t seed = 5) {
  temp_file f(tag);
  b.write(f);
  graph raw = import_ok(f.path, false);
  graph prepared = import_ok(f.path, true);
  const layer& in = raw.layers[size_t(raw.input_layers().at(0))];
  tensor x = random_tensor(in.output_shape, seed);
  auto reference = reference_run(raw, {{in.name, x}});
  auto e = executor::create(prepared);
  BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
  std::map<std::string, tensor> inputs{{in.name, x}};
  auto out = (*e)->run(inputs);
  BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
  BOOST_REQUIRE_EQUAL(raw.outputs.size(), prepared.outputs.size());
  for (size_t k = 0; k < raw.outputs.size(); ++k) {
    const std::string& expected_name = raw.layers[size_t(raw.outputs[k])].name;
    const std::string& actual_name = prepared.layers[size_t(prepared.outputs[k])].name;
    BOOST_REQUIRE(out->count(actual_name));
    std::string mismatch = compare_relative(out->at(actual_name), reference.at(expected_name), 1e-5);
    BOOST_CHECK_MESSAGE(mismatch.empty(), tag + " output " + expected_name + ": " + mismatch);
  }
}

// conv (asymmetric pads, stride 2x1) -> batch norm -> relu -> max pool (ceil) -> flatten -> gemm.
onnx_builder conv_model(std::vector<float>* conv_w = nullptr, std::vector<float>* fc_w = nullptr,
                        std::vector<float>* fc_b = nullptr) {
  onnx_builder b;
  b.input("x", {1, 3, 9, 10}, true);
  auto w = b.weights("conv1.weight", {6, 3, 3, 3}, 1, 0.5f, true);
  b.weights("conv1.bias", {6}, 2, 0.1f);
  auto* conv = b.node("Conv", {"x", "conv1.weight", "conv1.bias"}, {"c1"}, "conv1");
  set_ints(conv, "kernel_shape", {3, 3});
  set_ints(conv, "pads", {1, 0, 2, 1});  // top, left, bottom, right
  set_ints(conv, "strides", {2, 1});
  b.floats("bn.scale", {6}, {1.1f, 0.9f, 1.0f, 1.2f, 0.8f, 1.05f});
  b.floats("bn.bias", {6}, {0.1f, -0.1f, 0.0f, 0.05f, 0.2f, -0.2f});
  b.floats("bn.mean", {6}, {0.01f, 0.02f, -0.03f, 0.0f, 0.1f, -0.1f});
  b.floats("bn.var", {6}, {1.0f, 0.9f, 1.1f, 1.2f, 0.8f, 1.05f});
  auto* bn = b.node("BatchNormalization", {"c1", "bn.scale", "bn.bias", "bn.mean", "bn.var"}, {"b1"}, "bn1");
  set_float(bn, "epsilon", 1e-3f);
  b.node("Relu", {"b1"}, {"r1"}, "relu1");
  auto* pool = b.node("MaxPool", {"r1"}, {"p1"}, "pool1");
  set_ints(pool, "kernel_shape", {2, 2});
  set_ints(pool, "strides", {2, 2});
  set_int(pool, "ceil_mode", 1);
  b.node("Flatten", {"p1"}, {"f1"}, "flatten");
  auto fw = b.weights("fc.weight", {4, 90}, 3, 0.2f);
  auto fb = b.weights("fc.bias", {4}, 4, 0.1f);
  auto* gemm = b.node("Gemm", {"f1", "fc.weight", "fc.bias"}, {"logits"}, "fc");
  set_int(gemm, "transB", 1);
  set_float(gemm, "alpha", 0.5f);
  set_float(gemm, "beta", 2.0f);
  b.output("logits");
  if (conv_w) *conv_w = w;
  if (fc_w) *fc_w = fw;
  if (fc_b) *fc_b = fb;
  return b;
}

// Residual add and concat, with unnamed and duplicate-named nodes.
onnx_builder residual_model() {
  onnx_builder b;
  b.input("image", {1, 4, 6, 6});
  b.weights("wa", {4, 4, 3, 3}, 10, 0.3f);
  b.weights("wb", {4, 4, 3, 3}, 11, 0.3f);
  b.weights("wc", {2, 4, 1, 1}, 12, 0.3f);
  b.weights("bc", {2}, 13, 0.1f);
  auto* ca = b.node("Conv", {"image", "wa"}, {"a"}, "dup");
  set_ints(ca, "pads", {1, 1, 1, 1});
  b.node("Relu", {"a"}, {"a_relu"}, "dup");
  auto* cb = b.node("Conv", {"a_relu", "wb"}, {"bout"}, "");
  set_ints(cb, "pads", {1, 1, 1, 1});
  b.node("Add", {"bout", "image"}, {"sum"}, "block.add");
  b.node("Relu", {"sum"}, {"sum_relu"}, "block.relu");
  b.node("Conv", {"image", "wc", "bc"}, {"side"}, "side.conv");
  auto* cat = b.node("Concat", {"sum_relu", "side"}, {"joined"}, "cat");
  set_int(cat, "axis", 1);
  b.output("joined");
  return b;
}

}  // namespace

BOOST_AUTO_TEST_CASE(paths) {
  BOOST_CHECK(is_onnx_path("model.onnx"));
  BOOST_CHECK(is_onnx_path("/a/b/resnet18.onnx"));
  BOOST_CHECK(!is_onnx_path("resnet18"));
  BOOST_CHECK(!is_onnx_path("model.d3m"));
  BOOST_CHECK(!is_onnx_path(".onnx.d3m"));
}

BOOST_AUTO_TEST_CASE(conv_bn_relu_pool_gemm) {
  std::vector<float> w, fw, fb;
  onnx_builder b = conv_model(&w, &fw, &fb);
  temp_file f("conv");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_CHECK_EQUAL(g.name, "test");
  BOOST_REQUIRE_EQUAL(g.layers.size(), 7u);
  const layer& in = find_layer(g, "x");
  BOOST_CHECK(in.kind == layer_kind::input);
  BOOST_CHECK_EQUAL(in.input_shape, (tensor_shape{1, 9, 10, 3}));  // dynamic batch -> 1

  const layer& conv = find_layer(g, "conv1");
  BOOST_CHECK(conv.kind == layer_kind::convolution);
  BOOST_CHECK(conv.window.pad == (padding{1, 0, 2, 1}));
  BOOST_CHECK_EQUAL(conv.window.stride_h, 2);
  BOOST_CHECK_EQUAL(conv.window.stride_w, 1);
  BOOST_CHECK_EQUAL(conv.output_channels, 6);
  BOOST_CHECK_EQUAL(conv.output_shape, (tensor_shape{1, 5, 9, 6}));
  // OIHW [6][3][3][3] -> OHWI [6][3][3][3]: d3[o][y][x][i] == onnx[o][i][y][x]
  BOOST_REQUIRE_EQUAL(conv.weights.size(), w.size());
  auto ohwi = [&](int o, int y, int x, int i) { return conv.weights.data()[((o * 3 + y) * 3 + x) * 3 + i]; };
  auto oihw = [&](int o, int i, int y, int x) { return w[size_t(((o * 3 + i) * 3 + y) * 3 + x)]; };
  BOOST_CHECK_EQUAL(ohwi(0, 0, 0, 0), oihw(0, 0, 0, 0));
  BOOST_CHECK_EQUAL(ohwi(0, 0, 0, 1), oihw(0, 1, 0, 0));
  BOOST_CHECK_EQUAL(ohwi(2, 1, 2, 0), oihw(2, 0, 1, 2));
  BOOST_CHECK_EQUAL(ohwi(5, 2, 1, 2), oihw(5, 2, 2, 1));
  BOOST_CHECK_EQUAL(ohwi(3, 0, 2, 1), oihw(3, 1, 0, 2));
  BOOST_CHECK(ohwi(0, 0, 0, 1) != oihw(0, 0, 0, 1));

  const layer& bn = find_layer(g, "bn1");
  BOOST_CHECK(bn.kind == layer_kind::batch_norm);
  BOOST_CHECK_CLOSE(bn.epsilon, 1e-3f, 1e-4);
  BOOST_REQUIRE_EQUAL(bn.weights.size(), 24u);
  BOOST_CHECK_EQUAL(bn.weights.data()[0], 1.1f);    // gamma
  BOOST_CHECK_EQUAL(bn.weights.data()[6], 0.1f);    // beta
  BOOST_CHECK_EQUAL(bn.weights.data()[12], 0.01f);  // mean
  BOOST_CHECK_EQUAL(bn.weights.data()[18], 1.0f);   // var
  const layer& relu = find_layer(g, "relu1");
  BOOST_CHECK(relu.kind == layer_kind::clamp);
  BOOST_CHECK(relu.act == activation::relu());
  const layer& pool = find_layer(g, "pool1");
  BOOST_CHECK(pool.kind == layer_kind::max_pool);
  BOOST_CHECK(pool.window.ceil_mode);
  BOOST_CHECK_EQUAL(pool.output_shape, (tensor_shape{1, 3, 5, 6}));
  BOOST_CHECK(find_layer(g, "flatten").kind == layer_kind::flatten);
  const layer& fc = find_layer(g, "fc");
  BOOST_CHECK(fc.kind == layer_kind::fully_connected);
  BOOST_CHECK_EQUAL(fc.output_channels, 4);
  BOOST_REQUIRE_EQUAL(fc.weights.size(), 360u);
  BOOST_CHECK_EQUAL(fc.weights.data()[0], fw[0] * 0.5f);      // alpha folded
  BOOST_CHECK_EQUAL(fc.weights.data()[181], fw[181] * 0.5f);
  BOOST_CHECK_EQUAL(fc.bias.data()[3], fb[3] * 2.0f);          // beta folded
  BOOST_CHECK_EQUAL(fc.output_shape, (tensor_shape{1, 1, 1, 4}));
  BOOST_REQUIRE_EQUAL(g.outputs.size(), 1u);
  BOOST_CHECK_EQUAL(g.layers[size_t(g.outputs[0])].name, "fc");

  // Prepared: the batch norm folded into the convolution, the ReLU fused into it.
  graph p = import_ok(f.path, true);
  BOOST_CHECK_EQUAL(p.layers.size(), 5u);
  BOOST_CHECK(find_layer(p, "conv1").act == activation::relu());
  BOOST_CHECK_EQUAL(p.find("bn1"), -1);

  check_runs_like_reference(b, "conv_run");
}

BOOST_AUTO_TEST_CASE(residual_add_concat_and_naming) {
  onnx_builder b = residual_model();
  temp_file f("residual");
  b.write(f);
  graph g = import_ok(f.path, false);
  // Duplicate node names "dup" fall back to the first output names; an unnamed node too.
  BOOST_CHECK(find_layer(g, "a").kind == layer_kind::convolution);
  BOOST_CHECK(find_layer(g, "a_relu").kind == layer_kind::clamp);
  BOOST_CHECK(find_layer(g, "bout").kind == layer_kind::convolution);
  BOOST_CHECK_EQUAL(g.find("dup"), -1);
  const layer& add = find_layer(g, "block.add");
  BOOST_CHECK(add.kind == layer_kind::add);
  BOOST_REQUIRE_EQUAL(add.inputs.size(), 2u);
  BOOST_CHECK_EQUAL(g.layers[size_t(add.inputs[0])].name, "bout");
  BOOST_CHECK_EQUAL(g.layers[size_t(add.inputs[1])].name, "image");
  const layer& cat = find_layer(g, "cat");
  BOOST_CHECK(cat.kind == layer_kind::concat);
  BOOST_CHECK_EQUAL(cat.output_shape, (tensor_shape{1, 6, 6, 6}));
  check_runs_like_reference(b, "residual_run");
}

// torch.flatten / x.view(x.size(0), -1) as torch.onnx exports it, then MatMul + Add.
BOOST_AUTO_TEST_CASE(shape_arithmetic_flatten_and_matmul_add) {
  onnx_builder b;
  b.input("x", {1, 3, 5, 5}, true);
  b.weights("w", {4, 3, 3, 3}, 20, 0.3f);
  b.node("Conv", {"x", "w"}, {"c"}, "conv");
  b.node("Shape", {"c"}, {"shape"}, "shape");
  b.constant_ints("zero", {}, {0});
  auto* gather = b.node("Gather", {"shape", "zero"}, {"batch"}, "gather");
  set_int(gather, "axis", 0);
  b.constant_ints("axes0", {1}, {0});
  b.node("Unsqueeze", {"batch", "axes0"}, {"batch1"}, "unsqueeze");
  b.constant_ints("minus1", {1}, {-1});
  auto* cat = b.node("Concat", {"batch1", "minus1"}, {"target"}, "concat_shape");
  set_int(cat, "axis", 0);
  b.node("Reshape", {"c", "target"}, {"flat"}, "reshape");
  auto mw = b.weights("mm.weight", {36, 7}, 21, 0.2f);  // [K, N]
  auto mb = b.weights("mm.bias", {7}, 22, 0.1f);
  b.node("MatMul", {"flat", "mm.weight"}, {"mm"}, "matmul");
  b.node("Add", {"mm", "mm.bias"}, {"y"}, "add_bias");
  b.output("y");
  temp_file f("flatten");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_REQUIRE_EQUAL(g.layers.size(), 4u);  // input, conv, flatten, fully connected
  BOOST_CHECK(find_layer(g, "reshape").kind == layer_kind::flatten);
  BOOST_CHECK_EQUAL(find_layer(g, "reshape").output_shape, (tensor_shape{1, 1, 1, 36}));
  const layer& fc = find_layer(g, "matmul");
  BOOST_CHECK(fc.kind == layer_kind::fully_connected);
  BOOST_CHECK_EQUAL(fc.output_channels, 7);
  // [K][N] -> [N][K]
  BOOST_CHECK_EQUAL(fc.weights.data()[0 * 36 + 0], mw[0]);
  BOOST_CHECK_EQUAL(fc.weights.data()[2 * 36 + 5], mw[5 * 7 + 2]);
  BOOST_CHECK_EQUAL(fc.weights.data()[6 * 36 + 35], mw[35 * 7 + 6]);
  BOOST_REQUIRE_EQUAL(fc.bias.size(), 7u);
  BOOST_CHECK_EQUAL(fc.bias.data()[4], mb[4]);
  BOOST_CHECK_EQUAL(g.layers[size_t(g.outputs[0])].name, "matmul");
  check_runs_like_reference(b, "flatten_run");
}

BOOST_AUTO_TEST_CASE(clip_with_constant_inputs) {
  onnx_builder b;
  b.input("x", {1, 2, 4, 4});
  b.weights("w", {3, 2, 3, 3}, 30, 2.0f);
  auto* conv = b.node("Conv", {"x", "w"}, {"c"}, "conv");
  set_ints(conv, "pads", {1, 1, 1, 1});
  b.floats("zero", {}, {0.0f});
  b.floats("six", {}, {6.0f});
  b.node("Clip", {"c", "zero", "six"}, {"r6"}, "relu6");
  b.floats("one", {}, {1.0f});
  b.node("Clip", {"r6", "", "one"}, {"y"}, "cap");  // min absent
  b.output("y");
  temp_file f("clip");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_CHECK(find_layer(g, "relu6").act == activation::relu6());
  const layer& cap = find_layer(g, "cap");
  BOOST_CHECK(cap.kind == layer_kind::clamp);
  BOOST_CHECK(std::isinf(cap.act.min) && cap.act.min < 0);
  BOOST_CHECK_EQUAL(cap.act.max, 1.0f);
  graph p = import_ok(f.path, true);
  BOOST_CHECK_EQUAL(p.layers.size(), 2u);  // both clamps fused into the convolution
  BOOST_CHECK(find_layer(p, "conv").act == (activation{0.0f, 1.0f}));
  check_runs_like_reference(b, "clip_run");
}

// Mul / Add / Sub / Div by per-channel constants after a convolution fold into it.
BOOST_AUTO_TEST_CASE(per_channel_constants_fold_into_the_convolution) {
  onnx_builder b;
  b.input("x", {1, 3, 5, 5});
  auto w = b.weights("w", {4, 3, 3, 3}, 40, 0.4f);
  b.weights("bias", {4}, 41, 0.1f);
  b.node("Conv", {"x", "w", "bias"}, {"c"}, "conv");
  b.floats("scale", {4, 1, 1}, {2.0f, 0.5f, -1.0f, 4.0f});
  b.floats("shift", {1, 4, 1, 1}, {0.1f, 0.2f, 0.3f, 0.4f});
  b.floats("two", {}, {2.0f});
  b.node("Mul", {"scale", "c"}, {"m"}, "mul");
  b.node("Add", {"m", "shift"}, {"a"}, "add");
  b.node("Div", {"a", "two"}, {"d"}, "div");
  b.node("Sub", {"d", "shift"}, {"y"}, "sub");
  b.output("y");
  temp_file f("fold");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_REQUIRE_EQUAL(g.layers.size(), 2u);
  const layer& conv = find_layer(g, "conv");
  BOOST_CHECK_EQUAL(conv.weights.data()[0], w[0] * 2.0f / 2.0f);
  BOOST_CHECK_EQUAL(conv.weights.data()[3 * 27], w[3 * 27] * 4.0f / 2.0f);
  check_runs_like_reference(b, "fold_run");

  // A constant operand that cannot fold (the tensor feeds two nodes) becomes a per-channel affine
  // layer of its own.
  onnx_builder apart;
  apart.input("x", {1, 3, 5, 5});
  apart.weights("w", {4, 3, 3, 3}, 40, 0.4f);
  apart.node("Conv", {"x", "w"}, {"c"}, "conv");
  apart.floats("scale", {4, 1, 1}, {2.0f, 0.5f, -1.0f, 4.0f});
  apart.node("Mul", {"c", "scale"}, {"m"}, "mul");
  apart.node("Add", {"m", "c"}, {"y"}, "add");
  apart.output("y");
  temp_file fa("nofold");
  apart.write(fa);
  graph ga = import_ok(fa.path, true);
  const layer& mul = find_layer(ga, "mul");
  BOOST_CHECK(mul.kind == layer_kind::convolution);
  BOOST_CHECK_EQUAL(mul.groups, 4);
  BOOST_CHECK_EQUAL(mul.weights.data()[2], -1.0f);
  check_runs_like_reference(apart, "nofold_run");
  // A constant that is not per channel is rejected by name.
  onnx_builder bad;
  bad.input("x", {1, 3, 5, 5});
  bad.floats("row", {1, 1, 1, 5}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f});
  bad.node("Mul", {"x", "row"}, {"y"}, "mul");
  bad.output("y");
  BOOST_CHECK_EQUAL(import_error(bad, "notchannel").find("ONNX file"), 0u);
  BOOST_CHECK(import_error(bad, "notchannel").find("node 'mul' (Mul): constant operand 'row'") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(errors_name_the_problem) {
  // Unsupported op: message names the op and the node.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.node("LSTM", {"x"}, {"y"}, "rnn_7");
    b.output("y");
    std::string m = import_error(b, "lstm");
    BOOST_CHECK(m.find("LSTM") != std::string::npos);
    BOOST_CHECK(m.find("rnn_7") != std::string::npos);
  }
  // Unsupported attribute value.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.weights("w", {2, 3, 3, 3}, 1);
    auto* n = b.node("Conv", {"x", "w"}, {"y"}, "Conv_3");
    set_string(n, "auto_pad", "SAME_UPPER");
    b.output("y");
    std::string m = import_error(b, "autopad");
    BOOST_CHECK(m.find("node 'Conv_3' (Conv): attribute auto_pad=SAME_UPPER is not supported") != std::string::npos);
  }
  // Unknown attribute.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    auto* n = b.node("Relu", {"x"}, {"y"}, "r");
    set_int(n, "alpha", 1);
    b.output("y");
    BOOST_CHECK(import_error(b, "attr").find("attribute alpha is not supported") != std::string::npos);
  }
  // Cycle.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.node("Add", {"x", "q"}, {"p"}, "first");
    b.node("Relu", {"p"}, {"q"}, "second");
    b.output("q");
    BOOST_CHECK(import_error(b, "cycle").find("cycle") != std::string::npos);
  }
  // Dangling input.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.node("Add", {"x", "ghost"}, {"y"}, "add");
    b.output("y");
    std::string m = import_error(b, "dangling");
    BOOST_CHECK(m.find("dangling") != std::string::npos);
    BOOST_CHECK(m.find("ghost") != std::string::npos);
  }
  // Initializer of the wrong size.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.floats("w", {2, 3, 3, 3}, std::vector<float>(50, 0.1f));
    b.node("Conv", {"x", "w"}, {"y"}, "conv");
    b.output("y");
    std::string m = import_error(b, "wrongsize");
    BOOST_CHECK(m.find("initializer 'w' has the wrong size") != std::string::npos);
    BOOST_CHECK(m.find("needs 54") != std::string::npos);
  }
  // Conv weight that does not fit the input's channels.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.weights("w", {2, 4, 3, 3}, 1);
    b.node("Conv", {"x", "w"}, {"y"}, "conv");
    b.output("y");
    BOOST_CHECK(import_error(b, "wrongchannels").find("channels per group") != std::string::npos);
  }
  // Non-float weights.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT16);
    for (int d : {2, 3, 1, 1}) t->add_dims(d);
    t->set_raw_data(std::string(12, '\0'));
    b.node("Conv", {"x", "w"}, {"y"}, "conv");
    b.output("y");
    BOOST_CHECK(import_error(b, "fp16").find("FLOAT16") != std::string::npos);
  }
  // External data.
  {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    auto* t = b.g->add_initializer();
    t->set_name("w");
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int d : {2, 3, 1, 1}) t->add_dims(d);
    t->set_data_location(onnx::TensorProto::EXTERNAL);
    auto* e = t->add_external_data();
    e->set_key("location");
    e->set_value("weights.bin");
    b.node("Conv", {"x", "w"}, {"y"}, "conv");
    b.output("y");
    BOOST_CHECK(import_error(b, "external").find("external") != std::string::npos);
  }
  // Other Reshape / Transpose.
  {
    onnx_builder b;
    b.input("x", {1, 4, 4, 4});
    b.ints("shape", {4}, {1, 2, 8, 4});
    b.node("Reshape", {"x", "shape"}, {"y"}, "odd_reshape");
    b.output("y");
    BOOST_CHECK(import_error(b, "reshape").find("node 'odd_reshape' (Reshape): reshape from [1,4,4,4] to [1,2,8,4]") !=
                std::string::npos);
  }
  // Opset out of range.
  {
    onnx_builder b(3);
    b.input("x", {1, 3, 4, 4});
    b.node("Relu", {"x"}, {"y"}, "r");
    b.output("y");
    BOOST_CHECK(import_error(b, "opset").find("opset 3") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(malformed_files_are_errors_not_crashes) {
  onnx_builder b = conv_model();
  std::string bytes;
  BOOST_REQUIRE(b.model.SerializeToString(&bytes));
  // Truncated at many points.
  for (size_t keep : {size_t(1), size_t(7), bytes.size() / 3, bytes.size() / 2, bytes.size() - 3, bytes.size() - 1}) {
    temp_file f("truncated");
    std::ofstream(f.path, std::ios::binary | std::ios::trunc).write(bytes.data(), std::streamsize(keep));
    auto g = import_onnx(f.path);
    BOOST_CHECK_MESSAGE(!g.is_ok(), "truncated to " << keep << " of " << bytes.size() << " bytes");
    BOOST_TEST_MESSAGE("truncated " << keep << ": " << g.message());
  }
  // Garbage.
  for (uint64_t seed : {1, 2, 3, 4}) {
    temp_file f("garbage");
    seeded_generator gen(seed);
    std::string junk(4096, '\0');
    for (char& ch : junk) ch = char(gen.next_u64() & 0xff);
    std::ofstream(f.path, std::ios::binary | std::ios::trunc) << junk;
    auto g = import_onnx(f.path);
    BOOST_CHECK(!g.is_ok());
    BOOST_TEST_MESSAGE("garbage: " << g.message());
  }
  // Empty and missing files.
  {
    temp_file f("empty");
    std::ofstream(f.path, std::ios::binary | std::ios::trunc);
    auto g = import_onnx(f.path);
    BOOST_CHECK(!g.is_ok());
    BOOST_CHECK(g.message().find("no graph") != std::string::npos);
  }
  auto missing = import_onnx("/nonexistent/dir/model.onnx");
  BOOST_CHECK(!missing.is_ok());
  BOOST_CHECK(missing.message().find("cannot open") != std::string::npos);
  // Every single-byte corruption of the file is an error or a valid graph, never a crash.
  temp_file f("flipped");
  for (size_t at = 0; at < bytes.size(); at += 37) {
    std::string copy = bytes;
    copy[at] = char(copy[at] ^ 0x5a);
    std::ofstream(f.path, std::ios::binary | std::ios::trunc) << copy;
    auto g = import_onnx(f.path);
    if (g.is_ok()) BOOST_CHECK(infer_shapes(g.value()).is_ok());
  }
}

// Running the imported model in two consecutive pieces gives the bytes of the whole run.
BOOST_AUTO_TEST_CASE(two_pieces_equal_the_whole) {
  onnx_builder b = residual_model();
  temp_file f("pieces");
  b.write(f);
  graph g = import_ok(f.path, true);
  auto order = topological_order(g);
  BOOST_REQUIRE(order.is_ok());
  std::vector<int> computed;
  for (int i : *order)
    if (g.layers[size_t(i)].kind != layer_kind::input) computed.push_back(i);
  BOOST_REQUIRE_GE(computed.size(), 3u);
  const layer& in = g.layers[size_t(g.input_layers().at(0))];
  tensor x = random_tensor(in.output_shape, 9);
  auto whole = executor::create(g);
  BOOST_REQUIRE_MESSAGE(whole.is_ok(), whole.message());
  auto expected = (*whole)->run({&x});
  BOOST_REQUIRE_MESSAGE(expected.is_ok(), expected.message());
  for (size_t cut = 1; cut < computed.size(); ++cut) {
    std::vector<int> first(computed.begin(), computed.begin() + long(cut));
    std::vector<int> second(computed.begin() + long(cut), computed.end());
    std::map<std::string, tensor> available{{in.name, x}};
    for (const auto& piece : {first, second}) {
      auto e = executor::create(g, piece);
      BOOST_REQUIRE_MESSAGE(e.is_ok(), e.message());
      auto out = (*e)->run(available);
      BOOST_REQUIRE_MESSAGE(out.is_ok(), out.message());
      for (auto& [name, t] : out.value()) available[name] = std::move(t);
    }
    const tensor& actual = available.at(g.layers[size_t(g.outputs[0])].name);
    const tensor& reference = expected->at(0);
    BOOST_REQUIRE(actual.shape() == reference.shape());
    BOOST_CHECK_MESSAGE(std::memcmp(actual.data(), reference.data(), reference.bytes()) == 0, "cut " << cut);
  }
}

// ---- The layer kinds added for ONNX exports (multiply, sigmoid, shuffle, slice, pad) ----

BOOST_AUTO_TEST_CASE(split_with_sizes_input_and_slice) {
  onnx_builder b;
  b.input("x", {1, 8, 4, 4});
  b.ints("sizes", {2}, {3, 5});
  auto* split = b.node("Split", {"x", "sizes"}, {"lo", "hi"}, "split");
  set_int(split, "axis", 1);
  b.node("Relu", {"lo"}, {"lo_relu"}, "relu_lo");
  b.ints("starts", {1}, {1});
  b.ints("ends", {1}, {INT64_MAX});
  b.ints("axes", {1}, {1});
  b.node("Slice", {"hi", "starts", "ends", "axes"}, {"hi_tail"}, "slice");
  auto* cat = b.node("Concat", {"hi_tail", "lo_relu"}, {"y"}, "cat");
  set_int(cat, "axis", 1);
  b.output("y");
  temp_file f("split");
  b.write(f);
  graph g = import_ok(f.path, false);
  const layer& lo = find_layer(g, "lo");
  BOOST_CHECK(lo.kind == layer_kind::channel_slice);
  BOOST_CHECK_EQUAL(lo.channel_begin, 0);
  BOOST_CHECK_EQUAL(lo.channel_end, 3);
  const layer& hi = find_layer(g, "hi");
  BOOST_CHECK_EQUAL(hi.channel_begin, 3);
  BOOST_CHECK_EQUAL(hi.channel_end, 8);
  const layer& tail = find_layer(g, "slice");
  BOOST_CHECK(tail.kind == layer_kind::channel_slice);
  BOOST_CHECK_EQUAL(tail.channel_begin, 1);
  BOOST_CHECK_EQUAL(tail.channel_end, 5);
  BOOST_CHECK_EQUAL(find_layer(g, "cat").output_shape, (tensor_shape{1, 4, 4, 7}));
  check_runs_like_reference(b, "split_run");

  // Opset 11: split sizes as an attribute; equal split without sizes.
  onnx_builder b11(11);
  b11.input("x", {1, 6, 2, 2});
  auto* s1 = b11.node("Split", {"x"}, {"a", "b"}, "split_attr");
  set_int(s1, "axis", 1);
  set_ints(s1, "split", {4, 2});
  auto* s2 = b11.node("Split", {"a"}, {"a0", "a1"}, "split_equal");
  set_int(s2, "axis", 1);
  b11.node("Add", {"a0", "a1"}, {"s"}, "add");
  auto* cat2 = b11.node("Concat", {"s", "b"}, {"y"}, "cat");
  set_int(cat2, "axis", 1);
  b11.output("y");
  temp_file f11("split11");
  b11.write(f11);
  graph g11 = import_ok(f11.path, false);
  BOOST_CHECK_EQUAL(find_layer(g11, "b").channel_begin, 4);
  BOOST_CHECK_EQUAL(find_layer(g11, "a1").channel_begin, 2);
  BOOST_CHECK_EQUAL(find_layer(g11, "a1").channel_end, 4);
  check_runs_like_reference(b11, "split11_run");
}

BOOST_AUTO_TEST_CASE(pad_order_and_channel_shuffle) {
  onnx_builder b;
  b.input("x", {1, 6, 3, 4});
  // pads: [N_begin, C_begin, H_begin, W_begin, N_end, C_end, H_end, W_end]
  b.ints("pads", {8}, {0, 0, 1, 2, 0, 0, 3, 0});
  b.node("Pad", {"x", "pads"}, {"p"}, "pad");
  b.weights("w", {6, 6, 3, 3}, 50, 0.3f);
  b.node("Conv", {"p", "w"}, {"c"}, "conv");
  // ShuffleNet: Reshape [N, g, C/g, H, W] -> Transpose [0,2,1,3,4] -> Reshape [N, C, H, W]
  b.ints("s5", {5}, {1, 3, 2, 5, 4});
  b.node("Reshape", {"c", "s5"}, {"v"}, "view");
  auto* t = b.node("Transpose", {"v"}, {"vt"}, "transpose");
  set_ints(t, "perm", {0, 2, 1, 3, 4});
  b.ints("s4", {4}, {1, -1, 5, 4});
  b.node("Reshape", {"vt", "s4"}, {"y"}, "shuffle");
  b.output("y");
  temp_file f("shuffle");
  b.write(f);
  graph g = import_ok(f.path, false);
  const layer& pad = find_layer(g, "pad");
  BOOST_CHECK(pad.kind == layer_kind::pad);
  BOOST_CHECK(pad.window.pad == (padding{1, 2, 3, 0}));
  BOOST_CHECK_EQUAL(pad.output_shape, (tensor_shape{1, 7, 6, 6}));
  const layer& shuffle = find_layer(g, "shuffle");
  BOOST_CHECK(shuffle.kind == layer_kind::channel_shuffle);
  BOOST_CHECK_EQUAL(shuffle.groups, 3);
  BOOST_CHECK_EQUAL(g.layers.size(), 4u);  // input, pad, conv, shuffle
  check_runs_like_reference(b, "shuffle_run");
}

// Shape arithmetic with Mod (Swin pads its maps to whole windows: (ws - W % ws) % ws), Python's
// sign rule for fmod=0 and C's for fmod=1, and a Pad by zero, which is no layer, also on a
// channels-last view.
BOOST_AUTO_TEST_CASE(modulo_folding_and_zero_padding) {
  onnx_builder b;
  b.input("x", {1, 4, 6, 6});
  b.node("Shape", {"x"}, {"shape"}, "shape");
  b.constant_ints("three", {}, {3});
  set_int(b.node("Gather", {"shape", "three"}, {"w"}, "width"), "axis", 0);  // 6
  b.constant_ints("window", {}, {3});
  b.node("Mod", {"w", "window"}, {"w_mod"}, "w_mod");                       // 0
  b.node("Sub", {"window", "w_mod"}, {"short"}, "short");                  // 3
  b.node("Mod", {"short", "window"}, {"fill"}, "fill");                    // 0
  b.constant_ints("minus7", {}, {-7});
  b.constant_ints("four", {}, {4});
  b.node("Mod", {"minus7", "four"}, {"python"}, "python_mod");             // 1 (Python: sign of 4)
  set_int(b.node("Mod", {"minus7", "four"}, {"c"}, "c_mod"), "fmod", 1);   // -3 (C: sign of -7)
  b.constant_ints("one", {}, {1});
  b.constant_ints("five", {}, {5});
  b.node("Add", {"python", "one"}, {"two_a"}, "two_a");                    // 2
  b.node("Add", {"c", "five"}, {"two_b"}, "two_b");                        // 2
  b.constant_ints("axes0", {1}, {0});
  for (const char* v : {"fill", "two_a", "two_b"}) b.node("Unsqueeze", {v, "axes0"}, {std::string(v) + "1"}, std::string("u_") + v);
  b.constant_ints("zeros2", {2}, {0, 0});
  b.constant_ints("zeros4", {4}, {0, 0, 0, 0});
  // Channels last [N, H, W, C]: pads [0, 0, 0, 0, 0, fill, fill, 0] = nothing.
  set_ints(b.node("Transpose", {"x"}, {"last"}, "to_last"), "perm", {0, 2, 3, 1});
  b.constant_ints("zero1", {1}, {0});
  set_int(b.node("Concat", {"zeros4", "zero1", "fill1", "fill1", "zero1"}, {"pads_last"}, "pads_last"), "axis", 0);
  b.node("Pad", {"last", "pads_last"}, {"padded_last"}, "pad_nothing");
  set_ints(b.node("Transpose", {"padded_last"}, {"back"}, "to_first"), "perm", {0, 3, 1, 2});
  // NCHW: pads [0, 0, 0, 0, 0, 0, two_a, two_b] pads H and W at their ends by 2.
  set_int(b.node("Concat", {"zeros4", "zeros2", "two_a1", "two_b1"}, {"pads"}, "pads"), "axis", 0);
  b.node("Pad", {"back", "pads"}, {"y"}, "pad_two");
  b.output("y");
  temp_file f("modulo");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_CHECK_EQUAL(g.layers.size(), 2u);  // input, pad_two: the zero pad and the transpositions vanish
  const layer& pad = find_layer(g, "pad_two");
  BOOST_CHECK(pad.kind == layer_kind::pad);
  BOOST_CHECK(pad.window.pad == (padding{0, 0, 2, 2}));
  BOOST_CHECK_EQUAL(pad.output_shape, (tensor_shape{1, 8, 8, 4}));
  check_runs_like_reference(b, "modulo_run");

  onnx_builder zero;  // a modulo by zero is an error naming the node
  zero.input("x", {1, 2, 3, 4});
  zero.constant_ints("a", {}, {5});
  zero.constant_ints("b", {}, {0});
  zero.node("Mod", {"a", "b"}, {"m"}, "bad_mod");
  zero.constant_ints("axes0", {1}, {0});
  zero.node("Unsqueeze", {"m", "axes0"}, {"m1"}, "u");
  zero.node("Reshape", {"x", "m1"}, {"y"}, "reshape");
  zero.output("y");
  BOOST_CHECK(import_error(zero, "mod_zero").find("modulo by zero") != std::string::npos);
}

// A squeeze-and-excitation block: spatial mean, two 1x1 layers, sigmoid, per-channel multiply.
BOOST_AUTO_TEST_CASE(squeeze_excitation_and_softmax) {
  onnx_builder b;
  b.input("x", {1, 8, 5, 5});
  b.weights("w", {8, 8, 3, 3}, 60, 0.3f);
  auto* conv = b.node("Conv", {"x", "w"}, {"c"}, "conv");
  set_ints(conv, "pads", {1, 1, 1, 1});
  auto* mean = b.node("ReduceMean", {"c"}, {"m"}, "se.mean");
  set_ints(mean, "axes", {2, 3});
  set_int(mean, "keepdims", 1);
  b.weights("w1", {4, 8, 1, 1}, 61, 0.5f);
  b.weights("b1", {4}, 62, 0.1f);
  b.node("Conv", {"m", "w1", "b1"}, {"s1"}, "se.fc1");
  b.node("Relu", {"s1"}, {"s1r"}, "se.relu");
  b.weights("w2", {8, 4, 1, 1}, 63, 0.5f);
  b.node("Conv", {"s1r", "w2"}, {"s2"}, "se.fc2");
  b.node("Sigmoid", {"s2"}, {"gate"}, "se.sigmoid");
  b.node("Mul", {"gate", "c"}, {"scaled"}, "se.mul");  // the per-channel operand first
  b.node("GlobalAveragePool", {"scaled"}, {"pooled"}, "pool");
  b.node("Flatten", {"pooled"}, {"flat"}, "flatten");
  auto* sm = b.node("Softmax", {"flat"}, {"y"}, "softmax");
  set_int(sm, "axis", 1);
  b.output("y");
  temp_file f("se");
  b.write(f);
  graph g = import_ok(f.path, false);
  const layer& mul = find_layer(g, "se.mul");
  BOOST_CHECK(mul.kind == layer_kind::multiply);
  BOOST_CHECK_EQUAL(g.layers[size_t(mul.inputs[0])].name, "conv");  // the full tensor first
  BOOST_CHECK(find_layer(g, "se.mean").kind == layer_kind::global_average_pool);
  BOOST_CHECK(find_layer(g, "se.sigmoid").kind == layer_kind::sigmoid);
  BOOST_CHECK(find_layer(g, "softmax").kind == layer_kind::softmax);
  check_runs_like_reference(b, "se_run");
}

// SiLU as opset 13 exports it, Sigmoid then Mul (EfficientNet): after a batch norm that folds into
// its convolution, with the gate first or second, prepared as one silu layer; a sigmoid with another
// reader and a sigmoid of something else stay, as does the multiply reading them.
BOOST_AUTO_TEST_CASE(sigmoid_times_its_input_is_one_silu_layer) {
  onnx_builder b;
  b.input("x", {1, 6, 7, 7});
  b.weights("w", {6, 6, 3, 3}, 90, 0.3f);
  auto* conv = b.node("Conv", {"x", "w"}, {"c"}, "conv");
  set_ints(conv, "pads", {1, 1, 1, 1});
  b.weights("bn.scale", {6}, 91, 1.0f);
  b.weights("bn.bias", {6}, 92, 0.2f);
  b.weights("bn.mean", {6}, 93, 0.2f);
  b.floats("bn.var", {6}, {1.0f, 0.5f, 2.0f, 1.5f, 0.8f, 1.1f});
  b.node("BatchNormalization", {"c", "bn.scale", "bn.bias", "bn.mean", "bn.var"}, {"n"}, "bn");
  b.node("Sigmoid", {"n"}, {"s1"}, "act1/sigmoid");
  b.node("Mul", {"s1", "n"}, {"a1"}, "act1");  // the gate first
  b.node("Sigmoid", {"a1"}, {"s2"}, "act2/sigmoid");
  b.node("Mul", {"a1", "s2"}, {"a2"}, "act2");
  b.node("Sigmoid", {"a2"}, {"s3"}, "kept/sigmoid");
  b.node("Mul", {"a2", "s3"}, {"a3"}, "kept");  // s3 has another reader below
  b.node("Sigmoid", {"x"}, {"sx"}, "other/sigmoid");
  b.node("Mul", {"a3", "sx"}, {"a4"}, "other");  // the sigmoid of another tensor
  b.node("Add", {"a4", "s3"}, {"y"}, "sum");
  b.output("y");
  temp_file f("silu");
  b.write(f);
  graph raw = import_ok(f.path, false);
  BOOST_CHECK(find_layer(raw, "act1").kind == layer_kind::multiply);
  graph g = import_ok(f.path, true);
  for (const char* fused : {"act1", "act2"}) {
    const layer& l = find_layer(g, fused);
    BOOST_CHECK_MESSAGE(l.kind == layer_kind::silu, fused << " is " << to_string(l.kind));
    BOOST_CHECK_EQUAL(l.inputs.size(), 1u);
    BOOST_CHECK(g.find(std::string(fused) + "/sigmoid") < 0);
  }
  BOOST_CHECK_EQUAL(g.layers[size_t(find_layer(g, "act1").inputs[0])].name, "conv");  // the batch norm folded
  BOOST_CHECK(find_layer(g, "kept").kind == layer_kind::multiply);
  BOOST_CHECK(find_layer(g, "kept/sigmoid").kind == layer_kind::sigmoid);
  BOOST_CHECK(find_layer(g, "other").kind == layer_kind::multiply);
  check_runs_like_reference(b, "silu_run");
}

// DenseNet's pre-activation block (Concat -> BatchNormalization -> Relu -> Conv) and the gates of
// MobileNetV3 (HardSigmoid with its alpha/beta, HardSwish): each a per-channel affine layer (a
// depthwise 1x1 convolution) with its clamp, run against the naive reference's batch norm.
BOOST_AUTO_TEST_CASE(unfoldable_batch_norm_hard_sigmoid_and_hard_swish) {
  onnx_builder b(14);  // HardSwish exists from opset 14
  b.input("x", {1, 4, 5, 6});
  b.weights("w", {3, 4, 3, 3}, 80, 0.3f);
  auto* conv = b.node("Conv", {"x", "w"}, {"c"}, "conv");
  set_ints(conv, "pads", {1, 1, 1, 1});
  auto* cat = b.node("Concat", {"x", "c"}, {"cat"}, "cat");
  set_int(cat, "axis", 1);
  b.weights("bn.scale", {7}, 81, 1.0f);
  b.weights("bn.bias", {7}, 82, 0.2f);
  b.weights("bn.mean", {7}, 83, 0.2f);
  b.floats("bn.var", {7}, {1.0f, 0.5f, 2.0f, 1.5f, 0.8f, 1.1f, 0.9f});
  auto* bn = b.node("BatchNormalization", {"cat", "bn.scale", "bn.bias", "bn.mean", "bn.var"}, {"n"}, "norm");
  set_float(bn, "epsilon", 1e-3f);
  b.node("Relu", {"n"}, {"r"}, "relu");
  auto* hs = b.node("HardSigmoid", {"cat"}, {"g"}, "gate");
  set_float(hs, "alpha", 0.25f);
  set_float(hs, "beta", 0.4f);
  b.node("Mul", {"r", "g"}, {"m"}, "gated");
  b.node("HardSwish", {"m"}, {"y"}, "swish");
  b.output("y");
  temp_file f("affine");
  b.write(f);
  graph g = import_ok(f.path, true);
  const layer& norm = find_layer(g, "norm");  // kept (nothing to fold into), the ReLU fused
  BOOST_CHECK(norm.kind == layer_kind::convolution);
  BOOST_CHECK_EQUAL(norm.groups, 7);
  BOOST_CHECK_EQUAL(norm.window.kernel_h, 1);
  BOOST_CHECK(norm.act == activation::relu());
  BOOST_CHECK(g.find("relu") < 0);
  const layer& gate = find_layer(g, "gate");
  BOOST_CHECK_EQUAL(gate.weights.data()[3], 0.25f);
  BOOST_CHECK_EQUAL(gate.bias.data()[3], 0.4f);
  BOOST_CHECK(gate.act == (activation{0.0f, 1.0f}));
  // HardSwish: imported as the affine gate times x, prepared as one hardswish layer.
  graph raw = import_ok(f.path, false);
  BOOST_CHECK(find_layer(raw, "swish").kind == layer_kind::multiply);
  BOOST_CHECK(find_layer(raw, "swish/hardsigmoid").kind == layer_kind::convolution);
  BOOST_CHECK(find_layer(g, "swish").kind == layer_kind::hardswish);
  BOOST_CHECK(g.find("swish/hardsigmoid") < 0);
  BOOST_CHECK(find_layer(g, "gate").kind == layer_kind::convolution);  // alpha 0.25: stays a gate
  check_runs_like_reference(b, "affine_run");
  // Bad attributes are named.
  onnx_builder bad;
  bad.input("x", {1, 2, 3, 3});
  auto* n = bad.node("HardSigmoid", {"x"}, {"y"}, "gate");
  set_float(n, "gamma", 1.0f);
  bad.output("y");
  BOOST_CHECK(import_error(bad, "hardsigmoid_attr").find("attribute gamma") != std::string::npos);
}

// A ConvNeXt block as torch exports it at opset 13: a channels-last island (Transpose [0,2,3,1]),
// LayerNorm decomposed into ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div with its affine Mul/Add,
// Linear as MatMul on the last axis + Add, GELU as Div/Erf/Add/Mul/Mul, Transpose back, a layer
// scale and the residual Add: six layers, constants folded, run against the naive reference.
onnx_builder convnext_block(bool leak_mean = false) {
  onnx_builder b;
  b.input("x", {1, 8, 5, 6});
  b.weights("dw.w", {8, 1, 3, 3}, 90, 0.5f);
  auto* dw = b.node("Conv", {"x", "dw.w"}, {"dw"}, "dw");
  set_ints(dw, "pads", {1, 1, 1, 1});
  set_int(dw, "group", 8);
  set_ints(b.node("Transpose", {"dw"}, {"t"}, "to_last"), "perm", {0, 2, 3, 1});
  set_ints(b.node("ReduceMean", {"t"}, {"m"}, "mean"), "axes", {-1});
  b.node("Sub", {"t", "m"}, {"d"}, "centre");
  b.floats("two", {}, {2.0f});
  b.node("Pow", {"d", "two"}, {"p"}, "square");
  set_ints(b.node("ReduceMean", {"p"}, {"v"}, "variance"), "axes", {-1});
  b.floats("eps", {}, {1e-6f});
  b.node("Add", {"v", "eps"}, {"ve"}, "plus_eps");
  b.node("Sqrt", {"ve"}, {"s"}, "deviation");
  b.node("Div", {"d", "s"}, {"n"}, "norm");
  b.weights("gamma", {8}, 91, 1.0f);
  b.weights("beta", {8}, 92, 0.2f);
  b.node("Mul", {"n", "gamma"}, {"ng"}, "norm_scale");
  b.node("Add", {"ng", "beta"}, {"nb"}, "norm_shift");
  b.weights("w1", {8, 16}, 93, 0.5f);
  b.weights("b1", {16}, 94, 0.1f);
  b.node("MatMul", {"nb", "w1"}, {"h"}, "linear1");
  b.node("Add", {"b1", "h"}, {"hb"}, "linear1_bias");
  b.floats("sqrt2", {}, {1.41421353816986083984375f});
  b.node("Div", {"hb", "sqrt2"}, {"g1"}, "gelu_div");
  b.node("Erf", {"g1"}, {"g2"}, "gelu_erf");
  b.floats("one", {}, {1.0f});
  b.node("Add", {"g2", "one"}, {"g3"}, "gelu_add");
  b.node("Mul", {"hb", "g3"}, {"g4"}, "gelu_mul");
  b.floats("half", {}, {0.5f});
  b.node("Mul", {"g4", "half"}, {"g5"}, "gelu");
  b.weights("w2", {16, 8}, 95, 0.3f);
  b.weights("b2", {8}, 96, 0.1f);
  b.node("MatMul", {"g5", "w2"}, {"o"}, "linear2");
  b.node("Add", {"b2", "o"}, {"ob"}, "linear2_bias");
  set_ints(b.node("Transpose", {"ob"}, {"back"}, "to_first"), "perm", {0, 3, 1, 2});
  b.weights("layer_scale", {8, 1, 1}, 97, 0.7f);
  b.node("Mul", {"layer_scale", "back"}, {"scaled"}, "layer_scale");
  b.node("Add", {"scaled", "x"}, {"y"}, "residual");
  b.output("y");
  if (leak_mean) {
    b.node("Relu", {"m"}, {"leak"}, "leak");
    b.output("leak");
  }
  return b;
}

BOOST_AUTO_TEST_CASE(channels_last_island_layer_norm_and_gelu) {
  onnx_builder b = convnext_block();
  temp_file f("convnext");
  b.write(f);
  graph g = import_ok(f.path, true);
  BOOST_CHECK_EQUAL(g.layers.size(), 7u);  // input, dw, norm, linear1, gelu, linear2, residual
  const layer& norm = find_layer(g, "norm");
  BOOST_CHECK(norm.kind == layer_kind::layer_norm);
  BOOST_CHECK_CLOSE(norm.epsilon, 1e-6f, 1e-3);
  BOOST_CHECK_EQUAL(norm.weights.size(), 16u);  // gamma | beta folded in
  const std::vector<float> gamma = seeded(8, 91, 1.0f), beta = seeded(8, 92, 0.2f);
  BOOST_CHECK_EQUAL(norm.weights.data()[3], gamma[3]);
  BOOST_CHECK_EQUAL(norm.weights.data()[8 + 5], beta[5]);
  const layer& linear1 = find_layer(g, "linear1");
  BOOST_CHECK(linear1.kind == layer_kind::convolution);
  BOOST_CHECK_EQUAL(linear1.window.kernel_h, 1);
  BOOST_CHECK_EQUAL(linear1.output_channels, 16);
  BOOST_CHECK_EQUAL(linear1.output_shape, (tensor_shape{1, 5, 6, 16}));
  BOOST_CHECK(find_layer(g, "gelu").kind == layer_kind::gelu);
  BOOST_CHECK(find_layer(g, "linear2").kind == layer_kind::convolution);  // bias and layer scale folded in
  BOOST_CHECK(find_layer(g, "residual").kind == layer_kind::add);
  check_runs_like_reference(b, "convnext_run");

  // A pattern intermediate read by anything else, a transposition d3 has no layout for, and a
  // channels-last tensor read by an NCHW op are errors that say so.
  BOOST_CHECK(import_error(convnext_block(true), "leaked_mean").find("layer normalisation") != std::string::npos);
  onnx_builder perm;
  perm.input("x", {1, 2, 3, 4});
  set_ints(perm.node("Transpose", {"x"}, {"y"}, "swap_hw"), "perm", {0, 1, 3, 2});
  perm.output("y");
  BOOST_CHECK(import_error(perm, "bad_perm").find("perm=[0,1,3,2]") != std::string::npos);
  onnx_builder last;
  last.input("x", {1, 2, 3, 4});
  set_ints(last.node("Transpose", {"x"}, {"t"}, "to_last"), "perm", {0, 2, 3, 1});
  last.weights("w", {2, 2, 1, 1}, 98, 0.5f);
  last.node("Conv", {"t", "w"}, {"y"}, "conv");
  last.output("y");
  BOOST_CHECK(import_error(last, "conv_of_last").find("channels-last view") != std::string::npos);
}

// A one-block vision transformer as torch exports it (sequence-first attention, N = 1): patch
// convolution, Reshape + Transpose to tokens, class token (Concat of a constant), position
// embedding, one Linear for q, k, v sliced apart, heads split and transposed, q / 2, q k^T,
// Softmax, times v, heads merged, output Linear as Gemm, residual, class token picked by Gather.
onnx_builder tiny_vit(bool leak_scores = false) {
  onnx_builder b;
  b.input("x", {1, 3, 8, 8});
  b.weights("patch.w", {8, 3, 4, 4}, 120, 0.3f);
  b.weights("patch.b", {8}, 121, 0.1f);
  auto* patch = b.node("Conv", {"x", "patch.w", "patch.b"}, {"p"}, "patch");
  set_ints(patch, "strides", {4, 4});
  b.ints("to_rows", {3}, {1, 8, 4});
  b.node("Reshape", {"p", "to_rows"}, {"pr"}, "flatten_patches");
  set_ints(b.node("Transpose", {"pr"}, {"tok"}, "to_tokens"), "perm", {0, 2, 1});
  b.weights("class_token", {1, 1, 8}, 122, 1.0f);
  set_int(b.node("Concat", {"class_token", "tok"}, {"cat"}, "class"), "axis", 1);
  b.weights("position", {1, 5, 8}, 123, 0.5f);
  b.node("Add", {"cat", "position"}, {"e"}, "embed");
  set_ints(b.node("Transpose", {"e"}, {"seq"}, "seq_first"), "perm", {1, 0, 2});
  b.weights("in_proj.w", {8, 24}, 124, 0.5f);
  b.weights("in_proj.b", {24}, 125, 0.1f);
  b.node("MatMul", {"seq", "in_proj.w"}, {"qkv0"}, "in_proj");
  b.node("Add", {"in_proj.b", "qkv0"}, {"qkv"}, "in_proj_bias");
  b.ints("minus1", {1}, {-1});
  const char* parts[3] = {"q", "k", "v"};
  for (int i = 0; i < 3; ++i) {
    b.ints(std::string("start_") + parts[i], {1}, {8 * i});
    b.ints(std::string("end_") + parts[i], {1}, {8 * i + 8});
    b.node("Slice", {"qkv", std::string("start_") + parts[i], std::string("end_") + parts[i], "minus1"},
           {std::string(parts[i]) + "0"}, std::string("slice_") + parts[i]);
  }
  b.ints("heads", {3}, {5, 2, 4});
  b.node("Reshape", {"q0", "heads"}, {"qh"}, "split_q");
  b.node("Reshape", {"k0", "heads"}, {"kh"}, "split_k");
  b.node("Reshape", {"v0", "heads"}, {"vh"}, "split_v");
  set_ints(b.node("Transpose", {"qh"}, {"qt"}, "q_heads"), "perm", {1, 0, 2});
  set_ints(b.node("Transpose", {"kh"}, {"kt"}, "k_heads"), "perm", {1, 2, 0});
  set_ints(b.node("Transpose", {"vh"}, {"vt"}, "v_heads"), "perm", {1, 0, 2});
  b.floats("two", {}, {2.0f});
  b.node("Div", {"qt", "two"}, {"qs"}, "q_scale");
  b.node("MatMul", {"qs", "kt"}, {"scores"}, "scores");
  set_int(b.node("Softmax", {"scores"}, {"probs"}, "softmax"), "axis", -1);
  b.node("MatMul", {"probs", "vt"}, {"ctx"}, "context");
  set_ints(b.node("Transpose", {"ctx"}, {"ctx_t"}, "context_tokens"), "perm", {1, 0, 2});
  b.ints("merge", {2}, {5, 8});
  b.node("Reshape", {"ctx_t", "merge"}, {"attn"}, "attention");
  b.weights("out.w", {8, 8}, 126, 0.5f);
  b.weights("out.b", {8}, 127, 0.1f);
  set_int(b.node("Gemm", {"attn", "out.w", "out.b"}, {"o"}, "out_proj"), "transB", 1);
  b.ints("seq_shape", {3}, {5, 1, 8});
  b.node("Reshape", {"o", "seq_shape"}, {"o3"}, "unflatten");
  set_ints(b.node("Transpose", {"o3"}, {"ob"}, "batch_first"), "perm", {1, 0, 2});
  b.node("Add", {"ob", "e"}, {"r"}, "residual");
  b.ints("zero", {}, {0});
  set_int(b.node("Gather", {"r", "zero"}, {"cls"}, "pick_class"), "axis", 1);
  b.weights("head.w", {4, 8}, 128, 0.5f);
  b.weights("head.b", {4}, 129, 0.1f);
  set_int(b.node("Gemm", {"cls", "head.w", "head.b"}, {"y"}, "head"), "transB", 1);
  b.output("y");
  if (leak_scores) {
    b.node("Relu", {"scores"}, {"leak"}, "leak");
    b.output("leak");
  }
  return b;
}

BOOST_AUTO_TEST_CASE(token_tensors_and_attention) {
  onnx_builder b = tiny_vit();
  temp_file f("vit");
  b.write(f);
  graph g = import_ok(f.path, true);
  // input, patch, class, embed, in_proj, 3 slices, attention, out_proj, residual, pick, head
  BOOST_CHECK_EQUAL(g.layers.size(), 13u);
  BOOST_CHECK(find_layer(g, "class").kind == layer_kind::prepend_tokens);
  BOOST_CHECK_EQUAL(find_layer(g, "class").output_shape, (tensor_shape{1, 5, 1, 8}));
  BOOST_CHECK(find_layer(g, "embed").kind == layer_kind::constant_add);
  BOOST_CHECK(find_layer(g, "in_proj").kind == layer_kind::convolution);  // per token, bias folded in
  const layer& attention = find_layer(g, "attention");
  BOOST_CHECK(attention.kind == layer_kind::attention);
  BOOST_CHECK_EQUAL(attention.groups, 2);
  BOOST_CHECK_EQUAL(attention.scale, 0.5f);
  BOOST_CHECK_EQUAL(attention.inputs.size(), 3u);
  BOOST_CHECK(find_layer(g, "out_proj").kind == layer_kind::convolution);
  const layer& pick = find_layer(g, "pick_class");
  BOOST_CHECK(pick.kind == layer_kind::row_slice);
  BOOST_CHECK_EQUAL(pick.output_shape, (tensor_shape{1, 1, 1, 8}));
  BOOST_CHECK(find_layer(g, "head").kind == layer_kind::fully_connected);
  check_runs_like_reference(b, "vit_run");
  BOOST_CHECK(import_error(tiny_vit(true), "leaked_scores").find("multi-head attention") != std::string::npos);
}

// Weights in an external data file beside the model (torch.onnx's format for models over 2 GB):
// two tensors at offsets in one file give the same graph as inline weights; locations outside the
// model's directory, ranges past the file's end and models read from memory are errors.
BOOST_AUTO_TEST_CASE(external_data_beside_the_model) {
  const std::vector<float> w1 = seeded(4 * 3 * 3 * 3, 110, 0.5f), w2 = seeded(5 * 4, 111, 0.5f);
  auto model = [&](const std::string& location, size_t second_offset) {
    onnx_builder b;
    b.input("x", {1, 3, 6, 6});
    auto external = [&](const std::string& name, std::vector<int64_t> dims, size_t offset, size_t bytes) {
      auto* t = b.g->add_initializer();
      t->set_name(name);
      t->set_data_type(onnx::TensorProto::FLOAT);
      for (int64_t d : dims) t->add_dims(d);
      t->set_data_location(onnx::TensorProto::EXTERNAL);
      for (auto [key, value] : std::vector<std::pair<std::string, std::string>>{
               {"location", location}, {"offset", std::to_string(offset)}, {"length", std::to_string(bytes)}}) {
        auto* e = t->add_external_data();
        e->set_key(key);
        e->set_value(value);
      }
    };
    external("w1", {4, 3, 3, 3}, 0, w1.size() * 4);
    external("w2", {4, 5}, second_offset, w2.size() * 4);
    b.node("Conv", {"x", "w1"}, {"c"}, "conv");
    b.node("GlobalAveragePool", {"c"}, {"p"}, "pool");
    b.node("Flatten", {"p"}, {"f"}, "flatten");
    b.node("MatMul", {"f", "w2"}, {"y"}, "fc");
    b.output("y");
    return b;
  };
  temp_file f("external_model");
  const std::string dir = f.path.substr(0, f.path.find_last_of('/'));
  const std::string data_name = "d3_onnx_test_" + std::to_string(::getpid()) + "_weights.bin";
  const std::string data_path = dir + "/" + data_name;
  {
    std::ofstream out(data_path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(w1.data()), std::streamsize(w1.size() * 4));
    out.write("pad!", 4);  // the second tensor at an offset of its own
    out.write(reinterpret_cast<const char*>(w2.data()), std::streamsize(w2.size() * 4));
  }
  const size_t second = w1.size() * 4 + 4;
  onnx_builder good = model(data_name, second);
  good.write(f);
  graph g = import_ok(f.path, false);
  BOOST_CHECK_EQUAL(find_layer(g, "conv").weights.size(), w1.size());
  // d3's convolution layout is OHWI: output 0, row 0, column 0, input channel 1 is ONNX's w1[0][1][0][0].
  BOOST_CHECK_EQUAL(find_layer(g, "conv").weights.data()[1], w1[9]);
  BOOST_CHECK_EQUAL(find_layer(g, "fc").weights.data()[1], w2[5]);  // [M][K] from ONNX's [K, M]
  check_runs_like_reference(good, "external_run");

  auto expect = [&](const onnx_builder& b, const std::string& tag, const std::string& word) {
    const std::string message = import_error(b, tag);
    BOOST_CHECK_MESSAGE(message.find(word) != std::string::npos, tag << ": " << message);
  };
  expect(model("../" + data_name, second), "ext_escape", "outside the model's directory");
  expect(model("/etc/passwd", second), "ext_absolute", "outside the model's directory");
  expect(model(data_name, second + 8), "ext_past_end", "which holds");
  expect(model("missing.bin", second), "ext_missing", "cannot open");
  std::string bytes;
  good.model.SerializeToString(&bytes);
  auto from_memory = import_onnx_bytes(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "memory");
  BOOST_CHECK(!from_memory.is_ok());
  BOOST_CHECK(from_memory.message().find("external") != std::string::npos);
  std::remove(data_path.c_str());
}

// A graph input returned as it is gets a copy layer, so the executor has something to compute.
BOOST_AUTO_TEST_CASE(identity_of_an_input_is_a_copy) {
  onnx_builder b;
  b.input("x", {1, 3, 2, 2});
  b.node("Identity", {"x"}, {"y"}, "id");
  b.output("y");
  temp_file f("identity");
  b.write(f);
  graph g = import_ok(f.path, false);
  const layer& copy = g.layers[size_t(g.outputs.at(0))];
  BOOST_CHECK_EQUAL(copy.name, "y");
  BOOST_CHECK(copy.kind == layer_kind::channel_slice);
  BOOST_CHECK_EQUAL(copy.channel_end, 3);
  check_runs_like_reference(b, "identity_run");
}

// Opset 6: Add with legacy broadcast (B aligned at axis 1) folds into the convolution's bias;
// a Transpose of a constant weight before MatMul is folded.
BOOST_AUTO_TEST_CASE(opset6_broadcast_and_constant_transpose) {
  onnx_builder b(6);
  b.input("x", {2, 3, 4, 4});
  b.weights("w", {5, 3, 1, 1}, 70, 0.5f);
  b.node("Conv", {"x", "w"}, {"c"}, "conv");
  b.floats("shift", {5}, {1.0f, 2.0f, 3.0f, 4.0f, 5.0f});
  auto* add = b.node("Add", {"c", "shift"}, {"a"}, "add");
  set_int(add, "broadcast", 1);
  set_int(add, "axis", 1);
  b.node("GlobalAveragePool", {"a"}, {"p"}, "pool");
  b.node("Flatten", {"p"}, {"flat"}, "flatten");
  auto wt = b.weights("fc.weight", {6, 5}, 71, 0.5f);  // [N, K], transposed at run time
  auto* t = b.node("Transpose", {"fc.weight"}, {"fc.weight_t"}, "transpose");
  set_ints(t, "perm", {1, 0});
  b.node("MatMul", {"flat", "fc.weight_t"}, {"y"}, "matmul");
  b.output("y");
  temp_file f("opset6");
  b.write(f);
  graph g = import_ok(f.path, false);
  BOOST_CHECK_EQUAL(g.layers.size(), 5u);  // input, conv, pool, flatten, fc
  const layer& conv = find_layer(g, "conv");
  BOOST_REQUIRE_EQUAL(conv.bias.size(), 5u);
  BOOST_CHECK_EQUAL(conv.bias.data()[3], 4.0f);
  const layer& fc = find_layer(g, "matmul");
  BOOST_CHECK_EQUAL(fc.weights.data()[2 * 5 + 4], wt[2 * 5 + 4]);  // back to [N][K]
  BOOST_CHECK_EQUAL(fc.output_shape, (tensor_shape{2, 1, 1, 6}));
  check_runs_like_reference(b, "opset6_run");
}

// Constant folding is bounded per constant (4 M elements) and over the whole file (16 M), so a
// hostile file costs the importer neither gigabytes nor seconds; both errors name the node.
BOOST_AUTO_TEST_CASE(constant_folding_is_bounded_per_constant_and_in_all) {
  auto model = [](int constants, int64_t elements) {
    onnx_builder b;
    b.input("x", {1, 3, 4, 4});
    b.constant_ints("shape", {1}, {elements});
    for (int k = 0; k < constants; ++k)
      b.node("ConstantOfShape", {"shape"}, {"c" + std::to_string(k)}, "fill_" + std::to_string(k));
    b.node("Relu", {"x"}, {"y"}, "r");
    b.output("y");
    return b;
  };
  {  // four of 4 M: 16 M in all, within both bounds
    temp_file f("fold_ok");
    model(4, int64_t(1) << 22).write(f);
    auto g = import_onnx(f.path);
    BOOST_TEST(g.is_ok(), g.message());
  }
  const std::string one = import_error(model(1, (int64_t(1) << 22) + 1), "fold_one");
  BOOST_TEST(one.find("node 'fill_0' (ConstantOfShape): shape [4194305] is invalid or too large") != std::string::npos, one);
  const std::string all = import_error(model(5, int64_t(1) << 22), "fold_all");
  BOOST_TEST(all.find("node 'fill_4' (ConstantOfShape): constant folding exceeds 16777216 elements in all") !=
                 std::string::npos, all);
}
