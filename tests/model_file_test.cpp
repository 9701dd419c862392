// Model files (schema/model_file.hpp): save -> load round trips that execute bit-identically and
// borrow their weights from the file mapping, and malformed files that must fail with an error
// naming the problem (never a crash).
#define BOOST_TEST_MODULE model_file
#include <boost/test/unit_test.hpp>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/tensor.hpp"
#include "schema/model.capnp.h"
#include "schema/model_file.hpp"

using namespace d3;
namespace fs = std::filesystem;

namespace {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() /
           ("d3_model_file_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

// The error message of a result, or "" when it is OK (message() itself requires an error).
template <class T>
std::string why(const result<T>& r) {
  return r.is_ok() ? std::string() : r.message();
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const void* data, size_t size) {
  // Replace rather than truncate: ext4 flushes a truncated-and-rewritten file on close (slow).
  std::error_code ec;
  fs::remove(path, ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  BOOST_REQUIRE(out.good());
}
void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  write_bytes(path, bytes.data(), bytes.size());
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

weight_blob random_blob(size_t count, seeded_generator& gen, float low = -0.5f, float high = 0.5f) {
  std::vector<float> v(count);
  for (float& x : v) x = gen.uniform(low, high);
  return weight_blob::from_vector(std::move(v));
}

layer make_layer(std::string name, layer_kind kind, std::vector<int> inputs) {
  layer l;
  l.name = std::move(name);
  l.kind = kind;
  l.inputs = std::move(inputs);
  return l;
}

layer make_conv(std::string name, int input, int in_c, int out_c, int k, int stride, int pad, int groups,
                int dilation, bool bias, seeded_generator& gen) {
  layer l = make_layer(std::move(name), layer_kind::convolution, {input});
  l.window.kernel_h = l.window.kernel_w = k;
  l.window.stride_h = l.window.stride_w = stride;
  l.window.dilation_h = l.window.dilation_w = dilation;
  l.window.pad = {pad, pad, pad, pad};
  l.output_channels = out_c;
  l.groups = groups;
  l.weights = random_blob(size_t(out_c) * k * k * (in_c / groups), gen);
  if (bias) l.bias = random_blob(size_t(out_c), gen);
  return l;
}

// Every layer kind, odd spatial sizes, asymmetric options: conv+bn+relu, ceil-mode max pool,
// grouped/dilated/depthwise convolutions, add+relu6, average pool without padding counts, concat,
// global pooling, flatten, fully connected, softmax. Two outputs. Shapes inferred, not prepared.
graph small_graph(uint64_t seed = 7) {
  seeded_generator gen(seed);
  graph g;
  g.name = "small \"test\" graph";
  layer in = make_layer("data", layer_kind::input, {});
  in.input_shape = tensor_shape{1, 9, 11, 3};
  g.layers.push_back(in);                                                              // 0: 1x3x9x11
  g.layers.push_back(make_conv("conv1", 0, 3, 8, 3, 1, 1, 1, 1, true, gen));           // 1: 8x9x11
  layer bn = make_layer("bn1", layer_kind::batch_norm, {1});
  {
    std::vector<float> p(4 * 8);
    for (int c = 0; c < 8; ++c) {
      p[c] = gen.uniform(0.5f, 1.5f);        // gamma
      p[8 + c] = gen.uniform(-0.2f, 0.2f);   // beta
      p[16 + c] = gen.uniform(-0.1f, 0.1f);  // running mean
      p[24 + c] = gen.uniform(0.5f, 2.0f);   // running var
    }
    bn.weights = weight_blob::from_vector(std::move(p));
    bn.epsilon = 1e-3f;
  }
  g.layers.push_back(bn);                                                               // 2
  layer relu = make_layer("relu1", layer_kind::clamp, {2});
  relu.act = activation::relu();
  g.layers.push_back(relu);                                                             // 3
  layer pool = make_layer("pool1", layer_kind::max_pool, {3});
  pool.window.kernel_h = pool.window.kernel_w = 2;
  pool.window.stride_h = pool.window.stride_w = 2;
  pool.window.ceil_mode = true;
  g.layers.push_back(pool);                                                             // 4: 8x5x6
  g.layers.push_back(make_conv("conv2a", 4, 8, 8, 3, 1, 1, 1, 1, false, gen));          // 5: 8x5x6
  g.layers.push_back(make_conv("conv2b", 4, 8, 8, 1, 1, 0, 2, 1, true, gen));           // 6: grouped
  g.layers.push_back(make_layer("add", layer_kind::add, {5, 6}));                       // 7
  layer relu6 = make_layer("relu6", layer_kind::clamp, {7});
  relu6.act = activation::relu6();
  g.layers.push_back(relu6);                                                            // 8
  layer avg = make_layer("avgpool", layer_kind::average_pool, {8});
  avg.window.kernel_h = 3;  // asymmetric on purpose: a swapped field cannot go unnoticed
  avg.window.kernel_w = 2;
  avg.window.pad = {0, 1, 2, 0};  // top, left, bottom, right
  avg.window.count_include_pad = false;
  g.layers.push_back(avg);                                                              // 9: 8x5x6
  g.layers.push_back(make_layer("concat", layer_kind::concat, {8, 9}));                 // 10: 16x5x6
  g.layers.push_back(make_conv("dwconv", 10, 16, 16, 3, 2, 2, 16, 2, true, gen));       // 11: 16x3x4
  g.layers.back().window.dilation_w = 1;
  g.layers.push_back(make_layer("gap", layer_kind::global_average_pool, {11}));         // 12: 16x1x1
  g.layers.push_back(make_layer("flatten", layer_kind::flatten, {12}));                 // 13: [1, 16]
  layer fc = make_layer("fc", layer_kind::fully_connected, {13});
  fc.output_channels = 10;
  fc.weights = random_blob(10 * 16, gen);
  fc.bias = random_blob(10, gen);
  g.layers.push_back(fc);                                                               // 14: [1, 10]
  g.layers.push_back(make_layer("prob", layer_kind::softmax, {14}));                    // 15
  g.outputs = {15, 10};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  return g;
}

// Every kind appended for ONNX exports: a squeeze-and-excitation block (sigmoid gate, per-channel
// multiply with a fused ReLU6 after load, per-channel add) feeding a ShuffleNet V2 unit (shuffle,
// split by two channel slices, an asymmetrically padded branch, concat, shuffle). Odd channel
// counts; also an element-wise multiply of equal shapes. Two outputs. Shapes inferred, not prepared.
graph new_kinds_graph(uint64_t seed = 17) {
  seeded_generator gen(seed);
  graph g;
  g.name = "new kinds";
  layer in = make_layer("data", layer_kind::input, {});
  in.input_shape = tensor_shape{1, 9, 11, 5};
  g.layers.push_back(in);                                                              // 0: 1x5x9x11
  g.layers.push_back(make_conv("conv1", 0, 5, 12, 3, 1, 1, 1, 1, true, gen));          // 1: 12x9x11
  g.layers.push_back(make_layer("squeeze", layer_kind::global_average_pool, {1}));     // 2: 12x1x1
  layer fc1 = make_layer("fc1", layer_kind::fully_connected, {2});
  fc1.output_channels = 3;
  fc1.weights = random_blob(3 * 12, gen);
  fc1.bias = random_blob(3, gen);
  g.layers.push_back(fc1);                                                             // 3: 3x1x1
  layer fc2 = make_layer("fc2", layer_kind::fully_connected, {3});
  fc2.output_channels = 12;
  fc2.weights = random_blob(12 * 3, gen);
  fc2.bias = random_blob(12, gen);
  g.layers.push_back(fc2);                                                             // 4: 12x1x1
  g.layers.push_back(make_layer("gate", layer_kind::sigmoid, {4}));                    // 5
  g.layers.push_back(make_layer("excite", layer_kind::multiply, {1, 5}));              // 6: 12x9x11
  layer relu6 = make_layer("excite_relu6", layer_kind::clamp, {6});
  relu6.act = activation::relu6();
  g.layers.push_back(relu6);                                                           // 7
  g.layers.push_back(make_layer("shift", layer_kind::add, {7, 5}));                    // 8
  layer shuffle = make_layer("shuffle", layer_kind::channel_shuffle, {8});
  shuffle.groups = 3;
  g.layers.push_back(shuffle);                                                         // 9
  layer left = make_layer("left", layer_kind::channel_slice, {9});
  left.channel_begin = 0;
  left.channel_end = 5;
  g.layers.push_back(left);                                                            // 10: 5x9x11
  layer right = make_layer("right", layer_kind::channel_slice, {9});
  right.channel_begin = 5;
  right.channel_end = 12;
  g.layers.push_back(right);                                                           // 11: 7x9x11
  layer pad = make_layer("right_pad", layer_kind::pad, {11});
  pad.window.pad = {2, 0, 1, 3};  // top, left, bottom, right: asymmetric on purpose
  g.layers.push_back(pad);                                                             // 12: 7x12x14
  layer rconv = make_conv("right_conv", 12, 7, 7, 3, 1, 0, 7, 1, true, gen);
  rconv.window.kernel_h = 4;  // 12x14 -> 9x11 with a 4x4 depthwise kernel
  rconv.window.kernel_w = 4;
  rconv.weights = random_blob(7 * 4 * 4, gen);
  g.layers.push_back(rconv);                                                           // 13: 7x9x11
  g.layers.push_back(make_layer("square", layer_kind::multiply, {13, 13}));            // 14
  g.layers.push_back(make_layer("cat", layer_kind::concat, {10, 14}));                 // 15: 12x9x11
  layer shuffle2 = make_layer("shuffle2", layer_kind::channel_shuffle, {15});
  shuffle2.groups = 2;
  g.layers.push_back(shuffle2);                                                        // 16
  g.outputs = {16, 5};
  status s = infer_shapes(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  return g;
}

graph prepared(graph g) {
  status s = prepare_for_inference(g);
  BOOST_REQUIRE_MESSAGE(s.is_ok(), s.message());
  return g;
}

// Runs the whole graph on `input` with the executor; returns the outputs keyed by name.
std::map<std::string, tensor> run(const graph& g, const tensor& input) {
  auto ex = executor::create(g);
  BOOST_REQUIRE_MESSAGE(ex.is_ok(), why(ex));
  BOOST_REQUIRE_EQUAL((*ex)->input_names().size(), 1u);
  std::map<std::string, tensor> inputs;
  inputs.emplace((*ex)->input_names()[0], input);
  auto out = (*ex)->run(inputs);
  BOOST_REQUIRE_MESSAGE(out.is_ok(), why(out));
  return std::move(out).value();
}

bool same_bytes(const weight_blob& a, const weight_blob& b) {
  return a.size() == b.size() && (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Structural equality of two graphs (weights compared byte by byte).
void check_same_graph(const graph& expected, const graph& actual) {
  BOOST_TEST(actual.name == expected.name);
  BOOST_TEST_REQUIRE(actual.layers.size() == expected.layers.size());
  BOOST_TEST(actual.outputs == expected.outputs);
  for (size_t i = 0; i < expected.layers.size(); ++i) {
    const layer& e = expected.layers[i];
    const layer& a = actual.layers[i];
    BOOST_TEST_CONTEXT("layer " << i << " '" << e.name << "'") {
      BOOST_TEST(a.name == e.name);
      BOOST_TEST(int(a.kind) == int(e.kind));
      BOOST_TEST(a.inputs == e.inputs);
      BOOST_TEST((a.output_shape == e.output_shape));
      if (e.kind == layer_kind::input) BOOST_TEST((a.input_shape == e.input_shape));
      BOOST_TEST(a.window.kernel_h == e.window.kernel_h);
      BOOST_TEST(a.window.kernel_w == e.window.kernel_w);
      BOOST_TEST(a.window.stride_h == e.window.stride_h);
      BOOST_TEST(a.window.stride_w == e.window.stride_w);
      BOOST_TEST(a.window.dilation_h == e.window.dilation_h);
      BOOST_TEST(a.window.dilation_w == e.window.dilation_w);
      BOOST_TEST((a.window.pad == e.window.pad));
      BOOST_TEST(a.window.ceil_mode == e.window.ceil_mode);
      BOOST_TEST(a.window.count_include_pad == e.window.count_include_pad);
      BOOST_TEST(a.output_channels == e.output_channels);
      BOOST_TEST(a.groups == e.groups);
      BOOST_TEST(a.channel_begin == e.channel_begin);
      BOOST_TEST(a.channel_end == e.channel_end);
      BOOST_TEST(a.scale == e.scale);
      BOOST_TEST(a.row_begin == e.row_begin);
      BOOST_TEST(a.row_end == e.row_end);
      BOOST_TEST(std::memcmp(&a.epsilon, &e.epsilon, sizeof(float)) == 0);
      BOOST_TEST((a.act == e.act));  // infinities survive the file
      BOOST_TEST(same_bytes(a.weights, e.weights));
      BOOST_TEST(same_bytes(a.bias, e.bias));
    }
  }
}

// The address ranges of this process's mappings of `path` (from /proc/self/maps).
std::vector<std::pair<uintptr_t, uintptr_t>> mappings_of(const std::string& path) {
  const std::string target = fs::canonical(path).string();
  std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode, name;
    fields >> range >> perms >> offset >> dev >> inode;
    std::getline(fields >> std::ws, name);
    if (name != target) continue;
    auto dash = range.find('-');
    ranges.emplace_back(std::stoull(range.substr(0, dash), nullptr, 16),
                        std::stoull(range.substr(dash + 1), nullptr, 16));
  }
  return ranges;
}

bool points_into(const void* p, const std::vector<std::pair<uintptr_t, uintptr_t>>& ranges) {
  auto a = reinterpret_cast<uintptr_t>(p);
  for (auto [begin, end] : ranges)
    if (a >= begin && a < end) return true;
  return false;
}

// Loads `path`, expecting an error that names the file and contains `word`.
void expect_error(const std::string& path, const std::string& word) {
  auto r = load_model(path);
  BOOST_TEST_REQUIRE(!r.is_ok(), "loading " << path << " should fail with '" << word << "'");
  BOOST_TEST(contains(r.message(), word), "message: " << r.message() << " (expected '" << word << "')");
  BOOST_TEST(contains(r.message(), "'" + path + "'"), "message does not name the file: " << r.message());
}

// A model file written from a hand-built Cap'n Proto message (for content save_model never writes).
void write_raw_model(const std::string& path, capnp::MessageBuilder& builder) {
  std::vector<uint8_t> bytes = {'D', '3', 'M', 'O', 'D', 'E', 'L', '\0'};
  auto flat = capnp::messageToFlatArray(builder);
  auto b = flat.asBytes();
  bytes.insert(bytes.end(), b.begin(), b.end());
  write_bytes(path, bytes);
}

// A minimal valid model (input -> fc) built directly with the schema; tests then break one field.
schema::Model::Builder minimal_raw_model(capnp::MessageBuilder& builder) {
  auto m = builder.initRoot<schema::Model>();
  m.setMagic(schema::MODEL_MAGIC);
  m.setVersion(schema::MODEL_FORMAT_VERSION);
  m.setName("raw");
  auto layers = m.initLayers(2);
  layers[0].setName("in");
  layers[0].setKind(schema::LayerKind::INPUT);
  layers[0].getInputShape().setC(4);
  layers[1].setName("fc");
  layers[1].setKind(schema::LayerKind::FULLY_CONNECTED);
  layers[1].initInputs(1).set(0, 0);
  layers[1].setOutputChannels(2);
  auto w = layers[1].initWeights(2 * 4 * sizeof(float));
  for (size_t i = 0; i < 8; ++i) {
    float v = float(i) * 0.25f;
    std::memcpy(w.begin() + i * sizeof(float), &v, sizeof v);
  }
  m.initOutputs(1).set(0, 1);
  return m;
}

}  // namespace

// ------------------------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(small_graph_round_trip_runs_bit_identically) {
  temp_dir dir;
  const std::string path = dir.file("small.d3m");
  graph original = small_graph();
  BOOST_TEST_REQUIRE(save_model(original, path).is_ok());
  BOOST_TEST(looks_like_model_file(path));
  BOOST_TEST(!fs::exists(path + ".tmp"));

  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  graph expected = prepared(original);
  check_same_graph(expected, *loaded);
  // bn1 folded into conv1, relu1 and relu6 fused: 16 layers became 13.
  BOOST_TEST(loaded->layers.size() == 13u);

  tensor input = random_tensor(tensor_shape{1, 9, 11, 3}, 42);
  auto want = run(expected, input);
  auto got = run(*loaded, input);
  BOOST_TEST_REQUIRE(want.size() == 2u);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) {
    BOOST_TEST_CONTEXT("output " << name) {
      auto it = got.find(name);
      BOOST_TEST_REQUIRE((it != got.end()));
      BOOST_TEST(bitwise_equal(it->second, t));
    }
  }
  // Softmax output really is a distribution (the run computed something).
  const tensor& prob = want.at("prob");
  BOOST_TEST((prob.shape() == tensor_shape{1, 1, 1, 10}));
  float sum = 0;
  for (size_t i = 0; i < prob.elements(); ++i) sum += prob.data()[i];
  BOOST_TEST(std::fabs(sum - 1.0f) < 1e-4f);
}

BOOST_AUTO_TEST_CASE(loaded_weights_point_into_the_file_mapping) {
  temp_dir dir;
  const std::string path = dir.file("mapped.d3m");
  graph original = small_graph();
  BOOST_TEST_REQUIRE(save_model(original, path).is_ok());
  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  auto ranges = mappings_of(path);
  BOOST_TEST_REQUIRE(!ranges.empty(), "the model file is not mapped while its graph is alive");

  // Layers whose weights prepare_for_inference leaves alone must borrow them from the mapping.
  for (const char* name : {"fc", "conv2a", "conv2b", "dwconv"}) {
    BOOST_TEST_CONTEXT("layer " << name) {
      int a = loaded->find(name), e = original.find(name);
      BOOST_TEST_REQUIRE(a >= 0);
      const layer& la = loaded->layers[a];
      const layer& le = original.layers[e];
      BOOST_TEST(la.weights.data() != le.weights.data());
      BOOST_TEST(same_bytes(la.weights, le.weights));
      BOOST_TEST(points_into(la.weights.data(), ranges));
      BOOST_TEST(reinterpret_cast<uintptr_t>(la.weights.data()) % 8 == 0u);
      if (!la.bias.empty()) BOOST_TEST(points_into(la.bias.data(), ranges));
    }
  }
  // The mapping lives exactly as long as a blob borrows it.
  weight_blob kept = loaded->layers[loaded->find("fc")].weights;
  loaded = status::error("dropped");
  BOOST_TEST(!mappings_of(path).empty());
  BOOST_TEST(same_bytes(kept, original.layers[original.find("fc")].weights));
  kept = weight_blob();
  BOOST_TEST(mappings_of(path).empty());
}

BOOST_AUTO_TEST_CASE(prepared_graph_round_trip) {
  temp_dir dir;
  const std::string path = dir.file("prepared.d3m");
  graph p = prepared(small_graph(11));
  BOOST_TEST_REQUIRE(save_model(p, path).is_ok());
  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  check_same_graph(p, *loaded);
  tensor input = random_tensor(tensor_shape{1, 9, 11, 3}, 5);
  auto want = run(p, input);
  auto got = run(*loaded, input);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) BOOST_TEST(bitwise_equal(got.at(name), t), "output " << name);

  // Saving over an existing file replaces it and leaves no temporary behind.
  BOOST_TEST_REQUIRE(save_model(small_graph(12), path).is_ok());
  BOOST_TEST(!fs::exists(path + ".tmp"));
  auto replaced = load_model(path);
  BOOST_TEST_REQUIRE(replaced.is_ok(), why(replaced));
  BOOST_TEST(!same_bytes(replaced->layers[replaced->find("fc")].weights, p.layers[p.find("fc")].weights));
}

BOOST_AUTO_TEST_CASE(saving_over_the_file_a_graph_borrows_from) {
  // The new file replaces the old one by rename, so the old mapping stays valid while it is read.
  temp_dir dir;
  const std::string path = dir.file("self.d3m");
  graph original = prepared(small_graph(21));
  BOOST_TEST_REQUIRE(save_model(original, path).is_ok());
  auto first = load_model(path);
  BOOST_TEST_REQUIRE(first.is_ok(), why(first));
  BOOST_TEST_REQUIRE(save_model(*first, path).is_ok());
  auto second = load_model(path);
  BOOST_TEST_REQUIRE(second.is_ok(), why(second));
  check_same_graph(original, *second);
  check_same_graph(original, *first);
}

BOOST_AUTO_TEST_CASE(resnet18_round_trip_runs_bit_identically) {
  auto model = builtin_model_unprepared("resnet18");
  BOOST_TEST_REQUIRE(model.is_ok(), why(model));
  temp_dir dir;
  const std::string path = dir.file("resnet18.d3m");
  BOOST_TEST_REQUIRE(save_model(*model, path).is_ok());

  size_t weight_bytes = 0;
  for (const layer& l : model->layers) weight_bytes += (l.weights.size() + l.bias.size()) * sizeof(float);
  const size_t file_bytes = fs::file_size(path);
  BOOST_TEST(file_bytes >= weight_bytes);
  BOOST_TEST(file_bytes < weight_bytes + 256 * 1024, "file " << file_bytes << " bytes, weights " << weight_bytes);

  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  graph expected = prepared(std::move(model).value());
  check_same_graph(expected, *loaded);
  tensor input = random_tensor(tensor_shape{1, 224, 224, 3}, 2021);
  auto want = run(expected, input);
  auto got = run(*loaded, input);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) BOOST_TEST(bitwise_equal(got.at(name), t), "output " << name);
}

// Saves `original` (its first layer an input of `input_shape`), loads it back, checks the graph
// equals the prepared original and runs bit-identically; returns the loaded graph.
graph round_trip(const graph& original, const tensor_shape& input_shape, uint64_t seed) {
  temp_dir dir;
  const std::string path = dir.file("round_trip.d3m");
  BOOST_TEST_REQUIRE(save_model(original, path).is_ok());
  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  graph expected = prepared(original);
  check_same_graph(expected, *loaded);
  tensor input = random_tensor(input_shape, seed);
  auto want = run(expected, input);
  auto got = run(*loaded, input);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) BOOST_TEST(bitwise_equal(got.at(name), t), name);
  return std::move(loaded.value());
}

// ConvNeXt's per-pixel kinds: a layer norm keeps its epsilon and gamma | beta, GELU its kind; and
// EfficientNet's SiLU.
BOOST_AUTO_TEST_CASE(layer_norm_gelu_and_silu_round_trip) {
  seeded_generator gen(23);
  graph original;
  original.name = "convnext kinds";
  layer in = make_layer("data", layer_kind::input, {});
  in.input_shape = tensor_shape{1, 6, 7, 8};
  original.layers.push_back(in);
  original.layers.push_back(make_conv("dw", 0, 8, 8, 3, 1, 1, 8, 1, true, gen));
  layer norm = make_layer("norm", layer_kind::layer_norm, {1});
  norm.weights = random_blob(16, gen);
  norm.epsilon = 1e-6f;
  original.layers.push_back(norm);
  original.layers.push_back(make_layer("gelu", layer_kind::gelu, {2}));
  original.layers.push_back(make_layer("silu", layer_kind::silu, {3}));
  original.outputs = {4};
  const graph loaded = round_trip(original, in.input_shape, 78);
  const layer& n = loaded.layers[loaded.find("norm")];
  BOOST_TEST((n.kind == layer_kind::layer_norm));
  BOOST_TEST(n.epsilon == 1e-6f);
  BOOST_TEST((loaded.layers[loaded.find("gelu")].kind == layer_kind::gelu));
  BOOST_TEST((loaded.layers[loaded.find("silu")].kind == layer_kind::silu));
}

// Token kinds keep their parameters: prepended tokens, the position addend, heads and scale of
// attention, the picked rows.
BOOST_AUTO_TEST_CASE(token_kinds_round_trip) {
  seeded_generator gen(29);
  graph original;
  original.name = "token kinds";
  layer in = make_layer("data", layer_kind::input, {});
  in.input_shape = tensor_shape{1, 4, 3, 8};
  original.layers.push_back(in);
  layer prepend = make_layer("class", layer_kind::prepend_tokens, {0});
  prepend.row_end = 1;
  prepend.weights = random_blob(8, gen);
  original.layers.push_back(prepend);
  layer position = make_layer("position", layer_kind::constant_add, {1});
  position.weights = random_blob(13 * 8, gen);
  original.layers.push_back(position);
  layer attention = make_layer("attention", layer_kind::attention, {2, 2, 2});
  attention.groups = 2;
  attention.scale = 0.375f;
  original.layers.push_back(attention);
  layer pick = make_layer("pick", layer_kind::row_slice, {3});
  pick.row_begin = 0;
  pick.row_end = 1;
  original.layers.push_back(pick);
  original.outputs = {4};
  const graph loaded = round_trip(original, in.input_shape, 79);
  BOOST_TEST(loaded.layers[loaded.find("attention")].scale == 0.375f);
  BOOST_TEST(loaded.layers[loaded.find("attention")].groups == 2);
  BOOST_TEST(loaded.layers[loaded.find("class")].row_end == 1);
}

// Swin's kinds keep their parameters: the window, heads, scale and score addend of windowed
// attention, a roll's first row and column, a strided slice's rows, columns and steps.
BOOST_AUTO_TEST_CASE(window_kinds_round_trip) {
  seeded_generator gen(31);
  graph original;
  original.name = "window kinds";
  layer in = make_layer("data", layer_kind::input, {});
  in.input_shape = tensor_shape{1, 8, 6, 8};
  original.layers.push_back(in);
  layer roll = make_layer("roll", layer_kind::roll, {0});
  roll.row_begin = 3;
  roll.col_begin = 5;
  original.layers.push_back(roll);
  layer attention = make_layer("windows", layer_kind::window_attention, {1, 1, 1});
  attention.groups = 2;
  attention.scale = 0.25f;
  attention.window.kernel_h = 4;
  attention.window.kernel_w = 3;
  attention.weights = random_blob(4 * 2 * 12 * 12, gen);  // one table per window
  original.layers.push_back(attention);
  layer slice = make_layer("phase", layer_kind::spatial_slice, {2});
  slice.row_begin = 1;
  slice.row_end = 8;
  slice.window.stride_h = 2;
  slice.col_begin = 0;
  slice.col_end = 5;
  slice.window.stride_w = 3;
  original.layers.push_back(slice);
  original.outputs = {3};
  const graph loaded = round_trip(original, in.input_shape, 80);
  const layer& r = loaded.layers[loaded.find("roll")];
  BOOST_TEST(r.row_begin == 3);
  BOOST_TEST(r.col_begin == 5);
  const layer& a = loaded.layers[loaded.find("windows")];
  BOOST_TEST(a.window.kernel_h == 4);
  BOOST_TEST(a.window.kernel_w == 3);
  BOOST_TEST(a.weights.size() == size_t(4 * 2 * 12 * 12));
  const layer& p = loaded.layers[loaded.find("phase")];
  BOOST_TEST((p.output_shape == tensor_shape{1, 4, 2, 8}));
  BOOST_TEST(p.col_end == 5);
  BOOST_TEST(p.window.stride_w == 3);
}

BOOST_AUTO_TEST_CASE(new_kinds_round_trip_runs_bit_identically) {
  temp_dir dir;
  const std::string path = dir.file("new_kinds.d3m");
  graph original = new_kinds_graph();
  BOOST_TEST_REQUIRE(save_model(original, path).is_ok());
  auto loaded = load_model(path);
  BOOST_TEST_REQUIRE(loaded.is_ok(), why(loaded));
  graph expected = prepared(original);
  check_same_graph(expected, *loaded);
  // excite_relu6 fused into the multiply: 17 layers became 16.
  BOOST_TEST(loaded->layers.size() == 16u);
  const layer& excite = loaded->layers[loaded->find("excite")];
  BOOST_TEST((excite.act == activation::relu6()));
  const layer& right = loaded->layers[loaded->find("right")];
  BOOST_TEST(right.channel_begin == 5);
  BOOST_TEST(right.channel_end == 12);
  BOOST_TEST((loaded->layers[loaded->find("right_pad")].window.pad == padding{2, 0, 1, 3}));
  BOOST_TEST(loaded->layers[loaded->find("shuffle")].groups == 3);
  const layer_kind kinds[] = {layer_kind::multiply, layer_kind::sigmoid, layer_kind::channel_shuffle,
                              layer_kind::channel_slice, layer_kind::pad};
  for (layer_kind k : kinds) {
    bool found = false;
    for (const layer& l : loaded->layers) found = found || l.kind == k;
    BOOST_TEST(found, "no " << to_string(k) << " layer survived the round trip");
  }

  tensor input = random_tensor(tensor_shape{1, 9, 11, 5}, 77);
  auto want = run(expected, input);
  auto got = run(*loaded, input);
  BOOST_TEST_REQUIRE(want.size() == 2u);
  BOOST_TEST_REQUIRE(got.size() == want.size());
  for (const auto& [name, t] : want) {
    BOOST_TEST_CONTEXT("output " << name) {
      auto it = got.find(name);
      BOOST_TEST_REQUIRE((it != got.end()));
      BOOST_TEST(bitwise_equal(it->second, t));
    }
  }
  // The gate is a sigmoid: strictly inside (0, 1), and the run computed something.
  const tensor& gate = want.at("gate");
  BOOST_TEST((gate.shape() == tensor_shape{1, 1, 1, 12}));
  for (size_t i = 0; i < gate.elements(); ++i) BOOST_TEST((gate.data()[i] > 0.0f && gate.data()[i] < 1.0f));
  BOOST_TEST((want.at("shuffle2").shape() == tensor_shape{1, 9, 11, 12}));

  // The prepared graph round-trips too (a fused clamp on the multiply survives the file).
  const std::string prepared_path = dir.file("new_kinds_prepared.d3m");
  BOOST_TEST_REQUIRE(save_model(expected, prepared_path).is_ok());
  auto again = load_model(prepared_path);
  BOOST_TEST_REQUIRE(again.is_ok(), why(again));
  check_same_graph(expected, *again);
  auto got_again = run(*again, input);
  for (const auto& [name, t] : want) BOOST_TEST(bitwise_equal(got_again.at(name), t), "output " << name);
}

BOOST_AUTO_TEST_CASE(new_kinds_with_bad_parameters) {
  temp_dir dir;
  const std::string path = dir.file("bad_new_kinds.d3m");
  {
    graph g = new_kinds_graph();
    g.layers[g.find("right")].channel_end = 13;  // beyond the 12 channels
    BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
    expect_error(path, "'right'");
    expect_error(path, "[5, 13)");
  }
  {
    graph g = new_kinds_graph();
    g.layers[g.find("shuffle")].groups = 5;  // does not divide 12
    BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
    expect_error(path, "'shuffle'");
    expect_error(path, "groups 5");
  }
  {
    graph g = new_kinds_graph();
    g.layers[g.find("right_pad")].window.pad.left = -1;
    BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
    expect_error(path, "'right_pad'");
    expect_error(path, "padding -1");
  }
  {
    graph g = new_kinds_graph();
    g.layers[g.find("excite")].inputs = {g.find("conv1"), g.find("fc1")};  // 3 channels for 12
    BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
    expect_error(path, "'excite'");
    expect_error(path, "1x3x1x1");
  }
  {
    graph g = new_kinds_graph();
    g.layers[g.find("gate")].act = activation::relu();  // sigmoid has no fused clamp
    BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
    expect_error(path, "'gate'");
    expect_error(path, "clamp");
  }
  {
    capnp::MallocMessageBuilder builder;
    minimal_raw_model(builder).getLayers()[1].setChannelBegin(-4);
    write_raw_model(path, builder);
    expect_error(path, "channel range [-4, 0)");
  }
  {
    capnp::MallocMessageBuilder builder;
    const int past_the_last = int(layer_kind::silu) + 1;  // one past the newest kind
    minimal_raw_model(builder).getLayers()[1].setKind(static_cast<schema::LayerKind>(past_the_last));
    write_raw_model(path, builder);
    expect_error(path, "unknown layer kind " + std::to_string(past_the_last));
  }
  {
    // The last new kind is known: a raw pad layer after the input loads and pads.
    capnp::MallocMessageBuilder builder;
    auto m = minimal_raw_model(builder);
    auto l = m.getLayers()[1];
    l.setName("raw_pad");
    l.setKind(schema::LayerKind::PAD);
    l.setOutputChannels(0);
    l.disownWeights();
    l.getWindow().setPadBottom(2);
    write_raw_model(path, builder);
    auto r = load_model(path);
    BOOST_TEST_REQUIRE(r.is_ok(), why(r));
    BOOST_TEST(r->layers[1].kind == layer_kind::pad);
    BOOST_TEST((r->layers[1].output_shape == tensor_shape{1, 3, 1, 4}));
  }
}

BOOST_AUTO_TEST_CASE(looks_like_model_file_checks_the_magic) {
  temp_dir dir;
  const std::string model = dir.file("m.d3m"), text = dir.file("t.txt"), empty = dir.file("e"),
                    shorter = dir.file("s");
  BOOST_TEST_REQUIRE(save_model(small_graph(), model).is_ok());
  write_bytes(text, "resnet18\n", 9);
  write_bytes(empty, "", 0);
  write_bytes(shorter, "D3MOD", 5);
  BOOST_TEST(looks_like_model_file(model));
  BOOST_TEST(!looks_like_model_file(text));
  BOOST_TEST(!looks_like_model_file(empty));
  BOOST_TEST(!looks_like_model_file(shorter));
  BOOST_TEST(!looks_like_model_file(dir.file("missing.d3m")));
  BOOST_TEST(!looks_like_model_file("resnet18"));
}

BOOST_AUTO_TEST_CASE(save_errors_name_the_file_and_step) {
  temp_dir dir;
  const std::string path = dir.file("no_such_dir/x.d3m");
  status s = save_model(small_graph(), path);
  BOOST_TEST_REQUIRE(!s.is_ok());
  BOOST_TEST(contains(s.message(), "cannot create"), s.message());
  BOOST_TEST(contains(s.message(), "x.d3m"), s.message());
  BOOST_TEST(contains(s.message(), "No such file or directory"), s.message());

  if (fs::exists("/dev/full")) {
    // A write error (ENOSPC) half way: the temporary file is a symlink to /dev/full, which
    // open(O_TRUNC) follows. The error names the file; neither file nor temporary survives.
    const std::string target = dir.file("full.d3m");
    fs::create_symlink("/dev/full", target + ".tmp");
    status f = save_model(small_graph(), target);
    BOOST_TEST_REQUIRE(!f.is_ok());
    BOOST_TEST(contains(f.message(), "cannot write '" + target + "'"), f.message());
    BOOST_TEST(contains(f.message(), "No space left on device"), f.message());
    BOOST_TEST(!fs::exists(target));
    BOOST_TEST(!fs::is_symlink(target + ".tmp"));
  }
}

// ------------------------------------------------------------------------------------------------
// Malformed files.

BOOST_AUTO_TEST_CASE(missing_and_empty_files) {
  temp_dir dir;
  auto missing = load_model(dir.file("missing.d3m"));
  BOOST_TEST_REQUIRE(!missing.is_ok());
  BOOST_TEST(contains(missing.message(), "cannot open"), missing.message());
  BOOST_TEST(contains(missing.message(), "missing.d3m"), missing.message());

  const std::string empty = dir.file("empty.d3m");
  write_bytes(empty, "", 0);
  expect_error(empty, "empty");

  expect_error(dir.path.string(), "not a regular file");
}

BOOST_AUTO_TEST_CASE(wrong_magic) {
  temp_dir dir;
  const std::string text = dir.file("text.d3m");
  write_bytes(text, "this is not a model file, it is text.\n", 38);
  expect_error(text, "wrong magic");
  const std::string tiny = dir.file("tiny.d3m");
  write_bytes(tiny, "abc", 3);
  expect_error(tiny, "wrong magic");

  // A valid model with one byte of the magic changed.
  const std::string path = dir.file("model.d3m");
  BOOST_TEST_REQUIRE(save_model(small_graph(), path).is_ok());
  std::vector<uint8_t> bytes = read_bytes(path);
  bytes[3] ^= 0x20;
  write_bytes(path, bytes);
  expect_error(path, "wrong magic");

  // The right file prefix but a wrong magic field inside the message.
  capnp::MallocMessageBuilder builder;
  minimal_raw_model(builder).setMagic(0x0123456789abcdefull);
  const std::string inner = dir.file("inner.d3m");
  write_raw_model(inner, builder);
  expect_error(inner, "wrong magic");
}

BOOST_AUTO_TEST_CASE(truncated_files) {
  temp_dir dir;
  const std::string path = dir.file("full.d3m");
  BOOST_TEST_REQUIRE(save_model(small_graph(), path).is_ok());
  const std::vector<uint8_t> bytes = read_bytes(path);
  BOOST_TEST_REQUIRE(bytes.size() > 64u);
  const std::string cut_path = dir.file("cut.d3m");
  for (size_t cut : {size_t(10), bytes.size() / 2, bytes.size() / 2 / 8 * 8, bytes.size() - 8,
                     bytes.size() - 1, size_t(4), size_t(8), size_t(16)}) {
    BOOST_TEST_CONTEXT("cut at " << cut << " of " << bytes.size()) {
      write_bytes(cut_path, bytes.data(), cut);
      expect_error(cut_path, "truncated");
    }
  }
  // Every other cut point too: all of them fail cleanly.
  size_t failures = 0;
  for (size_t cut = 1; cut < bytes.size(); ++cut) {
    write_bytes(cut_path, bytes.data(), cut);
    auto r = load_model(cut_path);
    if (r.is_ok() || !contains(r.message(), "truncated")) {
      if (++failures <= 5) BOOST_ERROR("cut at " << cut << ": " << (r.is_ok() ? "loaded" : r.message()));
    }
  }
  BOOST_TEST(failures == 0u);

  // Extra bytes after the message are an error as well.
  std::vector<uint8_t> longer = bytes;
  longer.resize(bytes.size() + 8, 0);
  write_bytes(cut_path, longer);
  expect_error(cut_path, "after the model");
}

BOOST_AUTO_TEST_CASE(garbage_after_a_valid_magic) {
  temp_dir dir;
  const std::string path = dir.file("garbage.d3m");
  uint64_t x = 0x2545f4914f6cdd1dull;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (size_t size : {size_t(16), size_t(24), size_t(64), size_t(1000), size_t(4096), size_t(4100)}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<uint8_t> bytes = {'D', '3', 'M', 'O', 'D', 'E', 'L', '\0'};
      while (bytes.size() < size) bytes.push_back(uint8_t(next()));
      write_bytes(path, bytes);
      auto r = load_model(path);
      BOOST_TEST(!r.is_ok(), "size " << size << " trial " << trial << " loaded");
      if (!r.is_ok()) BOOST_TEST(contains(r.message(), "model file '" + path + "'"), r.message());
    }
  }

  // A valid segment table followed by garbage words: the Cap'n Proto reader's errors are caught.
  BOOST_TEST_REQUIRE(save_model(small_graph(), path).is_ok());
  const std::vector<uint8_t> valid = read_bytes(path);
  uint32_t segments;
  std::memcpy(&segments, valid.data() + 8, 4);
  const size_t table_end = 8 + (size_t(segments) + 2) / 2 * 8;
  int malformed = 0;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<uint8_t> bytes = valid;
    for (size_t i = table_end; i < bytes.size(); ++i) bytes[i] = uint8_t(next());
    write_bytes(path, bytes);
    auto r = load_model(path);
    BOOST_TEST(!r.is_ok(), "trial " << trial << " loaded");
    if (!r.is_ok() && contains(r.message(), "malformed Cap'n Proto message")) ++malformed;
  }
  BOOST_TEST(malformed > 0);
}

BOOST_AUTO_TEST_CASE(random_bit_flips_never_crash) {
  temp_dir dir;
  const std::string path = dir.file("flip.d3m");
  BOOST_TEST_REQUIRE(save_model(small_graph(), path).is_ok());
  const std::vector<uint8_t> valid = read_bytes(path);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  int errors = 0, loaded = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::vector<uint8_t> bytes = valid;
    for (int k = 0; k <= trial % 4; ++k) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      // Flip within the message structure (first part) more often than inside the weights.
      size_t at = trial % 2 ? x % bytes.size() : x % std::min<size_t>(bytes.size(), 512);
      bytes[at] ^= uint8_t(1u << ((x >> 40) % 8));
    }
    write_bytes(path, bytes);
    auto r = load_model(path);
    if (r.is_ok()) {
      ++loaded;
      // Whatever loaded is a consistent graph: its shapes re-infer.
      graph g = std::move(r).value();
      BOOST_TEST(infer_shapes(g).is_ok());
    } else {
      ++errors;
      BOOST_TEST(contains(r.message(), "model file '"), r.message());
    }
  }
  BOOST_TEST(errors > 0);
  BOOST_TEST(errors + loaded == 400);
}

BOOST_AUTO_TEST_CASE(wrong_weight_size) {
  temp_dir dir;
  const std::string path = dir.file("short_weights.d3m");
  graph g = small_graph();
  layer& conv = g.layers[g.find("conv2a")];
  conv.weights = weight_blob::copy_of(conv.weights.data(), conv.weights.size() - 1);  // one float short
  BOOST_TEST_REQUIRE(save_model(g, path).is_ok());  // save_model does not validate
  expect_error(path, "conv2a");
  expect_error(path, "weights");

  // Bias of the wrong length.
  graph h = small_graph();
  layer& fc = h.layers[h.find("fc")];
  fc.bias = weight_blob::copy_of(fc.bias.data(), 9);
  BOOST_TEST_REQUIRE(save_model(h, path).is_ok());
  expect_error(path, "bias");

  // Weight bytes that are not whole floats (only a hand-made message can say that).
  capnp::MallocMessageBuilder builder;
  auto m = minimal_raw_model(builder);
  m.getLayers()[1].initWeights(2 * 4 * sizeof(float) - 1);
  write_raw_model(path, builder);
  expect_error(path, "not a whole number of float32");

  // ... and the unbroken hand-made message loads (the fixture itself is valid).
  capnp::MallocMessageBuilder good;
  minimal_raw_model(good);
  write_raw_model(path, good);
  auto r = load_model(path);
  BOOST_TEST_REQUIRE(r.is_ok(), why(r));
  BOOST_TEST(r->layers.size() == 2u);
  BOOST_TEST(r->layers[1].weights.size() == 8u);
  BOOST_TEST(r->layers[1].weights.data()[5] == 1.25f);
}

BOOST_AUTO_TEST_CASE(input_index_out_of_range) {
  temp_dir dir;
  const std::string path = dir.file("bad_edge.d3m");
  graph g = small_graph();
  g.layers[g.find("fc")].inputs = {99};
  BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
  expect_error(path, "out of range");
  expect_error(path, "'fc'");

  graph h = small_graph();
  h.outputs = {3, 1000};
  BOOST_TEST_REQUIRE(save_model(h, path).is_ok());
  expect_error(path, "output index 1000 is out of range");

  graph c = small_graph();
  c.layers[c.find("data")].inputs = {};
  c.layers[c.find("conv1")].inputs = {c.find("add")};  // a cycle conv1 -> ... -> add -> conv1
  BOOST_TEST_REQUIRE(save_model(c, path).is_ok());
  expect_error(path, "cycle");
}

BOOST_AUTO_TEST_CASE(shapes_that_do_not_fit) {
  temp_dir dir;
  const std::string path = dir.file("bad_shape.d3m");

  // Fully connected weights for 17 input features where flatten delivers 16.
  graph g = small_graph();
  seeded_generator gen(3);
  g.layers[g.find("fc")].weights = random_blob(10 * 17, gen);
  BOOST_TEST_REQUIRE(save_model(g, path).is_ok());
  expect_error(path, "'fc'");
  expect_error(path, "input features");

  // A pooling window larger than its padded input.
  graph p = small_graph();
  layer& pool = p.layers[p.find("pool1")];
  pool.window.kernel_h = pool.window.kernel_w = 12;
  BOOST_TEST_REQUIRE(save_model(p, path).is_ok());
  expect_error(path, "does not fit");
  expect_error(path, "'pool1'");

  // Add of two differently shaped tensors.
  graph a = small_graph();
  a.layers[a.find("add")].inputs = {a.find("conv2a"), a.find("data")};
  BOOST_TEST_REQUIRE(save_model(a, path).is_ok());
  expect_error(path, "differ");
}

BOOST_AUTO_TEST_CASE(invalid_fields) {
  temp_dir dir;
  const std::string path = dir.file("fields.d3m");
  {
    capnp::MallocMessageBuilder builder;
    minimal_raw_model(builder).getLayers()[1].setKind(static_cast<schema::LayerKind>(200));
    write_raw_model(path, builder);
    expect_error(path, "unknown layer kind 200");
  }
  {
    capnp::MallocMessageBuilder builder;
    minimal_raw_model(builder).setVersion(2);
    write_raw_model(path, builder);
    expect_error(path, "version 2");
  }
  {
    capnp::MallocMessageBuilder builder;
    minimal_raw_model(builder).getLayers()[0].getInputShape().setH(-3);
    write_raw_model(path, builder);
    expect_error(path, "input shape");
  }
  {
    capnp::MallocMessageBuilder builder;
    auto l = minimal_raw_model(builder).getLayers()[1];
    l.setActivationMin(std::nanf(""));
    write_raw_model(path, builder);
    expect_error(path, "activation");
  }
  {
    capnp::MallocMessageBuilder builder;
    minimal_raw_model(builder).initLayers(0);
    write_raw_model(path, builder);
    expect_error(path, "no layers");
  }
  {
    capnp::MallocMessageBuilder builder;
    auto m = minimal_raw_model(builder);
    m.getLayers()[1].setName("in");  // duplicate name
    write_raw_model(path, builder);
    expect_error(path, "duplicate");
  }
}
