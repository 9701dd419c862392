// ONNX's own per-operator conformance cases (Debian's libonnx-testdata: one directory per case with
// model.onnx and test_data_set_0/{input,output}_K.pb), imported with d3's ONNX importer and run on
// d3's executor.
//
// A case is considered when every node of its model is an op d3 maps (plus Constant): this picks
// ONNX's test_<op>_* directories of those ops, and also e.g. test_basic_conv_*, without taking in
// test_convtranspose_* or test_convinteger_* through a name prefix. For each such case:
//   - the model is imported as it is (import_onnx_unprepared);
//   - if the importer rejects it, it is imported again with every graph input that is not a data
//     operand (Conv's W and B, Gemm's B and C, MatMul's B, BatchNormalization's statistics,
//     Reshape's shape, Slice's starts/ends/axes/steps, Split's split, Pad's pads, Clip's min/max,
//     Dropout's ratio) turned into an initializer holding the case's input value: d3 takes weights
//     and shape operands as constants, which ONNX's test runner feeds as inputs;
//   - a case the importer still rejects is SKIPPED with the importer's reason, and so is one that
//     prepare_for_inference rejects (import_onnx, what tools call, reports that same error: e.g. a
//     batch norm that does not follow a convolution, for which d3 has no kernel);
//   - a prepared case must run (executor) and match every expected output within 1e-4 relative
//     (compare_relative); anything else is a FAILURE.
// Tensors: 4-D NCHW <-> d3's NHWC, 2-D [N, C] <-> {N, 1, 1, C}. The test prints how many cases ran,
// passed and were skipped, with every skip reason, and requires a minimum number of cases to run.
//
// D3_ONNX_TESTDATA_DIR overrides the data directory (default /usr/share/libonnx-testdata/data/node).
#define BOOST_TEST_MODULE onnx_conformance
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <onnx/onnx_pb.h>

#include "kernels/executor.hpp"
#include "kernels/graph.hpp"
#include "kernels/reference.hpp"
#include "kernels/tensor.hpp"
#include "onnx/onnx_import.hpp"

using namespace d3;
namespace fs = std::filesystem;

namespace {

// The ops d3 maps, with the input positions that carry data (all others are weights or shape
// operands, which d3 needs as constants). -1: every input is data.
const std::map<std::string, std::vector<int>>& supported_ops() {
  static const std::map<std::string, std::vector<int>> ops = {
      {"Conv", {0}},          {"Gemm", {0}},         {"MatMul", {0}},
      {"MaxPool", {0}},       {"AveragePool", {0}},  {"GlobalAveragePool", {0}},
      {"Relu", {0}},          {"Clip", {0}},         {"Add", {-1}},
      {"Mul", {-1}},          {"Sigmoid", {0}},      {"Concat", {-1}},
      {"Flatten", {0}},       {"Reshape", {0}},      {"Transpose", {0}},
      {"Split", {0}},         {"Slice", {0}},        {"BatchNormalization", {0}},
      {"Identity", {0}},      {"Dropout", {0}},      {"Softmax", {0}},
      {"ReduceMean", {0}},    {"Pad", {0}},          {"Constant", {}},
  };
  return ops;
}

// Cases that must run at least (measured count minus a margin; see the printed summary).
constexpr int minimum_cases_run = 30;  // 39 ran when this test was written

std::string data_dir() {
  const char* dir = std::getenv("D3_ONNX_TESTDATA_DIR");
  return dir ? dir : "/usr/share/libonnx-testdata/data/node";
}

template <class Proto>
bool parse_file(const fs::path& path, Proto& proto) {
  std::ifstream in(path, std::ios::binary);
  return in && proto.ParseFromIstream(&in);
}

std::string dims_string(const std::vector<int64_t>& dims) {
  std::string s;
  for (int64_t d : dims) s += (s.empty() ? "" : "x") + std::to_string(d);
  return "[" + s + "]";
}

// A float TensorProto of rank 4 (NCHW) or 2 ([N, C]) as a d3 tensor; an error message otherwise.
std::string to_d3(const onnx::TensorProto& t, tensor& out) {
  std::vector<int64_t> dims(t.dims().begin(), t.dims().end());
  if (t.data_type() != onnx::TensorProto::FLOAT)
    return "tensor '" + t.name() + "' has ONNX data type " + std::to_string(t.data_type()) + ", not float";
  tensor_shape shape;
  if (dims.size() == 4) shape = {int(dims[0]), int(dims[2]), int(dims[3]), int(dims[1])};
  else if (dims.size() == 2) shape = {int(dims[0]), 1, 1, int(dims[1])};
  else return "tensor '" + t.name() + "' has rank " + std::to_string(dims.size()) + " " + dims_string(dims);
  std::vector<float> values(shape.elements());
  if (t.has_raw_data()) {
    if (t.raw_data().size() != shape.bytes()) return "tensor '" + t.name() + "': raw data of the wrong size";
    std::memcpy(values.data(), t.raw_data().data(), shape.bytes());
  } else {
    if (size_t(t.float_data_size()) != shape.elements()) return "tensor '" + t.name() + "': wrong float_data size";
    std::copy(t.float_data().begin(), t.float_data().end(), values.begin());
  }
  out = tensor(shape);
  if (dims.size() == 4) nchw_to_nhwc(values.data(), shape, out.data());
  else std::copy(values.begin(), values.end(), out.data());
  return "";
}

// A short class of a skip reason, for the summary line.
std::string skip_class(const std::string& full_reason) {
  const std::string reason = full_reason.substr(0, full_reason.find("  [as given: "));
  static const std::vector<std::pair<std::string, std::string>> classes = {
      {"prepare_for_inference", "imported but not executable (prepare_for_inference)"},
      {"d3 takes 4-D", "tensor rank other than 4 (NCHW) or 2 ([N, C])"},
      {"element type", "non-float element type"},
      {"not a tensor", "optional or sequence values"},
      {"not a set of onnx::TensorProto", "optional or sequence values"},
      {"auto_pad", "auto_pad SAME_UPPER / SAME_LOWER"},
      {"training_mode", "training mode"},
      {"opset", "opset outside 11-17"},
      {"attribute axis", "axis other than the supported one"},
      {"transA", "Gemm transA"},
      {"Indices output", "MaxPool indices output"},
      {"storage_order", "MaxPool storage_order"},
      {"must be a constant", "weight computed, not constant"},
      {"padding value", "Pad with a non-zero value"},
  };
  for (const auto& [needle, label] : classes)
    if (reason.find(needle) != std::string::npos) return label;
  const size_t colon = reason.rfind("): ");
  return colon == std::string::npos ? reason.substr(0, 80) : reason.substr(colon + 3, 80);
}

struct outcome {
  enum kind_t { passed, failed, skipped } kind = skipped;
  std::string detail;
  bool baked = false;  // imported with weight inputs turned into initializers
};

// Runs a prepared case; returns "" when every output matches.
std::string run_case(const graph& g, const onnx::ModelProto& model, const std::vector<onnx::TensorProto>& inputs,
                     const std::vector<onnx::TensorProto>& outputs, const std::set<std::string>& baked) {
  auto e = executor::create(g);
  if (!e) return "executor::create: " + e.message();

  // Feed the data inputs by name (ONNX input name = d3 input layer name).
  std::map<std::string, tensor> feed;
  for (size_t k = 0; k < inputs.size() && k < size_t(model.graph().input_size()); ++k) {
    const std::string& name = model.graph().input(int(k)).name();
    if (baked.count(name)) continue;
    tensor t;
    std::string problem = to_d3(inputs[k], t);
    if (!problem.empty()) return "the importer accepted input '" + name + "' but " + problem;
    feed[name] = std::move(t);
  }
  // Inputs the graph has but the run does not need (e.g. an unused operand) are left out by the
  // executor's boundary; missing ones are reported by run().
  std::map<std::string, tensor> needed;
  for (const std::string& name : e.value()->input_names()) {
    auto it = feed.find(name);
    if (it == feed.end()) return "the graph input '" + name + "' is not an ONNX data input of the case";
    needed[name] = it->second;
  }
  auto result = e.value()->run(needed);
  if (!result) return "run: " + result.message();

  if (g.outputs.size() != outputs.size())
    return "the graph has " + std::to_string(g.outputs.size()) + " outputs, the case expects " +
           std::to_string(outputs.size());
  std::string problems;
  for (size_t k = 0; k < outputs.size(); ++k) {
    const std::string layer_name = g.layers[size_t(g.outputs[k])].name;
    tensor expected;
    std::string problem = to_d3(outputs[k], expected);
    if (!problem.empty()) return "the importer accepted the case but output " + std::to_string(k) + " " + problem;
    auto it = result.value().find(layer_name);
    if (it == result.value().end()) {
      // An output that is a graph input (Identity / Dropout removed at import) is not computed.
      auto in = needed.find(layer_name);
      if (in == needed.end()) return "output " + std::to_string(k) + " ('" + layer_name + "') was not computed";
      it = in;
    }
    std::string mismatch = compare_relative(it->second, expected, 1e-4);
    if (!mismatch.empty()) problems += "output " + std::to_string(k) + " ('" + layer_name + "'): " + mismatch + "; ";
  }
  return problems;
}

}  // namespace

BOOST_AUTO_TEST_CASE(onnx_node_conformance_cases) {
  const auto started = std::chrono::steady_clock::now();
  const fs::path root = data_dir();
  BOOST_TEST_REQUIRE(fs::is_directory(root), root << " is missing (Debian package libonnx-testdata)");
  std::vector<fs::path> cases;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory()) cases.push_back(entry.path());
  std::sort(cases.begin(), cases.end());

  const fs::path scratch = fs::temp_directory_path() / ("d3-onnx-conformance-" + std::to_string(getpid()));
  fs::create_directories(scratch);

  std::map<std::string, outcome> outcomes;
  int other_ops = 0;
  for (const fs::path& dir : cases) {
    const std::string name = dir.filename().string();
    onnx::ModelProto model;
    if (!parse_file(dir / "model.onnx", model)) continue;
    bool all_supported = model.graph().node_size() > 0;
    bool has_computing_node = false;
    for (const auto& node : model.graph().node()) {
      if (!supported_ops().count(node.op_type())) all_supported = false;
      if (node.op_type() != "Constant") has_computing_node = true;
    }
    if (!all_supported || !has_computing_node) {
      ++other_ops;
      continue;
    }
    outcome& o = outcomes[name];

    // The test data.
    std::vector<onnx::TensorProto> inputs, outputs;
    const fs::path data = dir / "test_data_set_0";
    bool data_ok = true;
    for (int k = 0;; ++k) {
      const fs::path p = data / ("input_" + std::to_string(k) + ".pb");
      if (!fs::exists(p)) break;
      inputs.emplace_back();
      data_ok &= parse_file(p, inputs.back());
    }
    for (int k = 0;; ++k) {
      const fs::path p = data / ("output_" + std::to_string(k) + ".pb");
      if (!fs::exists(p)) break;
      outputs.emplace_back();
      data_ok &= parse_file(p, outputs.back());
    }
    if (!data_ok || outputs.empty()) {
      // Optional / sequence types are stored as other protos: not tensors d3 could handle.
      o.kind = outcome::skipped;
      o.detail = "test data is not a set of onnx::TensorProto (optional or sequence values)";
      continue;
    }

    // As it is.
    auto g = import_onnx_unprepared((dir / "model.onnx").string());
    std::set<std::string> baked;
    std::string first_reason = g ? "" : g.message();
    if (!g) {
      // With weight and shape operands as initializers.
      std::map<std::string, int> input_index;
      for (int k = 0; k < model.graph().input_size(); ++k) input_index[model.graph().input(k).name()] = k;
      for (const auto& node : model.graph().node()) {
        const std::vector<int>& data_positions = supported_ops().at(node.op_type());
        for (int k = 0; k < node.input_size(); ++k) {
          const bool is_data = std::count(data_positions.begin(), data_positions.end(), -1) > 0 ||
                               std::count(data_positions.begin(), data_positions.end(), k) > 0;
          if (!is_data && input_index.count(node.input(k)) && size_t(input_index[node.input(k)]) < inputs.size())
            baked.insert(node.input(k));
        }
      }
      if (!baked.empty()) {
        onnx::ModelProto rewritten = model;
        auto* graph_proto = rewritten.mutable_graph();
        graph_proto->clear_input();
        for (int k = 0; k < model.graph().input_size(); ++k) {
          const auto& in = model.graph().input(k);
          if (!baked.count(in.name())) {
            *graph_proto->add_input() = in;
            continue;
          }
          onnx::TensorProto* init = graph_proto->add_initializer();
          *init = inputs[size_t(k)];
          init->set_name(in.name());
        }
        const fs::path path = scratch / (name + ".onnx");
        {
          std::ofstream out(path, std::ios::binary);
          rewritten.SerializeToOstream(&out);
        }
        g = import_onnx_unprepared(path.string());
        o.baked = true;
      }
    }
    if (!g) {
      o.kind = outcome::skipped;
      o.detail = g.message();
      if (o.baked && first_reason != g.message()) o.detail += "  [as given: " + first_reason + "]";
      continue;
    }
    graph prepared = g.value();
    status s = prepare_for_inference(prepared);
    if (!s) {
      o.kind = outcome::skipped;
      o.detail = "prepare_for_inference: " + s.message();
      continue;
    }
    std::string problem;
    try {
      problem = run_case(prepared, model, inputs, outputs, baked);
    } catch (const std::exception& ex) {
      problem = std::string("exception: ") + ex.what();
    }
    o.kind = problem.empty() ? outcome::passed : outcome::failed;
    o.detail = problem;
    BOOST_CHECK_MESSAGE(problem.empty(), name << (o.baked ? " (weights baked)" : "") << ": " << problem);
  }
  std::error_code ignored;
  fs::remove_all(scratch, ignored);

  int ran = 0, passed = 0, skipped = 0, baked = 0;
  std::ostringstream report;
  for (const auto& [name, o] : outcomes) {
    if (o.kind == outcome::skipped) {
      ++skipped;
      continue;
    }
    ++ran;
    if (o.kind == outcome::passed) ++passed;
    if (o.baked) ++baked;
  }
  report << "ONNX conformance: " << outcomes.size() << " cases with d3 ops (" << other_ops
         << " other cases not considered); ran " << ran << " (" << baked
         << " with weight inputs as initializers), passed " << passed << ", failed " << ran - passed << ", skipped "
         << skipped << " (" << std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count()
         << " s)\n";
  std::map<std::string, int> skip_classes;
  for (const auto& [name, o] : outcomes)
    if (o.kind == outcome::skipped) ++skip_classes[skip_class(o.detail)];
  report << "skip reasons:";
  for (const auto& [label, count] : skip_classes) report << " " << count << " " << label << ";";
  report << "\n";
  for (const auto& [name, o] : outcomes)
    if (o.kind == outcome::passed) report << "  passed  " << name << (o.baked ? " (weights baked)" : "") << "\n";
  for (const auto& [name, o] : outcomes)
    if (o.kind == outcome::failed) report << "  FAILED  " << name << ": " << o.detail << "\n";
  for (const auto& [name, o] : outcomes)
    if (o.kind == outcome::skipped) report << "  skipped " << name << ": " << o.detail << "\n";
  std::cout << report.str() << std::flush;
  BOOST_TEST_MESSAGE(report.str());
  BOOST_TEST(ran >= minimum_cases_run, "only " << ran << " cases ran");
}
