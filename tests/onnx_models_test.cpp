// Torchvision models exported to ONNX by tools/export_models.py, imported with d3's ONNX importer
// and run on d3's executor, against PyTorch's own results for the same seeded weights and input:
// the logits and several intermediate tensors (untrained logits can hide a wrong middle layer),
// the structure against the built-in model of the same name, and sub-graph runs against the
// whole run, bit for bit.
//
// The export directory comes from the environment variable D3_ONNX_EXPORT_DIR (ctest sets it and
// runs the exporter once as a fixture). Each model there has NAME.onnx, NAME.input.bin,
// NAME.output.bin, NAME.<module>.bin and NAME.json describing them.
//
// Intermediates are found by layer name = the name of the ONNX node that computes them (the last
// node of the torch module, recorded by the exporter). After prepare_for_inference a batch norm or
// a clamp (Relu, Clip) fused into its producer no longer exists: its tensor is then the output of
// the layer it was fused into. The test looks the node up in the unprepared import and walks back
// from a vanished batch_norm/clamp layer to its producer until it reaches a layer the prepared
// graph still has (fusion only happens when the producer feeds nothing else, so the tensor is the
// same).
#define BOOST_TEST_MODULE onnx_models
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/model_zoo.hpp"
#include "kernels/reference.hpp"
#include "kernels/tensor.hpp"
#include "onnx/onnx_import.hpp"

using namespace d3;

namespace {

const std::vector<std::string> required_models = {"alexnet",      "resnet18",           "googlenet",
                                                   "mobilenet_v2", "densenet121",        "mobilenet_v3_small",
                                                   "convnext_tiny", "vit_b_32",          "swin_t",
                                                   "maxvit_t"};
// The exported models d3 also builds itself (kernels/model_zoo).
const std::set<std::string> builtin_models = {"alexnet", "resnet18", "googlenet", "mobilenet_v2", "vgg16"};

std::string export_dir() {
  const char* dir = std::getenv("D3_ONNX_EXPORT_DIR");
  BOOST_TEST_REQUIRE(dir != nullptr,
                     "D3_ONNX_EXPORT_DIR is not set (run through ctest, or export the models with "
                     "tools/export_models.py --out DIR and set it to DIR)");
  return dir;
}

std::string path_of(const std::string& file) { return export_dir() + "/" + file; }

// The models exported: the required ones, then every other model exported into the directory
// (vgg16, or any family a user exports with tools/export_models.py), in name order.
std::vector<std::string> exported_models() {
  std::vector<std::string> names = required_models;
  std::set<std::string> others;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(export_dir(), error)) {
    const std::filesystem::path file = entry.path();
    if (file.extension() != ".json") continue;
    const std::string name = file.stem().string();
    if (std::find(names.begin(), names.end(), name) == names.end()) others.insert(name);
  }
  names.insert(names.end(), others.begin(), others.end());
  return names;
}

const nlohmann::json& manifest(const std::string& model) {
  static std::map<std::string, nlohmann::json> cache;
  auto it = cache.find(model);
  if (it == cache.end()) {
    std::ifstream in(path_of(model + ".json"));
    BOOST_TEST_REQUIRE(bool(in), "cannot open " << path_of(model + ".json") << " (run tools/export_models.py)");
    nlohmann::json j;
    in >> j;
    it = cache.emplace(model, std::move(j)).first;
  }
  return it->second;
}

// A raw float32 NCHW file of `dims` ([N, C, H, W] or [N, C]) as an NHWC tensor; a token tensor
// [N, T, C] is already in d3's order, as [N, T, 1, C].
tensor read_nchw(const std::string& file, const std::vector<int>& dims) {
  BOOST_TEST_REQUIRE((dims.size() >= 2 && dims.size() <= 4), file << ": rank " << dims.size());
  const tensor_shape shape = dims.size() == 4   ? tensor_shape{dims[0], dims[2], dims[3], dims[1]}
                             : dims.size() == 3 ? tensor_shape{dims[0], dims[1], 1, dims[2]}
                                                : tensor_shape{dims[0], 1, 1, dims[1]};
  std::vector<float> nchw(shape.elements());
  std::ifstream in(path_of(file), std::ios::binary);
  BOOST_TEST_REQUIRE(bool(in), "cannot open " << path_of(file));
  in.read(reinterpret_cast<char*>(nchw.data()), std::streamsize(shape.bytes()));
  BOOST_TEST_REQUIRE(size_t(in.gcount()) == shape.bytes(), file << ": expected " << shape.bytes() << " bytes");
  BOOST_TEST_REQUIRE(in.peek() == std::char_traits<char>::eof(), file << ": longer than " << shape.bytes() << " bytes");
  tensor t(shape);
  if (dims.size() == 3) std::copy(nchw.begin(), nchw.end(), t.data());
  else nchw_to_nhwc(nchw.data(), shape, t.data());
  return t;
}

// Importing parses every weight: each model is imported once per process (prepared and not).
const graph& imported(const std::string& model, bool prepared) {
  static std::map<std::pair<std::string, bool>, graph> cache;
  auto key = std::make_pair(model, prepared);
  auto it = cache.find(key);
  if (it == cache.end()) {
    const std::string path = path_of(manifest(model)["onnx"].get<std::string>());
    result<graph> g = prepared ? import_onnx(path) : import_onnx_unprepared(path);
    BOOST_TEST_REQUIRE(g.is_ok(), model << ": " << g.message());
    it = cache.emplace(key, std::move(g).value()).first;
  }
  return it->second;
}

// Adds unfused: the tests take every tensor (run_all).
std::unique_ptr<executor> make_executor(const graph& g, std::vector<int> layers = {}) {
  executor_options every_tensor;
  every_tensor.fuse_residual_adds = false;
  auto e = executor::create(g, std::move(layers), every_tensor);
  BOOST_TEST_REQUIRE(e.is_ok(), g.name << ": " << e.message());
  return std::move(e.value());
}

// max |a - e| / max |e|: the measure compare_relative() bounds.
double relative_error(const tensor& actual, const tensor& expected) {
  double largest = 0, diff = 0;
  for (size_t i = 0; i < expected.elements(); ++i) {
    largest = std::max(largest, double(std::fabs(expected.data()[i])));
    diff = std::max(diff, double(std::fabs(actual.data()[i] - expected.data()[i])));
  }
  return largest > 0 ? diff / largest : diff;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<int> dims_of(const nlohmann::json& shape) { return shape.get<std::vector<int>>(); }

// An average pool that changes nothing (torchvision's AdaptiveAvgPool2d to the size it already has,
// exported as a 1x1 AveragePool): the built-in models omit it.
bool is_identity_pool(const graph& g, const layer& l) {
  return l.kind == layer_kind::average_pool && l.window.kernel_h == 1 && l.window.kernel_w == 1 &&
         l.window.stride_h == 1 && l.window.stride_w == 1 && !l.window.pad.any() &&
         l.output_shape == g.layers[size_t(l.inputs.at(0))].output_shape;
}

}  // namespace

// The logits and every recorded intermediate against PyTorch, within 1e-4 of the tensor's largest
// magnitude.
BOOST_AUTO_TEST_CASE(imported_models_match_pytorch) {
  for (const std::string& model : exported_models()) {
    const auto started = std::chrono::steady_clock::now();
    const nlohmann::json& m = manifest(model);
    const graph& g = imported(model, true);
    const graph& raw = imported(model, false);
    BOOST_TEST_REQUIRE(g.input_layers().size() == 1u, model);
    BOOST_TEST_REQUIRE(g.outputs.size() == 1u, model);
    const double import_seconds = seconds_since(started);

    tensor x = read_nchw(m["input"]["file"].get<std::string>(), dims_of(m["input"]["shape"]));
    BOOST_TEST_REQUIRE(g.layers[size_t(g.input_layers()[0])].output_shape == x.shape(), model);
    auto e = make_executor(g);
    auto all = e->run_all({&x});
    BOOST_TEST_REQUIRE(all.is_ok(), model << ": " << all.message());

    // A model whose logits hardly depend on the input would match PyTorch whatever d3 computed.
    const double sensitivity = m["output"].value("sensitivity", 0.0);
    BOOST_TEST(sensitivity >= 1e-3, model << ": output sensitivity to the input " << sensitivity);

    const std::string output_layer = g.layers[size_t(g.outputs[0])].name;
    tensor expected = read_nchw(m["output"]["file"].get<std::string>(), dims_of(m["output"]["shape"]));
    const tensor& actual = all.value().at(output_layer);
    std::string mismatch = compare_relative(actual, expected, 1e-4);
    BOOST_CHECK_MESSAGE(mismatch.empty(), model << " output (" << output_layer << "): " << mismatch);
    double worst = actual.shape() == expected.shape() ? relative_error(actual, expected) : 1.0;
    std::ostringstream report;
    report << model << ": output rel err " << worst;

    int compared = 0;
    for (const nlohmann::json& i : m["intermediates"]) {
      const std::string module = i["module"].get<std::string>();
      result<std::string> survivor =
          surviving_layer(g, raw, i["onnx_node"].get<std::string>(), i["onnx_output"].get<std::string>());
      BOOST_TEST_REQUIRE(survivor.is_ok(), model << " module " << module << ": " << survivor.message());
      const std::string name = survivor.value();
      tensor want = read_nchw(i["file"].get<std::string>(), dims_of(i["shape"]));
      auto found = all.value().find(name);
      BOOST_TEST_REQUIRE((found != all.value().end()), model << ": run_all has no tensor '" << name << "'");
      mismatch = compare_relative(found->second, want, 1e-4);
      BOOST_CHECK_MESSAGE(mismatch.empty(), model << " module " << module << " (layer " << name << "): " << mismatch);
      const double err = found->second.shape() == want.shape() ? relative_error(found->second, want) : 1.0;
      report << ", " << module << " " << err;
      worst = std::max(worst, err);
      ++compared;
    }
    BOOST_TEST(compared >= 3, model << ": only " << compared << " intermediates");
    report << " (worst " << worst << "; import " << import_seconds << " s, total " << seconds_since(started)
           << " s)";
    BOOST_TEST_MESSAGE(report.str());
  }
}

// The imported model has the built-in model's structure (torchvision's topology either way):
// the same number of convolution, fully connected, pooling, add and concat layers after
// prepare_for_inference, and the same convolutions in the same order (output shape, window,
// groups, fused activation). Layer names differ (ONNX node names vs module paths).
BOOST_AUTO_TEST_CASE(imported_models_have_the_builtin_structure) {
  for (const std::string& model : exported_models()) {
    if (!builtin_models.count(model)) continue;
    const graph& onnx = imported(model, true);
    result<graph> builtin = builtin_model(model);
    BOOST_TEST_REQUIRE(builtin.is_ok(), builtin.message());

    struct counts {
      int conv = 0, fc = 0, pool = 0, add = 0, concat = 0, other = 0;
      std::vector<const layer*> convs;
    };
    auto count = [](const graph& g) {
      counts c;
      auto order = topological_order(g);
      BOOST_TEST_REQUIRE(order.is_ok(), order.message());
      for (int i : *order) {
        const layer& l = g.layers[size_t(i)];
        switch (l.kind) {
          case layer_kind::convolution: ++c.conv; c.convs.push_back(&l); break;
          case layer_kind::fully_connected: ++c.fc; break;
          case layer_kind::max_pool:
          case layer_kind::average_pool:
          case layer_kind::global_average_pool:
            if (!is_identity_pool(g, l)) ++c.pool;
            break;
          case layer_kind::add: ++c.add; break;
          case layer_kind::concat: ++c.concat; break;
          case layer_kind::input: case layer_kind::flatten: break;
          default: ++c.other; break;
        }
      }
      return c;
    };
    const counts a = count(onnx), b = count(*builtin);
    BOOST_TEST(a.conv == b.conv, model << " convolutions");
    BOOST_TEST(a.fc == b.fc, model << " fully connected");
    BOOST_TEST(a.pool == b.pool, model << " pooling");
    BOOST_TEST(a.add == b.add, model << " add");
    BOOST_TEST(a.concat == b.concat, model << " concat");
    BOOST_TEST(a.other == b.other, model << " other layers (batch norms and clamps left after fusion)");
    BOOST_TEST_REQUIRE(a.convs.size() == b.convs.size());
    for (size_t k = 0; k < a.convs.size(); ++k) {
      const layer& x = *a.convs[k];
      const layer& y = *b.convs[k];
      const bool same = x.output_shape == y.output_shape && x.window.kernel_h == y.window.kernel_h &&
                        x.window.kernel_w == y.window.kernel_w && x.window.stride_h == y.window.stride_h &&
                        x.window.stride_w == y.window.stride_w && x.window.pad == y.window.pad &&
                        x.groups == y.groups && x.act == y.act && x.bias.empty() == y.bias.empty();
      BOOST_CHECK_MESSAGE(same, model << " convolution #" << k << ": imported " << x.name << " "
                                      << x.output_shape << " k" << x.window.kernel_h << " s" << x.window.stride_h
                                      << " g" << x.groups << " vs built-in " << y.name << " " << y.output_shape
                                      << " k" << y.window.kernel_h << " s" << y.window.stride_h << " g" << y.groups);
      if (!same) break;
    }
    BOOST_TEST_MESSAGE(model << ": " << a.conv << " conv, " << a.fc << " fc, " << a.pool << " pool, " << a.add
                             << " add, " << a.concat << " concat; " << onnx.layers.size() << " layers imported, "
                             << builtin->layers.size() << " built-in");
  }
}

// An imported model run as two or three consecutive sub-graphs, passing tensors between them by
// name, computes the same bits as the whole graph.
BOOST_AUTO_TEST_CASE(imported_sub_graphs_reproduce_the_whole_run_bit_for_bit) {
  for (const std::string& model : exported_models()) {
    const nlohmann::json& m = manifest(model);
    const graph& g = imported(model, true);
    tensor x = read_nchw(m["input"]["file"].get<std::string>(), dims_of(m["input"]["shape"]));
    auto whole = make_executor(g)->run_all({&x});
    BOOST_TEST_REQUIRE(whole.is_ok(), whole.message());

    auto order = topological_order(g);
    BOOST_TEST_REQUIRE(order.is_ok());
    std::vector<int> computed;
    for (int i : *order)
      if (g.layers[size_t(i)].kind != layer_kind::input) computed.push_back(i);
    const size_t n = computed.size();
    for (const std::vector<size_t>& cuts : {std::vector<size_t>{n / 2}, std::vector<size_t>{n / 3, 2 * n / 3 + 1}}) {
      std::map<std::string, tensor> available{{g.layers[size_t(g.input_layers().at(0))].name, x}};
      size_t begin = 0;
      int crossing = 0;
      std::vector<size_t> ends = cuts;
      ends.push_back(n);
      for (size_t end : ends) {
        std::vector<int> piece(computed.begin() + long(begin), computed.begin() + long(end));
        begin = end;
        auto e = make_executor(g, piece);
        auto out = e->run(available);
        BOOST_TEST_REQUIRE(out.is_ok(), model << ": " << out.message());
        for (auto& [name, t] : out.value()) {
          available[name] = std::move(t);
          ++crossing;
        }
      }
      int compared = 0;
      for (const auto& [name, t] : available) {
        auto it = whole.value().find(name);
        if (it == whole.value().end()) continue;  // the input
        BOOST_CHECK_MESSAGE(bitwise_equal(t, it->second), model << ": tensor " << name << " differs from the whole run");
        ++compared;
      }
      const std::string output = g.layers[size_t(g.outputs.at(0))].name;
      BOOST_TEST_REQUIRE(available.count(output) == 1u, model);
      BOOST_TEST(bitwise_equal(available.at(output), whole.value().at(output)), model);
      BOOST_TEST(compared == crossing);
      BOOST_TEST(compared >= int(cuts.size()) + 1, model);
    }
  }
}
