// ONNX importer: parses the file with libonnx's generated protobuf classes, orders the nodes
// topologically (rejecting cycles and dangling inputs), folds constant shape arithmetic, and maps
// each computing node onto one layer of the graph IR.
//
// Tensors are tracked per ONNX name as one of:
//   - a layer's output (with its ONNX dims: [N,C,H,W] or [N,C]; d3 stores both as NHWC; or, after
//     a transposition to channels last, [N,H,W,C] and token tensors [N,T,C]: value::channels_last),
//   - a constant (initializers, Constant nodes and everything folded from them),
//   - an intermediate of ShuffleNet's channel shuffle (Reshape to 5-D, then Transpose), which only
//     the closing Reshape may read, or of the multi-node patterns of onnx_patterns.cpp and
//     onnx_tokens.cpp (layer norm, GELU, attention), which only the pattern's next node may read.
// Aliasing ops (Identity, Dropout, Cast to float, reshapes between [N,C] and [N,C,1,1]) create no
// layer: their output name refers to the producer's layer.
//
// Errors are thrown internally as import_failure (already formatted "ONNX file 'p': ...") and
// turned into a status at the border, together with any other std::exception.
#include "onnx/onnx_import.hpp"

#include "onnx/importer.hpp"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <stdexcept>

namespace d3 {
namespace onnx_detail {

// Constants the importer computes (ConstantOfShape, Expand, broadcasts) hold at most this many
// elements: shape arithmetic and attention masks are far smaller (the largest in the zoo is swin_t's
// shifted-window mask, 153,664), and a hostile file must not make the importer allocate gigabytes
// (4 M int64 values are 32 MB).
constexpr int64_t max_folded_elements = int64_t(1) << 22;
// ... and all of them together at most this many, so that the work of folding is bounded too
// (swin_t folds 2.3 M elements in all; a fuzzed Swin export whose shape constants were mutated
// folded 16 M-element constants one after another and took 14 s to import under ASan).
constexpr int64_t max_folded_total_elements = int64_t(1) << 24;

void importer::count_folded(const onnx::NodeProto& n, int64_t elements) {
  folded_elements_ += elements;
  if (folded_elements_ > max_folded_total_elements)
    fail(n, "constant folding exceeds " + std::to_string(max_folded_total_elements) + " elements in all");
}

template <class T>
void read_raw(const std::string& raw, size_t count, std::vector<T>& out) {
  out.resize(count);
  if (count) std::memcpy(out.data(), raw.data(), count * sizeof(T));
}

constant to_constant(const onnx::TensorProto& t, const std::string& what) {
  auto bad = [&](const std::string& m) { return std::invalid_argument(what + " " + m); };
  if (t.data_location() == onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
    throw bad("stores its data in an external file, which only initializers may do");
  if (t.has_segment()) throw bad("is segmented; not supported");
  constant c;
  for (int64_t d : t.dims()) c.dims.push_back(d);
  const int64_t n = element_count(c.dims);
  if (n < 0) throw bad("has invalid dims " + dims_string(c.dims));
  const size_t count = size_t(n);
  auto check_count = [&](size_t have, const char* unit) {
    if (have != count)
      throw bad("has the wrong size: it holds " + std::to_string(have) + " " + unit + " but its shape " +
                dims_string(c.dims) + " needs " + std::to_string(count));
  };
  const bool raw = t.has_raw_data();
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT:
      c.is_float = true;
      if (raw) {
        if (t.raw_data().size() % 4 != 0) throw bad("has raw data of " + std::to_string(t.raw_data().size()) + " bytes, not a multiple of 4");
        check_count(t.raw_data().size() / 4, "floats");
        read_raw(t.raw_data(), count, c.f);
      } else {
        check_count(size_t(t.float_data_size()), "floats");
        c.f.assign(t.float_data().begin(), t.float_data().end());
      }
      break;
    case onnx::TensorProto::INT64:
      c.is_float = false;
      if (raw) {
        if (t.raw_data().size() % 8 != 0) throw bad("has raw data of " + std::to_string(t.raw_data().size()) + " bytes, not a multiple of 8");
        check_count(t.raw_data().size() / 8, "int64 values");
        read_raw(t.raw_data(), count, c.i);
      } else {
        check_count(size_t(t.int64_data_size()), "int64 values");
        c.i.assign(t.int64_data().begin(), t.int64_data().end());
      }
      break;
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::BOOL: {
      c.is_float = false;
      const bool is_bool = t.data_type() == onnx::TensorProto::BOOL;
      if (raw) {
        const size_t width = is_bool ? 1 : 4;
        if (t.raw_data().size() % width != 0) throw bad("has raw data of a size that is not a multiple of its element size");
        check_count(t.raw_data().size() / width, "values");
        c.i.resize(count);
        for (size_t k = 0; k < count; ++k) {
          if (is_bool) {
            c.i[k] = t.raw_data()[k] != 0;
          } else {
            int32_t v;
            std::memcpy(&v, t.raw_data().data() + 4 * k, 4);
            c.i[k] = v;
          }
        }
      } else {
        check_count(size_t(t.int32_data_size()), "values");
        c.i.assign(t.int32_data().begin(), t.int32_data().end());
        if (is_bool)
          for (int64_t& v : c.i) v = v != 0;
      }
      break;
    }
    default:
      throw bad(std::string("has data type ") + data_type_name(t.data_type()) +
                "; d3 reads float32 weights and int64/int32/bool shape tensors only (non-float data)");
  }
  return c;
}

slice_range clamp_slice(int64_t start, int64_t end, int64_t step, int64_t dim) {
  slice_range r;
  r.step = step;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    r.count = end > start ? (end - start + step - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    r.count = start > end ? (start - end + (-step) - 1) / (-step) : 0;
  }
  r.start = start;
  return r;
}


// ---------------------------------------------------------------------------------------------
// Values

const value& importer::get(const onnx::NodeProto& n, int i) {
  if (!has_input(n, i)) fail(n, "input " + std::to_string(i) + " is missing");
  const std::string& name = n.input(i);
  auto it = values_.find(name);
  if (it != values_.end()) return it->second;
  auto init = initializers_.find(name);
  if (init == initializers_.end())
    fail(n, "reads tensor '" + name + "' which no node, graph input or initializer produces (dangling input)");
  value v;
  v.kind = value_kind::constant;
  if (init->second->data_location() == onnx::TensorProto::EXTERNAL) {
    status s = external_.load_into(*init->second);
    if (!s) fail("initializer '" + name + "' " + s.message());
  }
  try {
    v.c = std::make_shared<constant>(to_constant(*init->second, "initializer '" + name + "'"));
  } catch (const std::invalid_argument& e) {
    fail(e.what());
  }
  // The protobuf copy of the data is no longer needed.
  onnx::TensorProto& t = *init->second;
  std::string().swap(*t.mutable_raw_data());
  google::protobuf::RepeatedField<float>().Swap(t.mutable_float_data());
  google::protobuf::RepeatedField<int64_t>().Swap(t.mutable_int64_data());
  google::protobuf::RepeatedField<int32_t>().Swap(t.mutable_int32_data());
  return values_[name] = std::move(v);
}

const constant& importer::get_constant(const onnx::NodeProto& n, int i, const std::string& role) {
  const value& v = get(n, i);
  if (v.kind != value_kind::constant)
    fail(n, role + " '" + n.input(i) + "' must be a constant (an initializer or folded from constants); it is computed");
  return *v.c;
}

std::vector<int64_t> importer::get_ints(const onnx::NodeProto& n, int i, const std::string& role) {
  const constant& c = get_constant(n, i, role);
  if (c.is_float) fail(n, role + " '" + n.input(i) + "' must be an integer tensor");
  return c.i;
}

float importer::get_scalar(const onnx::NodeProto& n, int i, const std::string& role) {
  const constant& c = get_constant(n, i, role);
  if (c.size() != 1) fail(n, role + " '" + n.input(i) + "' must hold one value, it holds " + std::to_string(c.size()));
  return float(c.at(0));
}

// A computed tensor (a layer's output): what layers may read.
const value& importer::get_tensor(const onnx::NodeProto& n, int i) {
  const value& v = get_any_tensor(n, i);
  if (v.channels_last)
    fail(n, "reads '" + n.input(i) + "', a channels-last view " + dims_string(v.dims) +
                " (Transpose [0,2,3,1]); this op takes it only in NCHW order (transpose it back with [0,3,1,2])");
  return v;
}

const value& importer::get_any_tensor(const onnx::NodeProto& n, int i) {
  const value& v = get(n, i);
  switch (v.kind) {
    case value_kind::layer: return v;
    case value_kind::constant:
      fail(n, "input '" + n.input(i) + "' is a constant, which this op cannot take here (d3 has no constant layers)");
    case value_kind::shuffle_view:
    case value_kind::shuffle_transposed:
      fail(n, "reads '" + n.input(i) +
                  "', a 5-D view only supported inside the channel shuffle pattern Reshape [N,g,C/g,H,W] -> "
                  "Transpose [0,2,1,3,4] -> Reshape [N,C,H,W]");
    case value_kind::heads_split:
    case value_kind::heads_major:
    case value_kind::keys_transposed:
    case value_kind::attention_scores:
    case value_kind::attention_probs:
    case value_kind::attention_context:
    case value_kind::context_tokens:
      fail(n, "reads '" + n.input(i) +
                  "', an intermediate of multi-head attention (heads split, q k^T, softmax, times v, heads merged), "
                  "which only the pattern's next node may read");
    case value_kind::gelu_scaled:
    case value_kind::gelu_erf:
    case value_kind::gelu_erf_plus_one:
    case value_kind::gelu_product:
      fail(n, "reads '" + n.input(i) +
                  "', an intermediate of GELU (x / sqrt(2) -> Erf -> Add 1 -> Mul x -> Mul 0.5), which only the "
                  "pattern's next node may read");
    default:
      fail(n, "reads '" + n.input(i) +
                  "', an intermediate of a layer normalisation over channels (ReduceMean -> Sub -> Pow 2 -> "
                  "ReduceMean -> Add epsilon -> Sqrt -> Div), which only the pattern's next node may read");
  }
}

void importer::define(const onnx::NodeProto& n, int output, value v) {
  if (!has_output(n, output)) return;
  if (v.kind != value_kind::constant) {
    const size_t max_rank =
        v.kind == value_kind::map_grid || v.kind == value_kind::window_grid || v.kind == value_kind::nchw_grid ? 6 : 5;
    if (v.dims.size() < 2 || v.dims.size() > max_rank)
      fail(n, "output '" + n.output(output) + "' has rank " + std::to_string(v.dims.size()) +
                  "; d3 tensors are 4-D NCHW, 2-D [N, C] or token tensors [N, T, C]");
    for (int64_t d : v.dims)
      if (d < 1 || d > INT_MAX) fail(n, "output '" + n.output(output) + "' has an unsupported shape " + dims_string(v.dims));
  }
  values_[n.output(output)] = std::move(v);
}

// ---------------------------------------------------------------------------------------------
// Layers

std::string importer::node_layer_name(const onnx::NodeProto& n) const {
  if (!n.name().empty() && node_names_.at(n.name()) == 1 && !graph_inputs_.count(n.name())) return n.name();
  return n.output(0);
}

std::string importer::unique_name(const std::string& base) {
  if (used_names_.insert(base).second) return base;
  for (int k = 1;; ++k) {
    std::string candidate = base + "_" + std::to_string(k);
    if (used_names_.insert(candidate).second) return candidate;
  }
}

int importer::emit(const onnx::NodeProto& n, layer l, const std::vector<int>& inputs, dims_t dims, int output,
                   const std::string& name) {
  l.name = unique_name(name.empty() ? node_layer_name(n) : name);
  l.inputs = inputs;
  const int index = int(g_.layers.size());
  g_.layers.push_back(std::move(l));
  layer_tensor_.push_back(has_output(n, output) ? n.output(output) : std::string());
  value v;
  v.kind = value_kind::layer;
  v.layer = index;
  v.dims = std::move(dims);
  define(n, output, std::move(v));
  return index;
}

int importer::emit_like(const onnx::NodeProto& n, layer l, const std::vector<int>& inputs, const value& like,
                        const std::string& name) {
  const int index = emit(n, std::move(l), inputs, like.dims, 0, name);
  if (has_output(n, 0)) {
    value& v = values_[n.output(0)];
    v.channels_last = like.channels_last;
    v.flat_tokens = like.flat_tokens;
    v.window_h = like.window_h;
    v.window_w = like.window_w;
    v.windows_h = like.windows_h;
    v.windows_w = like.windows_w;
    v.dilation_h = like.dilation_h;
    v.dilation_w = like.dilation_w;
    v.grid = like.grid;
  }
  return index;
}

// ---------------------------------------------------------------------------------------------
// Graph-level steps

void importer::read_opset() {
  bool found = false;
  for (const auto& o : model_.opset_import()) {
    if (o.domain().empty() || o.domain() == "ai.onnx") {
      opset_ = o.version();
      found = true;
    }
  }
  if (!found) fail("the model declares no opset for the default ONNX domain (malformed or truncated file?)");
  if (opset_ < 6 || opset_ > 18)
    fail("opset " + std::to_string(opset_) + " is not supported (d3 reads opsets 6 to 18; PyTorch exports 11-17)");
}

void importer::read_inputs() {
  const auto& gp = model_.graph();
  for (auto& t : *model_.mutable_graph()->mutable_initializer()) initializers_[t.name()] = &t;
  for (const auto& in : gp.input()) {
    if (initializers_.count(in.name())) continue;  // older exporters list weights as inputs too
    const std::string& name = in.name();
    if (name.empty()) fail("a graph input has no name");
    if (!graph_inputs_.insert(name).second) fail("graph input '" + name + "' is listed twice");
    if (!in.type().has_tensor_type()) fail("graph input '" + name + "' is not a tensor");
    const auto& tt = in.type().tensor_type();
    if (tt.elem_type() != onnx::TensorProto::FLOAT)
      fail("graph input '" + name + "' has element type " + data_type_name(tt.elem_type()) + "; d3 takes float32 inputs");
    if (!tt.has_shape()) fail("graph input '" + name + "' has no shape; d3 needs NCHW dimensions");
    dims_t dims;
    for (int k = 0; k < tt.shape().dim_size(); ++k) {
      const auto& d = tt.shape().dim(k);
      if (d.has_dim_value() && d.dim_value() > 0) {
        dims.push_back(d.dim_value());
      } else if (k == 0) {
        dims.push_back(1);  // dynamic batch: d3 runs one batch of 1
      } else {
        fail("graph input '" + name + "' has a dynamic or empty dimension " + std::to_string(k) +
             (d.has_dim_param() ? " ('" + d.dim_param() + "')" : std::string()) + "; d3 needs static shapes");
      }
    }
    for (int64_t d : dims)
      if (d > INT_MAX) fail("graph input '" + name + "' has an oversized shape " + dims_string(dims));
    layer l = make_layer(layer_kind::input);
    if (dims.size() == 4) {
      l.input_shape = tensor_shape{int(dims[0]), int(dims[2]), int(dims[3]), int(dims[1])};
    } else if (dims.size() == 2) {
      l.input_shape = tensor_shape{int(dims[0]), 1, 1, int(dims[1])};
    } else {
      fail("graph input '" + name + "' has shape " + dims_string(dims) + "; d3 takes 4-D NCHW (or 2-D [N, C]) inputs");
    }
    l.name = name;
    used_names_.insert(name);
    const int index = int(g_.layers.size());
    g_.layers.push_back(std::move(l));
    layer_tensor_.push_back(name);
    value v;
    v.kind = value_kind::layer;
    v.layer = index;
    v.dims = dims;
    values_[name] = std::move(v);
  }
}

// Kahn's algorithm over tensor dependencies, lowest node index first among the ready ones (so a
// topologically sorted file keeps its order).
std::vector<int> importer::order_nodes() {
  const auto& gp = model_.graph();
  const int count = gp.node_size();
  std::map<std::string, int> producer;
  for (int i = 0; i < count; ++i) {
    const auto& n = gp.node(i);
    if (n.op_type().empty()) fail("node " + std::to_string(i) + " has no op type");
    if (!n.name().empty()) ++node_names_[n.name()];
    if (n.output_size() == 0 || n.output(0).empty()) fail(n, "has no output");
    for (const auto& out : n.output()) {
      if (out.empty()) continue;
      if (graph_inputs_.count(out) || initializers_.count(out))
        fail(n, "writes tensor '" + out + "', which is a graph input or initializer");
      auto [it, inserted] = producer.emplace(out, i);
      if (!inserted) fail(n, "writes tensor '" + out + "', which node '" + display_name(gp.node(it->second)) + "' also writes");
    }
  }
  std::vector<int> pending(size_t(count), 0);
  std::map<std::string, std::vector<int>> readers;
  for (int i = 0; i < count; ++i) {
    const auto& n = gp.node(i);
    for (const auto& in : n.input()) {
      if (in.empty()) continue;
      ++uses_[in];
      ++remaining_reads_[in];
      if (graph_inputs_.count(in) || initializers_.count(in)) continue;
      if (!producer.count(in))
        fail(n, "reads tensor '" + in + "' which no node, graph input or initializer produces (dangling input)");
      ++pending[i];
      readers[in].push_back(i);
    }
  }
  for (const auto& out : gp.output()) ++uses_[out.name()];
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < count; ++i)
    if (pending[i] == 0) ready.push(i);
  std::vector<int> order;
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (const auto& out : gp.node(i).output()) {
      auto it = readers.find(out);
      if (out.empty() || it == readers.end()) continue;
      for (int r : it->second)
        if (--pending[r] == 0) ready.push(r);
    }
  }
  if (int(order.size()) != count) {
    for (int i = 0; i < count; ++i)
      if (pending[i] > 0) fail("the graph has a cycle through node '" + display_name(gp.node(i)) + "' (" + gp.node(i).op_type() + ")");
  }
  return order;
}

void importer::read_outputs() {
  const auto& gp = model_.graph();
  if (gp.output_size() == 0) fail("the graph has no outputs");
  for (const auto& out : gp.output()) {
    auto it = values_.find(out.name());
    if (it == values_.end()) {
      if (initializers_.count(out.name())) fail("graph output '" + out.name() + "' is a constant; not supported");
      fail("graph output '" + out.name() + "' is produced by no node (dangling output)");
    }
    if (it->second.kind == value_kind::constant) fail("graph output '" + out.name() + "' is a constant; not supported");
    if (it->second.kind != value_kind::layer)
      fail("graph output '" + out.name() + "' is a 5-D channel shuffle intermediate; not supported");
    int index = it->second.layer;
    if (g_.layers[size_t(index)].kind == layer_kind::input) {
      // A graph input returned as it is (through Identity/Dropout): copy it with a channel slice of
      // all channels, so that the graph computes the tensor it returns.
      layer copy = make_layer(layer_kind::channel_slice);
      copy.name = unique_name(out.name());
      copy.inputs = {index};
      copy.channel_begin = 0;
      copy.channel_end = int(it->second.dims[1]);
      index = int(g_.layers.size());
      g_.layers.push_back(std::move(copy));
      layer_tensor_.push_back(out.name());
    }
    g_.outputs.push_back(index);
  }
}

graph importer::run() {
  if (!model_.has_graph()) fail("contains no graph (not an ONNX model, or truncated)");
  read_opset();
  const auto& gp = model_.graph();
  g_.name = gp.name();
  // torch.onnx names every graph alike ("torch_jit"; "main_graph" in later versions): the file's
  // name tells models apart in reports and logs.
  if (g_.name.empty() || g_.name == "torch_jit" || g_.name == "main_graph" || g_.name == "torch-jit-export") {
    std::string stem = path_.substr(path_.find_last_of('/') + 1);
    if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".onnx") == 0) stem.resize(stem.size() - 5);
    if (!stem.empty()) g_.name = stem;
  }
  read_inputs();
  if (graph_inputs_.empty()) fail("the graph has no inputs (every graph input is an initializer)");
  for (int i : order_nodes()) {
    const onnx::NodeProto& n = gp.node(i);
    import_node(n);
    // Drop constants (weights) once their last reader is imported.
    for (const auto& in : n.input()) {
      if (in.empty() || --remaining_reads_[in] > 0) continue;
      auto it = values_.find(in);
      if (it != values_.end() && it->second.kind == value_kind::constant && !is_graph_output(in)) values_.erase(it);
    }
  }
  read_outputs();
  return std::move(g_);
}

// ---------------------------------------------------------------------------------------------
// Dispatch

void importer::import_node(const onnx::NodeProto& n) {
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    fail(n, "operators of domain '" + n.domain() + "' are not supported");
  const std::string& op = n.op_type();
  if (op == "Constant") return constant_node(n);
  if (op == "Shape") return shape(n);
  if (fold_constant_node(n)) return;
  if (window_step(n)) return;
  for (int i = 0; i < n.input_size(); ++i)
    if (has_input(n, i) && get(n, i).kind == value_kind::spatial_slice) materialise_slice(n.input(i));
  static const std::set<std::string> token_ops = {"Reshape", "Transpose", "MatMul", "Mul",   "Div",
                                                  "Softmax", "Concat",    "Add",    "Gather"};
  if (token_ops.count(op) && token_step(n)) return;
  if (op == "Gather") fail(n, "Gather of a computed tensor is supported only to pick one token of [N, T, C]");
  if (op == "Conv") return conv(n);
  if (op == "MaxPool") return pool(n, true);
  if (op == "AveragePool") return pool(n, false);
  if (op == "Gemm") return gemm(n);
  if (op == "MatMul") return matmul(n);
  if (op == "BatchNormalization") return batch_norm(n);
  if (op == "Relu") {
    allow_attributes(n, {});
    const value x = get_any_tensor(n, 0);
    layer l = make_layer(layer_kind::clamp);
    l.act = activation::relu();
    emit_like(n, std::move(l), {x.layer}, x);
    return;
  }
  if (op == "Clip") return clip(n);
  if (op == "Sigmoid") {
    allow_attributes(n, {});
    const value x = get_any_tensor(n, 0);
    emit_like(n, make_layer(layer_kind::sigmoid), {x.layer}, x);
    return;
  }
  if (op == "Tanh") {
    allow_attributes(n, {});
    const value x = get_any_tensor(n, 0);
    emit_like(n, make_layer(layer_kind::tanh), {x.layer}, x);
    return;
  }
  if (op == "HardSigmoid" || op == "HardSwish") return hard_sigmoid(n, op == "HardSwish");
  if (op == "Add" || op == "Mul" || op == "Sub" || op == "Div" || op == "Pow" || op == "Sqrt" || op == "Erf") {
    if (norm_or_gelu_step(n)) return;
    if (op == "Pow" || op == "Sqrt" || op == "Erf")
      fail(n, "operator " + op + " is supported only inside a layer normalisation (Pow 2, Sqrt) or GELU (Erf)");
    return binary(n);
  }
  if (op == "Concat") return concat(n);
  if (op == "Flatten") return flatten(n);
  if (op == "Reshape") return reshape(n);
  if (op == "Transpose") return transpose(n);
  if (op == "Split") return split(n);
  if (op == "Slice") return slice(n);
  if (op == "Pad") return pad(n);
  if (op == "Softmax") return softmax(n);
  if (op == "GlobalAveragePool") {
    allow_attributes(n, {});
    const value& x = get_tensor(n, 0);
    if (x.dims.size() != 4) fail(n, "input has shape " + dims_string(x.dims) + "; expected 4-D NCHW");
    emit(n, make_layer(layer_kind::global_average_pool), {x.layer}, {x.dims[0], x.dims[1], 1, 1});
    return;
  }
  if (op == "ReduceMean") return reduce_mean(n);
  if (op == "Unsqueeze" || op == "Squeeze") return squeeze_unsqueeze(n, op == "Unsqueeze");
  if (op == "Identity" || op == "Dropout") {
    if (op == "Identity") {
      allow_attributes(n, {});
    } else {
      allow_attributes(n, {"seed", "ratio", "is_test"});
      require_unused_outputs(n, 1, "mask");
      // Training mode drops values, unless the ratio is 0 (Swin calls F.dropout(p=0.0) with its
      // default training=True: the identity all the same).
      const float ratio = has_input(n, 1) ? get_scalar(n, 1, "ratio") : attr_float(n, "ratio", 0.5f);
      if (has_input(n, 2) && get_scalar(n, 2, "training_mode") != 0 && ratio != 0)
        fail(n, "training_mode=true with ratio " + std::to_string(ratio) + " is not supported (inference only)");
    }
    value v = get(n, 0);
    define(n, 0, std::move(v));
    return;
  }
  if (op == "Cast") {
    allow_attributes(n, {"to", "saturate"});
    const value& x = get_tensor(n, 0);
    if (attr_int(n, "to", 0) != onnx::TensorProto::FLOAT)
      fail(n, std::string("attribute to=") + data_type_name(int(attr_int(n, "to", 0))) +
                  " is not supported on a computed tensor (only float)");
    value v = x;
    define(n, 0, std::move(v));
    return;
  }
  fail(n, "operator " + op + " is not supported");
}

// ---------------------------------------------------------------------------------------------
// Constant folding (shape arithmetic of torch.onnx exports, and any op whose inputs are all
// constants). Returns false when the node has a computed input or is not foldable.

void importer::constant_node(const onnx::NodeProto& n) {
  if (n.attribute_size() != 1) fail(n, "expects exactly one value attribute");
  const auto& a = n.attribute(0);
  constant c;
  if (a.name() == "value") {
    if (a.type() != onnx::AttributeProto::TENSOR) fail(n, "attribute value must be a tensor");
    try {
      c = to_constant(a.t(), "the value of node '" + display_name(n) + "'");
    } catch (const std::invalid_argument& e) {
      fail(e.what());
    }
  } else if (a.name() == "value_float") {
    c.f = {a.f()};
  } else if (a.name() == "value_floats") {
    c.f.assign(a.floats().begin(), a.floats().end());
    c.dims = {int64_t(c.f.size())};
  } else if (a.name() == "value_int") {
    c.is_float = false;
    c.i = {a.i()};
  } else if (a.name() == "value_ints") {
    c.is_float = false;
    c.i.assign(a.ints().begin(), a.ints().end());
    c.dims = {int64_t(c.i.size())};
  } else {
    fail(n, "attribute " + a.name() + " is not supported");
  }
  define_constant(n, std::move(c), /*computed=*/false);
}

void importer::shape(const onnx::NodeProto& n) {
  allow_attributes(n, {"start", "end"});
  const value& x = get(n, 0);
  const dims_t& dims = x.kind == value_kind::constant ? x.c->dims : x.dims;
  const int64_t rank = int64_t(dims.size());
  slice_range r = clamp_slice(attr_int(n, "start", 0), attr_int(n, "end", rank), 1, rank);
  constant c;
  c.is_float = false;
  c.i.assign(dims.begin() + r.start, dims.begin() + r.start + r.count);
  c.dims = {r.count};
  define_constant(n, std::move(c));
}

dims_t importer::axes_input_or_attribute(const onnx::NodeProto& n, int input, const char* attribute, bool* present) {
  *present = true;
  if (has_input(n, input)) return get_ints(n, input, "axes");
  if (has_attr(n, attribute)) return attr_ints(n, attribute, {});
  *present = false;
  return {};
}

bool importer::fold_constant_node(const onnx::NodeProto& n) {
  static const std::set<std::string> foldable = {"Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Add",
                                                 "Sub", "Mul", "Div", "Slice", "Reshape", "Identity",
                                                 "ConstantOfShape", "Neg", "Floor", "Ceil", "Flatten",
                                                 "Transpose", "Equal", "Where", "Expand", "Mod",
                                                 "Pow", "Sqrt", "Not", "Range", "ScatterND"};
  const std::string& op = n.op_type();
  if (!foldable.count(op) || n.input_size() == 0) return false;
  for (int i = 0; i < n.input_size(); ++i)
    if (has_input(n, i) && get(n, i).kind != value_kind::constant) return false;
  if (!has_input(n, 0)) return false;
  const constant& x = get_constant(n, 0, "input");
  if (op == "Gather") {
    allow_attributes(n, {"axis"});
    define_constant(n, fold_gather(n, x, get_constant(n, 1, "indices")));
  } else if (op == "Unsqueeze" || op == "Squeeze") {
    allow_attributes(n, {"axes"});
    bool present = false;
    dims_t axes = axes_input_or_attribute(n, 1, "axes", &present);
    constant c = x;
    const int64_t out_rank = op == "Unsqueeze" ? int64_t(x.dims.size() + axes.size()) : int64_t(x.dims.size());
    for (int64_t& a : axes) {
      if (a < -out_rank || a >= out_rank) fail(n, "axis " + std::to_string(a) + " is out of range");
      if (a < 0) a += out_rank;
    }
    std::sort(axes.begin(), axes.end());
    if (op == "Unsqueeze") {
      for (int64_t a : axes) {
        if (a > int64_t(c.dims.size())) fail(n, "axis " + std::to_string(a) + " is out of range");
        c.dims.insert(c.dims.begin() + a, 1);
      }
    } else {
      dims_t kept;
      for (int64_t k = 0; k < int64_t(c.dims.size()); ++k) {
        bool squeeze = present ? std::binary_search(axes.begin(), axes.end(), k) : c.dims[k] == 1;
        if (squeeze && c.dims[k] != 1) fail(n, "cannot squeeze axis " + std::to_string(k) + " of size " + std::to_string(c.dims[k]));
        if (!squeeze) kept.push_back(c.dims[k]);
      }
      c.dims = kept;
    }
    define_constant(n, std::move(c));
  } else if (op == "Concat") {
    allow_attributes(n, {"axis"});
    std::vector<const constant*> parts;
    for (int i = 0; i < n.input_size(); ++i)
      if (has_input(n, i)) parts.push_back(&get_constant(n, i, "input"));
    define_constant(n, fold_concat(n, parts));
  } else if (op == "Cast") {
    allow_attributes(n, {"to", "saturate"});
    const int64_t to = attr_int(n, "to", 0);
    constant c;
    c.dims = x.dims;
    if (to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE) {
      c.is_float = true;
      c.f.resize(x.size());
      for (size_t k = 0; k < x.size(); ++k) c.f[k] = float(x.at(k));
    } else if (to == onnx::TensorProto::INT64 || to == onnx::TensorProto::INT32 || to == onnx::TensorProto::BOOL) {
      c.is_float = false;
      c.i.resize(x.size());
      for (size_t k = 0; k < x.size(); ++k) {
        if (x.is_float && !std::isfinite(x.f[k])) fail(n, "cannot cast a non-finite value to an integer");
        c.i[k] = x.is_float ? int64_t(x.f[k]) : x.i[k];
        if (to == onnx::TensorProto::BOOL) c.i[k] = c.i[k] != 0 || (x.is_float && x.f[k] != 0);
      }
    } else {
      fail(n, std::string("attribute to=") + data_type_name(int(to)) + " is not supported");
    }
    define_constant(n, std::move(c));
  } else if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    allow_attributes(n, {});
    define_constant(n, fold_binary(n, x, get_constant(n, 1, "input"), op));
  } else if (op == "Mod") {  // shape arithmetic: Swin's padding to whole windows, W % window
    allow_attributes(n, {"fmod"});
    const int64_t fmod = attr_int(n, "fmod", 0);
    if (fmod != 0 && fmod != 1) fail(n, "attribute fmod=" + std::to_string(fmod) + " is not 0 or 1");
    const constant& y = get_constant(n, 1, "input");
    if ((x.is_float || y.is_float) && fmod == 0) fail(n, "a floating-point Mod needs fmod=1 (the ONNX rule)");
    define_constant(n, fold_binary(n, x, y, fmod ? "FMod" : "Mod"));
  } else if (op == "Pow") {  // Swin's head_dim ** -0.5
    allow_attributes(n, {});
    const constant& y = get_constant(n, 1, "exponent");
    const constant shape = fold_binary(n, x, y, "Expand");
    const constant bx = fold_expand(n, x, shape.dims), by = fold_expand(n, y, shape.dims);
    constant c;
    c.dims = shape.dims;
    c.is_float = x.is_float;
    for (size_t k = 0; k < bx.size(); ++k) {
      const double v = std::pow(bx.at(k), by.at(k));
      if (c.is_float) {
        c.f.push_back(float(v));
      } else {
        if (!(std::fabs(v) < 9.2e18)) fail(n, "integer power " + std::to_string(v) + " overflows");
        c.i.push_back(int64_t(v));
      }
    }
    define_constant(n, std::move(c));
  } else if (op == "Sqrt") {
    allow_attributes(n, {});
    if (!x.is_float) fail(n, "Sqrt of an integer tensor is not valid ONNX");
    constant c = x;
    for (float& v : c.f) v = std::sqrt(v);
    define_constant(n, std::move(c));
  } else if (op == "Not") {
    allow_attributes(n, {});
    if (x.is_float) fail(n, "Not takes a boolean tensor");
    constant c = x;
    for (int64_t& v : c.i) v = v == 0;
    define_constant(n, std::move(c));
  } else if (op == "Range") {  // Swin's shift masks: arange over the padded map
    allow_attributes(n, {});
    const constant& limit = get_constant(n, 1, "limit");
    const constant& delta = get_constant(n, 2, "delta");
    if (x.size() != 1 || limit.size() != 1 || delta.size() != 1) fail(n, "start, limit and delta must be scalars");
    if (x.is_float != limit.is_float || x.is_float != delta.is_float) fail(n, "start, limit and delta differ in type");
    const double start = x.at(0), stop = limit.at(0), step = delta.at(0);
    if (step == 0 || !std::isfinite(start) || !std::isfinite(stop) || !std::isfinite(step)) fail(n, "delta must be nonzero and all finite");
    const double count = std::max(0.0, std::ceil((stop - start) / step));
    if (count > double(max_folded_elements)) fail(n, "a range of " + std::to_string(count) + " elements is too large");
    constant c;
    c.is_float = x.is_float;
    c.dims = {int64_t(count)};
    for (int64_t k = 0; k < int64_t(count); ++k) {
      if (c.is_float) {
        c.f.push_back(float(start + double(k) * step));
        continue;
      }
      int64_t offset = 0, v = 0;
      if (__builtin_mul_overflow(k, delta.i[0], &offset) || __builtin_add_overflow(x.i[0], offset, &v))
        fail(n, "the range overflows 64-bit integers");
      c.i.push_back(v);
    }
    define_constant(n, std::move(c));
  } else if (op == "ScatterND") {  // Swin's shift masks: regions of a zero map set to their ids
    allow_attributes(n, {"reduction"});
    if (attr_string(n, "reduction", "none") != "none") fail(n, "only reduction=none is supported");
    const constant& indices = get_constant(n, 1, "indices");
    const constant& updates = get_constant(n, 2, "updates");
    if (indices.is_float) fail(n, "indices must be integers");
    if (updates.is_float != x.is_float) fail(n, "data and updates differ in type");
    const size_t rank = x.dims.size();
    if (indices.dims.empty() || rank == 0) fail(n, "data and indices must have rank >= 1");
    const size_t k = size_t(indices.dims.back());
    if (k < 1 || k > rank) fail(n, "index depth " + std::to_string(k) + " does not fit data of rank " + std::to_string(rank));
    // updates: indices.dims[:-1] + data.dims[k:]
    dims_t expected(indices.dims.begin(), indices.dims.end() - 1);
    expected.insert(expected.end(), x.dims.begin() + int64_t(k), x.dims.end());
    if (updates.dims != expected)
      fail(n, "updates have shape " + dims_string(updates.dims) + ", expected " + dims_string(expected));
    size_t slice = 1;
    for (size_t a = k; a < rank; ++a) slice *= size_t(x.dims[a]);
    constant c = x;
    const size_t points = indices.size() / k;
    for (size_t p = 0; p < points; ++p) {
      size_t offset = 0;
      for (size_t a = 0; a < k; ++a) {
        int64_t i = indices.i[p * k + a];
        if (i < 0) i += x.dims[a];
        if (i < 0 || i >= x.dims[a]) fail(n, "index " + std::to_string(indices.i[p * k + a]) + " is out of range");
        offset = offset * size_t(x.dims[a]) + size_t(i);
      }
      for (size_t e = 0; e < slice; ++e) {
        if (c.is_float) c.f[offset * slice + e] = updates.f[p * slice + e];
        else c.i[offset * slice + e] = updates.i[p * slice + e];
      }
    }
    define_constant(n, std::move(c));
  } else if (op == "Neg" || op == "Floor" || op == "Ceil") {
    allow_attributes(n, {});
    constant c = x;
    for (float& v : c.f) v = op == "Neg" ? -v : op == "Floor" ? std::floor(v) : std::ceil(v);
    if (op == "Neg")
      for (int64_t& v : c.i) {
        if (v == INT64_MIN) fail(n, "integer overflow negating " + std::to_string(v));
        v = -v;
      }
    define_constant(n, std::move(c));
  } else if (op == "Slice") {
    define_constant(n, fold_slice(n, x));
  } else if (op == "Reshape") {
    allow_attributes(n, {"allowzero"});
    constant c = x;
    c.dims = reshape_target(n, x.dims);
    define_constant(n, std::move(c));
  } else if (op == "Flatten") {
    allow_attributes(n, {"axis"});
    int64_t axis = attr_int(n, "axis", 1);
    const int64_t rank = int64_t(x.dims.size());
    if (axis < 0) axis += rank;
    if (axis < 0 || axis > rank) fail(n, "axis is out of range");
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < rank; ++k) (k < axis ? outer : inner) *= x.dims[k];
    constant c = x;
    c.dims = {outer, inner};
    define_constant(n, std::move(c));
  } else if (op == "Identity") {
    define_constant(n, x);
  } else if (op == "Transpose") {
    allow_attributes(n, {"perm"});
    const size_t rank = x.dims.size();
    dims_t perm = attr_ints(n, "perm", {});
    if (perm.empty())
      for (size_t k = rank; k-- > 0;) perm.push_back(int64_t(k));  // default: reverse the axes
    dims_t sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    for (size_t k = 0; k < sorted.size(); ++k)
      if (sorted.size() != rank || sorted[k] != int64_t(k)) fail(n, "attribute perm=" + dims_string(perm) + " is not a permutation");
    constant c;
    c.is_float = x.is_float;
    for (int64_t p : perm) c.dims.push_back(x.dims[size_t(p)]);
    std::vector<int64_t> stride(rank, 1);
    for (size_t k = rank; k-- > 1;) stride[k - 1] = stride[k] * x.dims[k];
    const int64_t count = int64_t(x.size());
    dims_t index(rank, 0);  // over the output
    for (int64_t e = 0; e < count; ++e) {
      int64_t src = 0;
      for (size_t k = 0; k < rank; ++k) src += index[k] * stride[size_t(perm[k])];
      if (c.is_float) c.f.push_back(x.f[size_t(src)]);
      else c.i.push_back(x.i[size_t(src)]);
      for (size_t k = rank; k-- > 0;) {
        if (++index[k] < c.dims[k]) break;
        index[k] = 0;
      }
    }
    define_constant(n, std::move(c));
  } else if (op == "Equal") {
    allow_attributes(n, {});
    define_constant(n, fold_binary(n, x, get_constant(n, 1, "input"), op));
  } else if (op == "Expand") {
    allow_attributes(n, {});
    define_constant(n, fold_expand(n, x, get_ints(n, 1, "shape")));
  } else if (op == "Where") {
    allow_attributes(n, {});
    const constant& a = get_constant(n, 1, "X");
    const constant& b = get_constant(n, 2, "Y");
    // The common shape of all three, then each broadcast to it.
    const constant shape_ab = fold_binary(n, a, b, "Expand");
    const constant shape_all = fold_binary(n, x, shape_ab, "Expand");
    const constant cond = fold_expand(n, x, shape_all.dims), xa = fold_expand(n, a, shape_all.dims),
                   xb = fold_expand(n, b, shape_all.dims);
    if (xa.is_float != xb.is_float) fail(n, "X and Y differ in type");
    constant c = xa;
    for (size_t e = 0; e < c.size(); ++e) {
      if (cond.at(e) != 0) continue;
      if (c.is_float) c.f[e] = xb.f[e];
      else c.i[e] = xb.i[e];
    }
    define_constant(n, std::move(c));
  } else if (op == "ConstantOfShape") {
    allow_attributes(n, {"value"});
    if (x.is_float) fail(n, "the shape input must be an integer tensor");
    constant c;
    c.dims = x.i;
    const int64_t count = element_count(c.dims);
    if (count < 0 || count > max_folded_elements) fail(n, "shape " + dims_string(c.dims) + " is invalid or too large");
    constant fill;
    fill.f = {0.0f};
    if (const auto* a = find_attr(n, "value")) {
      try {
        fill = to_constant(a->t(), "the value of node '" + display_name(n) + "'");
      } catch (const std::invalid_argument& e) {
        fail(e.what());
      }
      if (fill.size() != 1) fail(n, "attribute value must hold one element");
    }
    c.is_float = fill.is_float;
    if (c.is_float) c.f.assign(size_t(count), fill.f[0]);
    else c.i.assign(size_t(count), fill.i[0]);
    define_constant(n, std::move(c));
  } else {
    return false;
  }
  return true;
}

constant importer::fold_expand(const onnx::NodeProto& n, const constant& c, const dims_t& dims) {
  const int64_t count = element_count(dims);
  if (count < 0 || count > max_folded_elements) fail(n, "shape " + dims_string(dims) + " is invalid or too large");
  constant ones;
  ones.is_float = c.is_float;
  ones.dims = dims;
  if (c.is_float) ones.f.assign(size_t(count), 1.0f);
  else ones.i.assign(size_t(count), 1);
  return fold_binary(n, c, ones, "Expand");
}

constant importer::fold_binary(const onnx::NodeProto& n, const constant& a, const constant& b, const std::string& op) {
  const size_t rank = std::max(a.dims.size(), b.dims.size());
  dims_t ad(rank - a.dims.size(), 1), bd(rank - b.dims.size(), 1);
  ad.insert(ad.end(), a.dims.begin(), a.dims.end());
  bd.insert(bd.end(), b.dims.begin(), b.dims.end());
  constant c;
  c.is_float = a.is_float || b.is_float;
  c.dims.resize(rank);
  for (size_t k = 0; k < rank; ++k) {
    if (ad[k] != bd[k] && ad[k] != 1 && bd[k] != 1)
      fail(n, "operand shapes " + dims_string(a.dims) + " and " + dims_string(b.dims) + " do not broadcast");
    c.dims[k] = ad[k] == 1 ? bd[k] : ad[k];
  }
  const int64_t count = element_count(c.dims);
  if (count < 0 || count > max_folded_elements) fail(n, "folded constant is too large");
  std::vector<int64_t> as(rank), bs(rank);  // broadcast strides
  int64_t sa = 1, sb = 1;
  for (size_t k = rank; k-- > 0;) {
    as[k] = ad[k] == 1 ? 0 : sa;
    bs[k] = bd[k] == 1 ? 0 : sb;
    sa *= ad[k];
    sb *= bd[k];
  }
  if (op == "Equal") c.is_float = false;  // bool, held as 0/1 integers
  if (op == "Expand") c.is_float = a.is_float;
  if (c.is_float) c.f.resize(size_t(count));
  else c.i.resize(size_t(count));
  dims_t index(rank, 0);
  for (int64_t e = 0; e < count; ++e) {
    int64_t ia = 0, ib = 0;
    for (size_t k = 0; k < rank; ++k) {
      ia += index[k] * as[k];
      ib += index[k] * bs[k];
    }
    if (op == "Equal") {
      c.i[size_t(e)] = a.at(size_t(ia)) == b.at(size_t(ib));
    } else if (op == "Expand") {
      if (c.is_float) c.f[size_t(e)] = a.f[size_t(ia)];
      else c.i[size_t(e)] = a.i[size_t(ia)];
    } else if (c.is_float) {
      const double x = a.at(size_t(ia)), y = b.at(size_t(ib));
      c.f[size_t(e)] = op == "FMod" ? std::fmod(float(x), float(y))
                                    : float(op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y);
    } else if (op == "Mod" || op == "FMod") {
      const int64_t x = a.i[size_t(ia)], y = b.i[size_t(ib)];
      if (y == 0) fail(n, "integer modulo by zero");
      int64_t r = y == -1 ? 0 : x % y;  // C's remainder: the sign of x (and no INT64_MIN % -1 trap)
      if (op == "Mod" && r != 0 && (r < 0) != (y < 0)) r += y;  // Python's: the sign of y
      c.i[size_t(e)] = r;
    } else {
      const int64_t x = a.i[size_t(ia)], y = b.i[size_t(ib)];
      if (op == "Div" && y == 0) fail(n, "integer division by zero");
      int64_t r = 0;
      bool overflow = false;
      if (op == "Add") {
        overflow = __builtin_add_overflow(x, y, &r);
      } else if (op == "Sub") {
        overflow = __builtin_sub_overflow(x, y, &r);
      } else if (op == "Mul") {
        overflow = __builtin_mul_overflow(x, y, &r);
      } else {
        overflow = x == INT64_MIN && y == -1;
        if (!overflow) r = x / y;
      }
      if (overflow) fail(n, "integer overflow folding " + std::to_string(x) + " " + op + " " + std::to_string(y));
      c.i[size_t(e)] = r;
    }
    for (size_t k = rank; k-- > 0;) {
      if (++index[k] < c.dims[k]) break;
      index[k] = 0;
    }
  }
  return c;
}

constant importer::fold_gather(const onnx::NodeProto& n, const constant& data, const constant& idx) {
  if (idx.is_float) fail(n, "indices must be integers");
  const int64_t rank = int64_t(data.dims.size());
  int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) fail(n, "axis is out of range for data of shape " + dims_string(data.dims));
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= data.dims[k];
  for (int64_t k = axis + 1; k < rank; ++k) inner *= data.dims[k];
  const int64_t dim = data.dims[axis];
  constant c;
  c.is_float = data.is_float;
  c.dims.assign(data.dims.begin(), data.dims.begin() + axis);
  c.dims.insert(c.dims.end(), idx.dims.begin(), idx.dims.end());
  c.dims.insert(c.dims.end(), data.dims.begin() + axis + 1, data.dims.end());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t j : idx.i) {
      if (j < 0) j += dim;
      if (j < 0 || j >= dim) fail(n, "index " + std::to_string(j) + " is out of range for dimension " + std::to_string(dim));
      for (int64_t k = 0; k < inner; ++k) {
        const size_t src = size_t((o * dim + j) * inner + k);
        if (c.is_float) c.f.push_back(data.f[src]);
        else c.i.push_back(data.i[src]);
      }
    }
  }
  return c;
}

constant importer::fold_concat(const onnx::NodeProto& n, const std::vector<const constant*>& parts) {
  if (parts.empty()) fail(n, "has no inputs");
  const int64_t rank = int64_t(parts[0]->dims.size());
  int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) fail(n, "axis is out of range");
  constant c;
  c.is_float = parts[0]->is_float;
  c.dims = parts[0]->dims;
  c.dims[axis] = 0;
  for (const constant* p : parts) {
    if (int64_t(p->dims.size()) != rank || p->is_float != c.is_float) fail(n, "inputs differ in rank or type");
    for (int64_t k = 0; k < rank; ++k)
      if (k != axis && p->dims[k] != parts[0]->dims[k]) fail(n, "input shapes differ outside the concatenation axis");
    c.dims[axis] += p->dims[axis];
  }
  int64_t outer = 1, inner = 1;
  for (int64_t k = 0; k < axis; ++k) outer *= c.dims[k];
  for (int64_t k = axis + 1; k < rank; ++k) inner *= c.dims[k];
  for (int64_t o = 0; o < outer; ++o) {
    for (const constant* p : parts) {
      const int64_t block = p->dims[axis] * inner;
      const size_t from = size_t(o * block), to = size_t((o + 1) * block);
      if (c.is_float) c.f.insert(c.f.end(), p->f.begin() + long(from), p->f.begin() + long(to));
      else c.i.insert(c.i.end(), p->i.begin() + long(from), p->i.begin() + long(to));
    }
  }
  return c;
}

importer::slice_parameters importer::read_slice(const onnx::NodeProto& n) {
  slice_parameters p;
  if (opset_ >= 10) {
    allow_attributes(n, {});
    p.starts = get_ints(n, 1, "starts");
    p.ends = get_ints(n, 2, "ends");
    if (has_input(n, 3)) p.axes = get_ints(n, 3, "axes");
    if (has_input(n, 4)) p.steps = get_ints(n, 4, "steps");
  } else {
    allow_attributes(n, {"starts", "ends", "axes"});
    p.starts = attr_ints(n, "starts", {});
    p.ends = attr_ints(n, "ends", {});
    p.axes = attr_ints(n, "axes", {});
  }
  if (p.axes.empty())
    for (size_t k = 0; k < p.starts.size(); ++k) p.axes.push_back(int64_t(k));
  if (p.steps.empty()) p.steps.assign(p.starts.size(), 1);
  if (p.ends.size() != p.starts.size() || p.axes.size() != p.starts.size() || p.steps.size() != p.starts.size())
    fail(n, "starts, ends, axes and steps differ in length");
  return p;
}

constant importer::fold_slice(const onnx::NodeProto& n, const constant& data) {
  auto [starts, ends, axes, steps] = read_slice(n);
  const int64_t rank = int64_t(data.dims.size());
  std::vector<slice_range> ranges(static_cast<size_t>(rank));
  for (int64_t k = 0; k < rank; ++k) ranges[k] = {0, 1, data.dims[k]};
  for (size_t k = 0; k < starts.size(); ++k) {
    int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
    if (axis < 0 || axis >= rank) fail(n, "axis " + std::to_string(axes[k]) + " is out of range");
    if (steps[k] == 0) fail(n, "step 0 is invalid");
    ranges[axis] = clamp_slice(starts[k], ends[k], steps[k], data.dims[axis]);
  }
  constant c;
  c.is_float = data.is_float;
  for (const auto& r : ranges) c.dims.push_back(r.count);
  const int64_t count = element_count(c.dims);
  std::vector<int64_t> stride(size_t(rank), 1);
  for (int64_t k = rank - 1; k > 0; --k) stride[k - 1] = stride[k] * data.dims[k];
  (c.is_float ? c.f.reserve(size_t(count)) : c.i.reserve(size_t(count)));
  dims_t index(size_t(rank), 0);
  for (int64_t e = 0; e < count; ++e) {
    int64_t src = 0;
    for (int64_t k = 0; k < rank; ++k) src += (ranges[k].start + index[k] * ranges[k].step) * stride[k];
    if (c.is_float) c.f.push_back(data.f[size_t(src)]);
    else c.i.push_back(data.i[size_t(src)]);
    for (int64_t k = rank; k-- > 0;) {
      if (++index[k] < c.dims[k]) break;
      index[k] = 0;
    }
  }
  return c;
}

// Reshape's target dims: 0 copies the input dimension (unless allowzero), -1 is inferred.
dims_t importer::reshape_target(const onnx::NodeProto& n, const dims_t& in) {
  std::vector<int64_t> target = get_ints(n, 1, "shape");
  const bool allowzero = attr_int(n, "allowzero", 0) != 0;
  dims_t out(target.size());
  int infer = -1;
  int64_t known = 1;
  for (size_t k = 0; k < target.size(); ++k) {
    int64_t t = target[k];
    if (t == 0 && !allowzero) {
      if (k >= in.size()) fail(n, "shape " + dims_string(target) + " copies a dimension the input " + dims_string(in) + " lacks");
      t = in[k];
    }
    if (t == -1) {
      if (infer >= 0) fail(n, "shape " + dims_string(target) + " has more than one -1");
      infer = int(k);
      continue;
    }
    if (t < 0) fail(n, "shape " + dims_string(target) + " has a negative dimension");
    if (t > 0 && known > max_elements / t) fail(n, "shape " + dims_string(target) + " is too large");
    out[k] = t;
    known *= t;
  }
  const int64_t total = element_count(in);
  if (infer >= 0) {
    if (known == 0 || total % known != 0)
      fail(n, "cannot reshape " + dims_string(in) + " to " + dims_string(target));
    out[size_t(infer)] = total / known;
  } else if (element_count(out) != total) {
    fail(n, "cannot reshape " + dims_string(in) + " (" + std::to_string(total) + " elements) to " + dims_string(out));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Computing ops

window_params importer::window_attributes(const onnx::NodeProto& n, int kernel_h, int kernel_w, bool pooling) {
  const std::string auto_pad = attr_string(n, "auto_pad", "NOTSET");
  if (auto_pad != "NOTSET") fail(n, "attribute auto_pad=" + auto_pad + " is not supported");
  window_params w;
  w.kernel_h = kernel_h;
  w.kernel_w = kernel_w;
  const dims_t strides = attr_ints(n, "strides", {1, 1});
  const dims_t dilations = attr_ints(n, "dilations", {1, 1});
  const dims_t pads = attr_ints(n, "pads", {0, 0, 0, 0});
  if (strides.size() != 2 || strides[0] < 1 || strides[1] < 1 || strides[0] > INT_MAX || strides[1] > INT_MAX)
    fail(n, "attribute strides=" + dims_string(strides) + " is not supported (two positive values)");
  if (dilations.size() != 2 || dilations[0] < 1 || dilations[1] < 1 || dilations[0] > INT_MAX || dilations[1] > INT_MAX)
    fail(n, "attribute dilations=" + dims_string(dilations) + " is not supported (two positive values)");
  if (pads.size() != 4) fail(n, "attribute pads=" + dims_string(pads) + " is not supported (four values for 2-D)");
  for (int64_t p : pads)
    if (p < 0 || p > INT_MAX) fail(n, "attribute pads=" + dims_string(pads) + " is not supported (negative padding)");
  w.stride_h = int(strides[0]);
  w.stride_w = int(strides[1]);
  w.dilation_h = int(dilations[0]);
  w.dilation_w = int(dilations[1]);
  // ONNX order: x1_begin, x2_begin, x1_end, x2_end with x1 = H, x2 = W.
  w.pad = padding{int(pads[0]), int(pads[1]), int(pads[2]), int(pads[3])};
  (void)pooling;
  return w;
}

void importer::conv(const onnx::NodeProto& n) {
  allow_attributes(n, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
  const value& x = get_tensor(n, 0);
  if (x.dims.size() != 4) fail(n, "input has shape " + dims_string(x.dims) + "; only 2-D convolutions of NCHW tensors are supported");
  const constant& w = get_constant(n, 1, "weight");
  if (!w.is_float || w.dims.size() != 4)
    fail(n, "weight '" + n.input(1) + "' has shape " + dims_string(w.dims) + "; expected float [O, C/group, kH, kW]");
  const int64_t group = attr_int(n, "group", 1);
  const int64_t channels = x.dims[1];
  const int64_t out_channels = w.dims[0], kh = w.dims[2], kw = w.dims[3];
  if (group < 1 || channels % group != 0 || out_channels % group != 0)
    fail(n, "attribute group=" + std::to_string(group) + " does not divide the " + std::to_string(channels) +
                " input and " + std::to_string(out_channels) + " output channels");
  if (w.dims[1] != channels / group)
    fail(n, "weight '" + n.input(1) + "' has shape " + dims_string(w.dims) + " but the input " + dims_string(x.dims) +
                " with group=" + std::to_string(group) + " needs " + std::to_string(channels / group) +
                " channels per group");
  if (kh < 1 || kw < 1 || out_channels < 1 || kh > INT_MAX || kw > INT_MAX || out_channels > INT_MAX)
    fail(n, "weight '" + n.input(1) + "' has an invalid shape " + dims_string(w.dims));
  const dims_t kernel_shape = attr_ints(n, "kernel_shape", {kh, kw});
  if (kernel_shape != dims_t{kh, kw})
    fail(n, "attribute kernel_shape=" + dims_string(kernel_shape) + " does not match the weight shape " + dims_string(w.dims));
  layer l = make_layer(layer_kind::convolution);
  l.window = window_attributes(n, int(kh), int(kw), false);
  l.output_channels = int(out_channels);
  l.groups = int(group);
  // OIHW -> OHWI
  const int64_t ci = w.dims[1];
  std::vector<float> ohwi(w.f.size());
  for (int64_t o = 0; o < out_channels; ++o)
    for (int64_t c = 0; c < ci; ++c)
      for (int64_t y = 0; y < kh; ++y)
        for (int64_t xx = 0; xx < kw; ++xx)
          ohwi[size_t(((o * kh + y) * kw + xx) * ci + c)] = w.f[size_t(((o * ci + c) * kh + y) * kw + xx)];
  l.weights = weight_blob::from_vector(std::move(ohwi));
  if (has_input(n, 2)) {
    const constant& b = get_constant(n, 2, "bias");
    if (!b.is_float || b.size() != size_t(out_channels))
      fail(n, "bias '" + n.input(2) + "' has shape " + dims_string(b.dims) + "; expected [" + std::to_string(out_channels) + "]");
    l.bias = weight_blob::copy_of(b.f.data(), b.f.size());
  }
  const window_params& win = l.window;
  const int oh = window_output_size(int(x.dims[2]), win.kernel_h, win.stride_h, win.dilation_h, win.pad.top, win.pad.bottom, false);
  const int ow = window_output_size(int(x.dims[3]), win.kernel_w, win.stride_w, win.dilation_w, win.pad.left, win.pad.right, false);
  if (oh < 1 || ow < 1) fail(n, "the " + std::to_string(kh) + "x" + std::to_string(kw) + " kernel does not fit the padded input " + dims_string(x.dims));
  emit(n, std::move(l), {x.layer}, {x.dims[0], out_channels, oh, ow});
}

void importer::pool(const onnx::NodeProto& n, bool max) {
  if (max) {
    allow_attributes(n, {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"});
    if (attr_int(n, "storage_order", 0) != 0)
      fail(n, "attribute storage_order=" + std::to_string(attr_int(n, "storage_order", 0)) + " is not supported");
    require_unused_outputs(n, 1, "Indices");
  } else {
    allow_attributes(n, {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"});
  }
  const value& x = get_tensor(n, 0);
  if (x.dims.size() != 4) fail(n, "input has shape " + dims_string(x.dims) + "; only 2-D pooling of NCHW tensors is supported");
  if (!has_attr(n, "kernel_shape")) fail(n, "attribute kernel_shape is missing");
  const dims_t k = attr_ints(n, "kernel_shape", {});
  if (k.size() != 2 || k[0] < 1 || k[1] < 1 || k[0] > INT_MAX || k[1] > INT_MAX)
    fail(n, "attribute kernel_shape=" + dims_string(k) + " is not supported (2-D pooling)");
  layer l = make_layer(max ? layer_kind::max_pool : layer_kind::average_pool);
  l.window = window_attributes(n, int(k[0]), int(k[1]), true);
  const int64_t ceil_mode = attr_int(n, "ceil_mode", 0);
  if (ceil_mode != 0 && ceil_mode != 1) fail(n, "attribute ceil_mode=" + std::to_string(ceil_mode) + " is not supported");
  l.window.ceil_mode = ceil_mode == 1;
  if (!max) {
    const int64_t cip = attr_int(n, "count_include_pad", 0);  // ONNX's default is 0 (PyTorch's is 1)
    if (cip != 0 && cip != 1) fail(n, "attribute count_include_pad=" + std::to_string(cip) + " is not supported");
    l.window.count_include_pad = cip == 1;
  }
  const window_params& win = l.window;
  const int oh = window_output_size(int(x.dims[2]), win.kernel_h, win.stride_h, win.dilation_h, win.pad.top, win.pad.bottom, win.ceil_mode);
  const int ow = window_output_size(int(x.dims[3]), win.kernel_w, win.stride_w, win.dilation_w, win.pad.left, win.pad.right, win.ceil_mode);
  if (oh < 1 || ow < 1) fail(n, "the " + dims_string(k) + " window does not fit the padded input " + dims_string(x.dims));
  emit(n, std::move(l), {x.layer}, {x.dims[0], x.dims[1], oh, ow});
}

void importer::gemm(const onnx::NodeProto& n) {
  if (opset_ < 7) allow_attributes(n, {"alpha", "beta", "transA", "transB", "broadcast"});
  else allow_attributes(n, {"alpha", "beta", "transA", "transB"});
  if (attr_int(n, "transA", 0) != 0) fail(n, "attribute transA=" + std::to_string(attr_int(n, "transA", 0)) + " is not supported");
  const int64_t trans_b = attr_int(n, "transB", 0);
  const float alpha = attr_float(n, "alpha", 1.0f), beta = attr_float(n, "beta", 1.0f);
  const value a = get_any_tensor(n, 0);
  if (a.dims.size() != 2) fail(n, "input A has shape " + dims_string(a.dims) + "; expected 2-D [N, K]");
  const constant& b = get_constant(n, 1, "weight B");
  if (!b.is_float || b.dims.size() != 2) fail(n, "weight '" + n.input(1) + "' has shape " + dims_string(b.dims) + "; expected float 2-D");
  const int64_t k = a.dims[1];
  const int64_t out = trans_b ? b.dims[0] : b.dims[1];
  const int64_t bk = trans_b ? b.dims[1] : b.dims[0];
  if (bk != k || out < 1 || out > INT_MAX)
    fail(n, "weight '" + n.input(1) + "' has shape " + dims_string(b.dims) + " (transB=" + std::to_string(trans_b) +
                ") which does not fit the input " + dims_string(a.dims));
  std::vector<float> w(size_t(out * k));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < k; ++i) w[size_t(o * k + i)] = (trans_b ? b.f[size_t(o * k + i)] : b.f[size_t(i * out + o)]) * alpha;
  // Over tokens [T, K] (channels last) the same Linear per token: a 1x1 convolution.
  layer l = make_layer(a.channels_last ? layer_kind::convolution : layer_kind::fully_connected);
  l.output_channels = int(out);
  l.weights = weight_blob::from_vector(std::move(w));
  if (has_input(n, 2) && beta != 0.0f) {
    const constant& c = get_constant(n, 2, "bias C");
    if (!c.is_float) fail(n, "bias '" + n.input(2) + "' must be float");
    std::vector<float> bias(static_cast<size_t>(out));
    const int64_t count = int64_t(c.size());
    const bool per_output = count == out && (c.dims.size() == 1 || (c.dims.size() == 2 && c.dims[0] == 1));
    if (!per_output && count != 1)
      fail(n, "bias '" + n.input(2) + "' has shape " + dims_string(c.dims) + "; expected [" + std::to_string(out) + "] or a scalar");
    for (int64_t o = 0; o < out; ++o) bias[size_t(o)] = c.f[size_t(per_output ? o : 0)] * beta;
    l.bias = weight_blob::from_vector(std::move(bias));
  }
  value like = a;
  like.dims.back() = out;
  emit_like(n, std::move(l), {a.layer}, like);
}

// [N, K] x constant [K, M] is a fully connected layer; [N, H, W, K] (channels last) x [K, M] is
// the same per pixel: a 1x1 convolution (ConvNeXt's pointwise Linear layers).
void importer::matmul(const onnx::NodeProto& n) {
  allow_attributes(n, {});
  const value a = get_any_tensor(n, 0);
  const bool per_pixel = a.channels_last;
  if (a.dims.size() != 2 && !per_pixel)
    fail(n, "input A has shape " + dims_string(a.dims) +
                "; only 2-D [N, K] or channels-last / token [..., K] x constant [K, M] is supported");
  const int64_t in_channels = a.dims.back();
  const value& bv = get(n, 1);
  if (bv.kind != value_kind::constant) fail(n, "the second operand must be a constant weight [K, M]");
  const constant& b = *bv.c;
  if (!b.is_float || b.dims.size() != 2 || b.dims[0] != in_channels || b.dims[1] < 1 || b.dims[1] > INT_MAX)
    fail(n, "weight '" + n.input(1) + "' has shape " + dims_string(b.dims) + "; expected float [" + std::to_string(in_channels) + ", M]");
  const int64_t k = b.dims[0], out = b.dims[1];
  std::vector<float> w(size_t(out * k));  // [M][K]: fully connected's layout and the 1x1 convolution's OHWI
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < k; ++i) w[size_t(o * k + i)] = b.f[size_t(i * out + o)];
  layer l = make_layer(per_pixel ? layer_kind::convolution : layer_kind::fully_connected);
  l.output_channels = int(out);
  l.weights = weight_blob::from_vector(std::move(w));
  // A following Add of a constant folds in as bias.
  if (!per_pixel) {
    emit(n, std::move(l), {a.layer}, {a.dims[0], out});
    return;
  }
  value like = a;
  like.dims.back() = out;
  emit_like(n, std::move(l), {a.layer}, like);
}

void importer::batch_norm(const onnx::NodeProto& n) {
  allow_attributes(n, {"epsilon", "momentum", "training_mode", "spatial", "is_test"});
  if (attr_int(n, "training_mode", 0) != 0) fail(n, "attribute training_mode=1 is not supported (inference only)");
  if (opset_ < 7 && attr_int(n, "is_test", 0) == 0)
    fail(n, "attribute is_test=0 (batch statistics) is not supported (inference only)");
  if (attr_int(n, "spatial", 1) != 1) fail(n, "attribute spatial=0 is not supported");
  require_unused_outputs(n, 1, "training statistics");
  const value& x = get_tensor(n, 0);
  if (x.dims.size() != 4 && x.dims.size() != 2 && !x.channels_last) fail(n, "input has shape " + dims_string(x.dims));
  const int64_t c = x.dims[1];
  std::vector<float> w;
  const char* roles[] = {"scale", "B", "mean", "var"};
  for (int i = 1; i <= 4; ++i) {
    const constant& p = get_constant(n, i, roles[i - 1]);
    if (!p.is_float || p.size() != size_t(c))
      fail(n, std::string(roles[i - 1]) + " '" + n.input(i) + "' has shape " + dims_string(p.dims) + "; expected [" + std::to_string(c) + "]");
    w.insert(w.end(), p.f.begin(), p.f.end());
  }
  layer l = make_layer(layer_kind::batch_norm);
  l.weights = weight_blob::from_vector(std::move(w));
  l.epsilon = attr_float(n, "epsilon", 1e-5f);
  emit(n, std::move(l), {x.layer}, x.dims);
}

void importer::clip(const onnx::NodeProto& n) {
  activation act;
  if (opset_ < 11) {
    allow_attributes(n, {"min", "max"});
    act.min = attr_float(n, "min", -INFINITY);
    act.max = attr_float(n, "max", INFINITY);
  } else {
    allow_attributes(n, {});
    if (has_input(n, 1)) act.min = get_scalar(n, 1, "min");
    if (has_input(n, 2)) act.max = get_scalar(n, 2, "max");
  }
  if (std::isnan(act.min) || std::isnan(act.max) || act.min > act.max)
    fail(n, "clip range [" + std::to_string(act.min) + ", " + std::to_string(act.max) + "] is not supported");
  const value x = get_any_tensor(n, 0);
  layer l = make_layer(layer_kind::clamp);
  l.act = act;
  emit_like(n, std::move(l), {x.layer}, x);
}

// HardSigmoid(x) = clamp(alpha * x + beta, 0, 1) is a per-channel affine layer with every channel's
// scale alpha and shift beta; HardSwish(x) = x * HardSigmoid(x) with alpha 1/6 (how opset 14
// defines it; torch exports opset 13's hardswish as Mul(x, HardSigmoid(x)) itself).
void importer::hard_sigmoid(const onnx::NodeProto& n, bool swish) {
  allow_attributes(n, swish ? std::initializer_list<const char*>{} : std::initializer_list<const char*>{"alpha", "beta"});
  const float alpha = swish ? 1.0f / 6.0f : attr_float(n, "alpha", 0.2f);
  const float beta = swish ? 0.5f : attr_float(n, "beta", 0.5f);
  if (!std::isfinite(alpha) || !std::isfinite(beta))
    fail(n, "alpha " + std::to_string(alpha) + " and beta " + std::to_string(beta) + " must be finite");
  const value x = get_any_tensor(n, 0);
  if (x.dims.size() != 4 && x.dims.size() != 2 && !x.channels_last) fail(n, "input has shape " + dims_string(x.dims));
  const size_t channels = size_t(channels_of(x));
  const std::string name = node_layer_name(n);
  layer l = channel_affine_layer({}, x.layer, std::vector<float>(channels, alpha), std::vector<float>(channels, beta),
                                 activation{0.0f, 1.0f});
  const int gate = emit_like(n, std::move(l), {x.layer}, x, swish ? name + "/hardsigmoid" : name);
  if (swish) emit_like(n, make_layer(layer_kind::multiply), {x.layer, gate}, x, name);
}

// A constant operand broadcast per channel (or a scalar) of a [N,C,H,W] or [N,C] tensor, as C values.
std::vector<float> importer::per_channel(const onnx::NodeProto& n, const value& xv, const constant& c,
                                         const std::string& name) {
  const dims_t& x = xv.dims;
  const size_t rank = x.size();
  const size_t axis = channel_axis(xv);
  bool ok = c.is_float && c.dims.size() <= rank;
  dims_t d;
  if (ok) {
    d.assign(rank - c.dims.size(), 1);
    d.insert(d.end(), c.dims.begin(), c.dims.end());
    for (size_t k = 0; k < rank; ++k)
      if (d[k] != 1 && !(k == axis && d[k] == x[axis])) ok = false;
  }
  if (!ok)
    fail(n, "constant operand '" + name + "' of shape " + dims_string(c.dims) + " is not supported with a tensor of shape " +
                dims_string(x) + (xv.channels_last ? " (channels last: only a scalar or a per-channel [C] constant)"
                                                   : " (only a scalar or a per-channel [C,1,1] / [1,C,1,1] constant)"));
  std::vector<float> v(static_cast<size_t>(x[axis]));
  for (size_t k = 0; k < v.size(); ++k) v[k] = c.f[c.size() == 1 ? 0 : k];
  return v;
}

void importer::binary(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  const value& a = get(n, 0);
  const value& b = get(n, 1);
  const bool ca = a.kind == value_kind::constant, cb = b.kind == value_kind::constant;
  bool legacy_broadcast = false;
  if (opset_ < 7) {  // opset 6: explicit broadcast of B, aligned at `axis` (default: trailing)
    allow_attributes(n, {"broadcast", "axis"});
    legacy_broadcast = attr_int(n, "broadcast", 0) != 0;
  } else {
    allow_attributes(n, {});
  }
  if (ca || cb) {
    if (ca && (op == "Sub" || op == "Div")) fail(n, "a constant first operand is not supported");
    const int tensor_input = ca ? 1 : 0;
    const constant* c = ca ? a.c.get() : b.c.get();
    constant aligned;
    if (legacy_broadcast && cb && has_attr(n, "axis")) {
      const value& x = get_tensor(n, 0);
      int64_t axis = attr_int(n, "axis", 0);
      if (axis < 0) axis += int64_t(x.dims.size());
      aligned = *c;
      if (axis < 0 || axis + int64_t(c->dims.size()) > int64_t(x.dims.size()))
        fail(n, "attribute axis=" + std::to_string(attr_int(n, "axis", 0)) + " does not fit operand shapes " +
                    dims_string(x.dims) + " and " + dims_string(c->dims));
      aligned.dims.resize(x.dims.size() - size_t(axis), 1);  // trailing ones after B's dims
      std::copy(c->dims.begin(), c->dims.end(), aligned.dims.begin());
      c = &aligned;
    }
    fold_affine(n, tensor_input, *c, op == "Mul" || op == "Div", op == "Sub", op == "Div");
    return;
  }
  if (op == "Sub" || op == "Div") fail(n, "element-wise " + op + " of two computed tensors is not supported");
  const value x = get_any_tensor(n, 0);
  const value y = get_any_tensor(n, 1);
  const layer_kind kind = op == "Add" ? layer_kind::add : layer_kind::multiply;
  if (x.dims == y.dims && x.channels_last == y.channels_last && same_windows(x, y)) {
    emit_like(n, make_layer(kind), {x.layer, y.layer}, x);
    return;
  }
  if (x.channels_last || y.channels_last)
    fail(n, "operands " + dims_string(x.dims) + " and " + dims_string(y.dims) +
                " with a channels-last view among them must have equal shapes and layouts");
  auto per_channel_of = [](const dims_t& full, const dims_t& small) {
    return full.size() == 4 && small.size() == 4 && small[0] == full[0] && small[1] == full[1] && small[2] == 1 && small[3] == 1;
  };
  if (per_channel_of(x.dims, y.dims)) {
    emit(n, make_layer(kind), {x.layer, y.layer}, x.dims);
  } else if (per_channel_of(y.dims, x.dims)) {
    emit(n, make_layer(kind), {y.layer, x.layer}, y.dims);  // the full tensor first
  } else {
    fail(n, "broadcasting " + dims_string(x.dims) + " with " + dims_string(y.dims) +
                " is not supported (equal shapes, or [N,C,H,W] with a per-channel [N,C,1,1])");
  }
}

// Folds `tensor op constant` into the layer producing the tensor: a convolution, fully connected
// layer (Gemm/MatMul: this is how MatMul + Add becomes a biased layer) or batch norm that feeds
// nothing else. y = x * s or y = x + t per output channel.
void importer::fold_affine(const onnx::NodeProto& n, int tensor_input, const constant& c, bool multiply, bool negate,
                           bool reciprocal) {
  const value x = get_any_tensor(n, tensor_input);
  const std::string& name = n.input(1 - tensor_input);
  if (x.dims.size() != 4 && x.dims.size() != 2 && !x.channels_last) fail(n, "input has shape " + dims_string(x.dims));
  std::vector<float> v = per_channel(n, x, c, name);
  for (float& f : v) {
    if (negate) f = -f;
    if (reciprocal) f = 1.0f / f;
  }
  const std::string& tensor = n.input(tensor_input);
  layer& p = g_.layers[size_t(x.layer)];
  const bool foldable_kind = p.kind == layer_kind::convolution || p.kind == layer_kind::fully_connected ||
                             p.kind == layer_kind::batch_norm || p.kind == layer_kind::layer_norm;
  if (!foldable_kind || layer_tensor_[size_t(x.layer)] != tensor || uses_[tensor] != 1) {
    // Nothing to fold into (the producer feeds others too, or computes no affine output): the
    // constant becomes a per-channel affine layer of its own.
    constant_affine_layer(n, x, std::move(v), multiply);
    return;
  }
  const size_t channels = v.size();
  if (p.kind == layer_kind::batch_norm || p.kind == layer_kind::layer_norm) {
    std::vector<float> w(p.weights.begin(), p.weights.end());  // gamma | beta [| mean | var]
    for (size_t k = 0; k < channels; ++k) {
      if (multiply) {
        w[k] *= v[k];
        w[channels + k] *= v[k];
      } else {
        w[channels + k] += v[k];
      }
    }
    p.weights = weight_blob::from_vector(std::move(w));
  } else {
    std::vector<float> bias(channels, 0.0f);
    if (!p.bias.empty()) bias.assign(p.bias.begin(), p.bias.end());
    if (multiply) {
      std::vector<float> w(p.weights.begin(), p.weights.end());
      const size_t per = w.size() / channels;
      for (size_t k = 0; k < channels; ++k) {
        for (size_t j = 0; j < per; ++j) w[k * per + j] *= v[k];
        bias[k] *= v[k];
      }
      p.weights = weight_blob::from_vector(std::move(w));
      if (!p.bias.empty()) p.bias = weight_blob::from_vector(std::move(bias));
    } else {
      for (size_t k = 0; k < channels; ++k) bias[k] += v[k];
      p.bias = weight_blob::from_vector(std::move(bias));
    }
  }
  layer_tensor_[size_t(x.layer)] = n.output(0);
  value out = x;
  define(n, 0, std::move(out));
}

void importer::concat(const onnx::NodeProto& n) {
  allow_attributes(n, {"axis"});
  std::vector<int> inputs;
  value like;
  size_t axis = 0;
  for (int i = 0; i < n.input_size(); ++i) {
    if (!has_input(n, i)) continue;
    const value& v = get_any_tensor(n, i);
    if (inputs.empty()) {
      like = v;
      int64_t a = attr_int(n, "axis", 1);
      if (a < 0) a += int64_t(v.dims.size());
      if (a != int64_t(channel_axis(v)))
        fail(n, "attribute axis=" + std::to_string(attr_int(n, "axis", 1)) + " is not supported (channels only)");
      axis = size_t(a);
      like.dims[axis] = 0;
    }
    if (v.dims.size() != like.dims.size()) fail(n, "inputs differ in rank");
    if (v.channels_last != like.channels_last || !same_windows(v, like))
      fail(n, "inputs differ in layout (NCHW, channels last or windowed tokens)");
    for (size_t k = 0; k < like.dims.size(); ++k)
      if (k != axis && v.dims[k] != like.dims[k]) fail(n, "input shapes differ outside the channel axis");
    like.dims[axis] += v.dims[axis];
    inputs.push_back(v.layer);
  }
  if (inputs.empty()) fail(n, "has no inputs");
  emit_like(n, make_layer(layer_kind::concat), inputs, like);
}

void importer::flatten(const onnx::NodeProto& n) {
  allow_attributes(n, {"axis"});
  const value& x = get_tensor(n, 0);
  int64_t axis = attr_int(n, "axis", 1);
  if (axis < 0) axis += int64_t(x.dims.size());
  if (axis != 1) fail(n, "attribute axis=" + std::to_string(attr_int(n, "axis", 1)) + " is not supported (only 1)");
  int64_t features = 1;
  for (size_t k = 1; k < x.dims.size(); ++k) features *= x.dims[k];
  emit(n, make_layer(layer_kind::flatten), {x.layer}, {x.dims[0], features});
}

void importer::reshape(const onnx::NodeProto& n) {
  allow_attributes(n, {"allowzero"});
  const value& x = get(n, 0);
  if (x.kind == value_kind::constant) fail(n, "internal: constant reshape was not folded");
  const dims_t out = reshape_target(n, x.dims);
  const std::string unsupported = "reshape from " + dims_string(x.dims) + " to " + dims_string(out) +
                                  " is not supported (only flattening to [N, -1], [N,C] <-> [N,C,1,1], and the "
                                  "channel shuffle pattern Reshape [N,g,C/g,H,W] -> Transpose [0,2,1,3,4] -> Reshape [N,C,H,W])";
  if (x.kind == value_kind::shuffle_view) fail(n, unsupported);
  if (x.kind == value_kind::shuffle_transposed) {
    const dims_t& src = x.dims;  // [N, C/g, g, H, W]
    if (out != dims_t{src[0], src[1] * src[2], src[3], src[4]}) fail(n, unsupported);
    layer l = make_layer(layer_kind::channel_shuffle);
    l.groups = x.groups;
    emit(n, std::move(l), {x.layer}, out);
    return;
  }
  auto is_vector = [](const dims_t& d) { return d.size() == 2 || (d.size() == 4 && d[2] == 1 && d[3] == 1); };
  if (out == x.dims || (is_vector(x.dims) && is_vector(out) && out[0] == x.dims[0] && out[1] == x.dims[1])) {
    value v = x;  // the same NHWC bytes: an alias
    v.dims = out;
    define(n, 0, std::move(v));
    return;
  }
  if (out.size() == 2 && x.dims.size() == 4 && out[0] == x.dims[0]) {
    emit(n, make_layer(layer_kind::flatten), {x.layer}, out);
    return;
  }
  if (out.size() == 5 && x.dims.size() == 4 && out[0] == x.dims[0] && out[1] * out[2] == x.dims[1] &&
      out[3] == x.dims[2] && out[4] == x.dims[3]) {
    value v = x;
    v.kind = value_kind::shuffle_view;
    v.dims = out;
    v.groups = int(out[1]);
    define(n, 0, std::move(v));
    return;
  }
  fail(n, unsupported);
}

void importer::transpose(const onnx::NodeProto& n) {
  allow_attributes(n, {"perm"});
  const value& x = get(n, 0);
  const dims_t perm = attr_ints(n, "perm", {});
  if (x.kind == value_kind::layer && x.dims.size() == 4 &&
      (x.channels_last ? perm == dims_t{0, 3, 1, 2} : perm == dims_t{0, 2, 3, 1}))
    return channels_last_transpose(n, x, perm);
  if (x.kind != value_kind::shuffle_view || perm != dims_t{0, 2, 1, 3, 4})
    fail(n, "Transpose with perm=" + dims_string(perm) + " of a tensor of shape " + dims_string(x.dims) +
                " is not supported (only NCHW <-> channels last, [0,2,3,1] and back with [0,3,1,2], and inside the "
                "channel shuffle pattern Reshape [N,g,C/g,H,W] -> Transpose [0,2,1,3,4] -> Reshape [N,C,H,W])");
  value v = x;
  v.kind = value_kind::shuffle_transposed;
  v.dims = {x.dims[0], x.dims[2], x.dims[1], x.dims[3], x.dims[4]};
  define(n, 0, std::move(v));
}

void importer::split(const onnx::NodeProto& n) {
  allow_attributes(n, {"axis", "split", "num_outputs"});
  const value& x = get_tensor(n, 0);
  int64_t axis = attr_int(n, "axis", 0);
  if (axis < 0) axis += int64_t(x.dims.size());
  if (axis != 1) fail(n, "attribute axis=" + std::to_string(attr_int(n, "axis", 0)) + " is not supported (channels only)");
  const int64_t channels = x.dims[1];
  const int outputs = n.output_size();
  dims_t sizes;
  if (has_input(n, 1)) {
    sizes = get_ints(n, 1, "split");
  } else if (has_attr(n, "split")) {
    sizes = attr_ints(n, "split", {});
  } else {
    if (channels % outputs != 0)
      fail(n, "cannot split " + std::to_string(channels) + " channels into " + std::to_string(outputs) + " equal parts");
    sizes.assign(size_t(outputs), channels / outputs);
  }
  if (int(sizes.size()) != outputs)
    fail(n, "has " + std::to_string(outputs) + " outputs but " + std::to_string(sizes.size()) + " split sizes");
  int64_t sum = 0;
  for (int64_t s : sizes) {
    if (s < 0) fail(n, "split sizes " + dims_string(sizes) + " are negative");
    sum += s;
  }
  if (sum != channels) fail(n, "split sizes " + dims_string(sizes) + " do not add up to the " + std::to_string(channels) + " channels");
  int64_t begin = 0;
  for (int i = 0; i < outputs; ++i) {
    const int64_t end = begin + sizes[size_t(i)];
    if (has_output(n, i)) {
      if (end == begin) fail(n, "output '" + n.output(i) + "' is empty");
      layer l = make_layer(layer_kind::channel_slice);
      l.channel_begin = int(begin);
      l.channel_end = int(end);
      dims_t dims = x.dims;
      dims[1] = end - begin;
      emit(n, std::move(l), {x.layer}, dims, i, n.output(i));
    }
    begin = end;
  }
}

void importer::slice(const onnx::NodeProto& n) {
  const value x = get_any_tensor(n, 0);
  auto [starts, ends, axes, steps] = read_slice(n);
  const int64_t rank = int64_t(x.dims.size());
  const int64_t channel = int64_t(channel_axis(x));
  int64_t begin = 0, end = x.dims[size_t(channel)];
  for (size_t k = 0; k < starts.size(); ++k) {
    const int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
    if (axis < 0 || axis >= rank) fail(n, "axis " + std::to_string(axes[k]) + " is out of range");
    if (steps[k] == 0) fail(n, "step 0 is invalid");
    const slice_range r = clamp_slice(starts[k], ends[k], steps[k], x.dims[size_t(axis)]);
    const bool whole = r.start == 0 && r.step == 1 && r.count == x.dims[size_t(axis)];
    if (axis == channel) {
      if (steps[k] != 1) fail(n, "step " + std::to_string(steps[k]) + " is not supported (only 1)");
      begin = r.start;
      end = r.start + r.count;
    } else if (!whole) {
      fail(n, "slicing axis " + std::to_string(axis) + " is not supported (only the channels, axis " +
                  std::to_string(channel) + ")");
    }
  }
  if (end <= begin) fail(n, "the slice of " + dims_string(x.dims) + " is empty");
  layer l = make_layer(layer_kind::channel_slice);
  l.channel_begin = int(begin);
  l.channel_end = int(end);
  value like = x;
  like.dims[size_t(channel)] = end - begin;
  emit_like(n, std::move(l), {x.layer}, like);
}

void importer::pad(const onnx::NodeProto& n) {
  dims_t pads;
  float fill = 0;
  if (opset_ >= 11) {
    allow_attributes(n, {"mode"});
    pads = get_ints(n, 1, "pads");
    if (has_input(n, 2)) fill = get_scalar(n, 2, "constant_value");
    if (has_input(n, 3)) fail(n, "the axes input is not supported");
  } else {
    allow_attributes(n, {"mode", "pads", "value"});
    pads = attr_ints(n, "pads", {});
    fill = attr_float(n, "value", 0.0f);
  }
  const std::string mode = attr_string(n, "mode", "constant");
  if (mode != "constant") fail(n, "attribute mode=" + mode + " is not supported (only constant)");
  if (std::all_of(pads.begin(), pads.end(), [](int64_t p) { return p == 0; })) {
    // Nothing to pad (Swin pads its maps to whole windows, by zero when they already fit): the
    // input as it is, in any layout.
    value v = get(n, 0);
    const size_t rank = (v.kind == value_kind::constant ? v.c->dims : v.dims).size();
    if (pads.size() != 2 * rank)
      fail(n, "pads " + dims_string(pads) + " do not hold two entries per axis of a rank-" + std::to_string(rank) +
                  " input");
    define(n, 0, std::move(v));
    return;
  }
  const value& x = get_tensor(n, 0);
  if (fill != 0) fail(n, "padding value " + std::to_string(fill) + " is not supported (only 0)");
  if (x.dims.size() != 4 || pads.size() != 8)
    fail(n, "pads " + dims_string(pads) + " for input " + dims_string(x.dims) + " are not supported (4-D NCHW only)");
  if (pads[0] || pads[1] || pads[4] || pads[5])
    fail(n, "pads " + dims_string(pads) + " are not supported (only H and W may be padded)");
  for (int64_t p : pads)
    if (p < 0 || p > INT_MAX / 4) fail(n, "pads " + dims_string(pads) + " are not supported (negative or huge)");
  layer l = make_layer(layer_kind::pad);
  // ONNX order: x1_begin..x4_begin, x1_end..x4_end over N, C, H, W.
  l.window.pad = padding{int(pads[2]), int(pads[3]), int(pads[6]), int(pads[7])};
  emit(n, std::move(l), {x.layer}, {x.dims[0], x.dims[1], x.dims[2] + pads[2] + pads[6], x.dims[3] + pads[3] + pads[7]});
}

void importer::softmax(const onnx::NodeProto& n) {
  allow_attributes(n, {"axis"});
  const value& x = get_tensor(n, 0);
  const int64_t rank = int64_t(x.dims.size());
  const int64_t given = attr_int(n, "axis", opset_ >= 13 ? -1 : 1);
  const int64_t axis = given < 0 ? given + rank : given;
  const bool vector = rank == 2 || (rank == 4 && x.dims[2] == 1 && x.dims[3] == 1);
  if (!vector || axis != 1)
    fail(n, "attribute axis=" + std::to_string(given) + " on a tensor of shape " + dims_string(x.dims) +
                " is not supported (softmax over the channels of [N, C])");
  emit(n, make_layer(layer_kind::softmax), {x.layer}, x.dims);
}

void importer::reduce_mean(const onnx::NodeProto& n) {
  allow_attributes(n, {"axes", "keepdims", "noop_with_empty_axes"});
  if (channel_mean(n)) return;
  const value& x = get_tensor(n, 0);
  if (attr_int(n, "noop_with_empty_axes", 0) != 0) fail(n, "attribute noop_with_empty_axes=1 is not supported");
  bool present = false;
  dims_t axes = axes_input_or_attribute(n, 1, "axes", &present);
  for (int64_t& a : axes)
    if (a < 0) a += int64_t(x.dims.size());
  std::sort(axes.begin(), axes.end());
  if (x.dims.size() != 4 || axes != dims_t{2, 3})
    fail(n, "attribute axes=" + dims_string(attr_ints(n, "axes", axes)) + " on a tensor of shape " + dims_string(x.dims) +
                " is not supported (only the spatial mean, axes [2,3])");
  const int64_t keepdims = attr_int(n, "keepdims", 1);
  const dims_t out = keepdims ? dims_t{x.dims[0], x.dims[1], 1, 1} : dims_t{x.dims[0], x.dims[1]};
  emit(n, make_layer(layer_kind::global_average_pool), {x.layer}, out);
}

void importer::squeeze_unsqueeze(const onnx::NodeProto& n, bool unsqueeze) {
  allow_attributes(n, {"axes"});
  const value& x = get_tensor(n, 0);
  bool present = false;
  dims_t axes = axes_input_or_attribute(n, 1, "axes", &present);
  const int64_t out_rank = unsqueeze ? int64_t(x.dims.size() + axes.size()) : int64_t(x.dims.size());
  for (int64_t& a : axes)
    if (a < 0) a += out_rank;
  std::sort(axes.begin(), axes.end());
  // Only [N,C] <-> [N,C,1,1]: the same bytes in d3's NHWC layout.
  if (unsqueeze && x.dims.size() == 2 && axes == dims_t{2, 3}) {
    value v = x;
    v.dims = {x.dims[0], x.dims[1], 1, 1};
    define(n, 0, std::move(v));
    return;
  }
  if (!unsqueeze && x.dims.size() == 4 && x.dims[2] == 1 && x.dims[3] == 1 && (!present || axes == dims_t{2, 3})) {
    value v = x;
    v.dims = {x.dims[0], x.dims[1]};
    define(n, 0, std::move(v));
    return;
  }
  fail(n, "axes " + dims_string(axes) + " on a tensor of shape " + dims_string(x.dims) +
              " are not supported (only [N,C] <-> [N,C,1,1])");
}

// ---------------------------------------------------------------------------------------------

// `parse` fills the protobuf from its source; false: malformed or truncated.
template <class Parse>
result<graph> import(const std::string& path, Parse parse, bool from_file) {
  const std::string where = "ONNX file '" + path + "': ";
  try {
    onnx::ModelProto model;
    if (!parse(model)) return status::error(where + "is not a valid ONNX protobuf (malformed or truncated)");
    graph g = importer(path, model, from_file).run();
    status s = infer_shapes(g);
    if (!s) return status::error(where + s.message());
    return g;
  } catch (const import_failure& e) {
    return status::error(e.what());
  } catch (const std::exception& e) {
    return status::error(where + "import failed: " + e.what());
  }
}

result<graph> import(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return status::error("ONNX file '" + path + "': cannot open: " + std::strerror(errno));
  return import(path, [&](onnx::ModelProto& model) { return model.ParseFromIstream(&in); }, true);
}

}  // namespace onnx_detail

using onnx_detail::import;

result<graph> import_onnx_unprepared(const std::string& path) { return import(path); }

result<graph> import_onnx_bytes(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size > size_t(INT32_MAX)) return status::error("ONNX file '" + source + "': over 2 GB (protobuf's limit)");
  auto g = import(source, [&](onnx::ModelProto& model) { return model.ParseFromArray(bytes, int(size)); }, false);
  if (!g) return g;
  status s = prepare_for_inference(g.value());
  if (!s) return status::error("ONNX file '" + source + "': " + s.message());
  return g;
}

result<graph> import_onnx(const std::string& path) {
  auto g = import(path);
  if (!g) return g;
  status s = prepare_for_inference(g.value());
  if (!s) return status::error("ONNX file '" + path + "': " + s.message());
  return g;
}

result<std::string> surviving_layer(const graph& prepared, const graph& unprepared, const std::string& node,
                                    const std::string& output) {
  if (prepared.find(node) >= 0) return node;
  int i = unprepared.find(node);
  if (i < 0 && !output.empty()) i = unprepared.find(output);
  if (i < 0) return status::error(unprepared.name + ": no layer named '" + node + "' or '" + output + "'");
  // Walk up through the fused layers: each one's tensor is now its (single) input's.
  while (prepared.find(unprepared.layers[size_t(i)].name) < 0) {
    const layer& l = unprepared.layers[size_t(i)];
    if ((l.kind != layer_kind::batch_norm && l.kind != layer_kind::clamp) || l.inputs.empty())
      return status::error(unprepared.name + ": layer '" + l.name + "' (" + to_string(l.kind) +
                           ") vanished in prepare_for_inference but is not a fusable layer");
    i = l.inputs[0];
  }
  return unprepared.layers[size_t(i)].name;
}

bool is_onnx_path(const std::string& path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".onnx") == 0;
}

}  // namespace d3
