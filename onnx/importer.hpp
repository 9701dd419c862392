// The ONNX importer's internals, shared by its source files (onnx_import.cpp: values, dispatch and
// the operators; onnx_patterns.cpp: channels-last islands, layer norm and GELU; onnx_tokens.cpp:
// token tensors and attention; external_data.cpp: weights beside the model). Not a public
// interface: include onnx/onnx_import.hpp.
#pragma once

#include <onnx/onnx_pb.h>

#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/graph.hpp"
#include "onnx/external_data.hpp"

namespace d3 {
namespace onnx_detail {

class import_failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

using dims_t = std::vector<int64_t>;

inline std::string dims_string(const dims_t& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

constexpr int64_t max_elements = int64_t(1) << 40;

// Number of elements, or -1 when a dimension is negative or the product is absurdly large.
inline int64_t element_count(const dims_t& d) {
  int64_t n = 1;
  for (int64_t x : d) {
    if (x < 0) return -1;
    if (x != 0 && n > max_elements / x) return -1;
    n *= x;
  }
  return n;
}

// A constant tensor: float32 data, or integers (int64/int32/bool) widened to int64.
struct constant {
  bool is_float = true;
  dims_t dims;
  std::vector<float> f;
  std::vector<int64_t> i;
  size_t size() const { return is_float ? f.size() : i.size(); }
  double at(size_t k) const { return is_float ? double(f[k]) : double(i[k]); }
};
using constant_ptr = std::shared_ptr<const constant>;

enum class value_kind {
  layer,
  constant,
  shuffle_view,
  shuffle_transposed,
  // Intermediates of multi-node patterns (onnx_patterns.cpp), named by what they hold of the
  // layer x they start from; only the pattern's next node may read them.
  // LayerNorm over channels: ReduceMean -> Sub -> Pow 2 -> ReduceMean -> Add eps -> Sqrt -> Div.
  norm_mean,          // mean of x over its channels
  norm_centered,      // x - mean
  norm_square,        // (x - mean)^2
  norm_variance,      // mean of the squares
  norm_variance_eps,  // variance + epsilon
  norm_deviation,     // sqrt(variance + epsilon)
  // GELU, erf form: Div sqrt(2) -> Erf -> Add 1 -> Mul x -> Mul 0.5.
  gelu_scaled,        // x / sqrt(2)
  gelu_erf,           // erf(x / sqrt(2))
  gelu_erf_plus_one,  // 1 + erf(x / sqrt(2))
  gelu_product,       // x * (1 + erf(x / sqrt(2)))
  // Multi-head attention over token tensors (onnx_tokens.cpp): q, k, v are layers' token tensors
  // [..., T, C]; a Reshape splits C into heads, Transposes bring the heads first, MatMul q k^T,
  // Softmax, MatMul v, and the way back merges the heads into one attention layer.
  heads_split,        // [T, h, d] (or [N, T, h, d]): a token tensor's channels as h heads of d
  heads_major,        // [h, T, d]: queries or values by head; `scale` accumulates constant factors
  keys_transposed,    // [h, d, T]: keys by head, transposed
  attention_scores,   // [h, T, T] = q k^T * scale
  attention_probs,    // softmax of the scores over keys
  attention_context,  // [h, T, d] = probs v
  context_tokens,     // [T, h, d]: the context back in token order, heads not yet merged
  // Swin's windows (onnx_windows.cpp), on channels-last maps [1, H, W, C].
  spatial_slice,      // rows and columns of a map, strided (a layer only when read by anything but a
                      // Slice or the Concat of a cyclic shift)
  map_grid,           // [1, H/wh, wh, W/ww, ww, C]: a map's pixels as they lie, axes split by windows
  nchw_grid,          // [1, C, H/wh, wh, W/ww, ww]: the same of an NCHW map (MaxViT)
  window_grid,        // [1, H/wh, W/ww, wh, ww, C]: the same pixels window by window
  qkv_split,          // [nW, T, 3, h, d]: windowed tokens of one Linear as q, k, v of h heads
  qkv_heads,          // [3, nW, h, T, d]: the same, q, k, v first
};

struct value {
  value_kind kind = value_kind::layer;
  int layer = -1;      // layer, shuffle_*, patterns: the layer whose tensor this is (or starts from)
  dims_t dims;         // ONNX dims (layer, shuffle_*, patterns: x's)
  constant_ptr c;      // constant
  int groups = 0;      // shuffle_*: g of Reshape [N, g, C/g, H, W]
  // layer, patterns: the ONNX tensor is [N,H,W,C], the NCHW tensor Transpose(0,2,3,1) made of it
  // (ConvNeXt's channels-last islands). d3 stores NHWC either way, so the bytes are the same;
  // what changes is which ONNX axis holds the channels.
  bool channels_last = false;
  float epsilon = 0;   // norm_variance_eps, norm_deviation
  // layer (channels last), heads_*: the layer's d3 tensor has W = 1, so ONNX token i is d3 row i
  // (true after prepend_tokens and what keeps its shape; a conv map's tokens are H x W).
  bool flat_tokens = false;
  float scale = 1;           // heads_major, keys_transposed, attention_*: factor on q k^T
  std::vector<int> sources;  // attention_*, context_tokens: the q, k (and v) layers
  // Windowed tokens (layer and the attention values, Swin): the ONNX tensor [nW, T, C] holds the
  // d3 map's pixels window by window, windows_h x windows_w windows of window_h x window_w pixels.
  // The bytes are the map's, in d3's order; only per-token ops and the attention pattern read it.
  int window_h = 0, window_w = 0, windows_h = 0, windows_w = 0;
  // A window's pixels lie dilation apart (MaxViT's grid: one pixel of each of window_h x window_w
  // blocks of dilation_h x dilation_w pixels; then windows_h = dilation_h).
  int dilation_h = 1, dilation_w = 1;
  bool grid = false;  // the token axes swapped (a grid of dilated windows), until swapped back
  constant_ptr addend;       // attention_scores/probs of windows: added to the scores, their shape
  // spatial_slice: pixels (row_start + i * row_step, col_start + j * col_step) of the layer's map
  // [1, map_h, map_w, C], i < dims[1], j < dims[2]; source_tensor is the ONNX tensor sliced.
  int64_t row_start = 0, row_step = 1, col_start = 0, col_step = 1, map_h = 0, map_w = 0;
  std::string source_tensor;
};

inline bool windowed(const value& v) { return v.window_h > 0; }
inline bool same_windows(const value& a, const value& b) {
  return a.window_h == b.window_h && a.window_w == b.window_w && a.windows_h == b.windows_h &&
         a.windows_w == b.windows_w && a.dilation_h == b.dilation_h && a.dilation_w == b.dilation_w &&
         a.grid == b.grid;
}

// The ONNX axis holding a tensor value's channels, and their count.
inline size_t channel_axis(const value& v) { return v.channels_last ? v.dims.size() - 1 : 1; }
inline int64_t channels_of(const value& v) { return v.dims.at(channel_axis(v)); }

inline std::string data_type_name(int type) {
  if (onnx::TensorProto_DataType_IsValid(type))
    return onnx::TensorProto_DataType_Name(onnx::TensorProto_DataType(type));
  return "unknown (" + std::to_string(type) + ")";
}


// Converts a TensorProto (initializer or Constant value). `what` names it in errors, e.g.
// "initializer 'conv1.weight'". Throws std::invalid_argument with the message's tail.
constant to_constant(const onnx::TensorProto& t, const std::string& what);

// ONNX Slice index arithmetic for one axis: the first index and the number of elements taken.
struct slice_range {
  int64_t start = 0, step = 1, count = 0;
};
slice_range clamp_slice(int64_t start, int64_t end, int64_t step, int64_t dim);

class importer {
 public:
  // Releases each initializer's bytes in `model` once converted (peak memory ~ one copy of the weights).
  // `from_file`: `path` is the model's file, whose directory holds any external data files.
  importer(std::string path, onnx::ModelProto& model, bool from_file)
      : path_(std::move(path)), model_(model), external_(from_file ? path_ : std::string()) {}
  graph run();

 private:
  // --- errors ---
  [[noreturn]] void fail(const std::string& what) const { throw import_failure("ONNX file '" + path_ + "': " + what); }
  [[noreturn]] void fail(const onnx::NodeProto& n, const std::string& what) const {
    fail("node '" + display_name(n) + "' (" + n.op_type() + "): " + what);
  }
  static std::string display_name(const onnx::NodeProto& n) {
    if (!n.name().empty()) return n.name();
    if (n.output_size() > 0) return n.output(0);
    return "?";
  }

  // --- attributes ---
  const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const char* name) const {
    for (const auto& a : n.attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  void allow_attributes(const onnx::NodeProto& n, std::initializer_list<const char*> allowed) const {
    for (const auto& a : n.attribute()) {
      bool ok = false;
      for (const char* name : allowed) ok = ok || a.name() == name;
      if (!ok) fail(n, "attribute " + a.name() + " is not supported");
    }
  }
  int64_t attr_int(const onnx::NodeProto& n, const char* name, int64_t fallback) const {
    const auto* a = find_attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::INT) fail(n, std::string("attribute ") + name + " must be an integer");
    return a->i();
  }
  float attr_float(const onnx::NodeProto& n, const char* name, float fallback) const {
    const auto* a = find_attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::FLOAT) fail(n, std::string("attribute ") + name + " must be a float");
    return a->f();
  }
  std::string attr_string(const onnx::NodeProto& n, const char* name, const std::string& fallback) const {
    const auto* a = find_attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::STRING) fail(n, std::string("attribute ") + name + " must be a string");
    return a->s();
  }
  bool has_attr(const onnx::NodeProto& n, const char* name) const { return find_attr(n, name) != nullptr; }
  dims_t attr_ints(const onnx::NodeProto& n, const char* name, const dims_t& fallback) const {
    const auto* a = find_attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::INTS) fail(n, std::string("attribute ") + name + " must be a list of integers");
    return dims_t(a->ints().begin(), a->ints().end());
  }

  // --- values ---
  static bool has_input(const onnx::NodeProto& n, int i) { return i < n.input_size() && !n.input(i).empty(); }
  static bool has_output(const onnx::NodeProto& n, int i) { return i < n.output_size() && !n.output(i).empty(); }
  const value& get(const onnx::NodeProto& n, int i);
  const constant& get_constant(const onnx::NodeProto& n, int i, const std::string& role);
  std::vector<int64_t> get_ints(const onnx::NodeProto& n, int i, const std::string& role);
  float get_scalar(const onnx::NodeProto& n, int i, const std::string& role);
  // A layer's NCHW (or [N, C]) tensor: what most ops read.
  const value& get_tensor(const onnx::NodeProto& n, int i);
  // A layer's tensor in either layout (element-wise and per-pixel ops).
  const value& get_any_tensor(const onnx::NodeProto& n, int i);
  void define(const onnx::NodeProto& n, int output, value v);
  // `computed`: the importer made it (folding), rather than read it from the file: counted
  // against max_folded_total_elements.
  void define_constant(const onnx::NodeProto& n, constant c, bool computed = true) {
    if (computed) count_folded(n, int64_t(c.size()));
    value v;
    v.kind = value_kind::constant;
    v.c = std::make_shared<constant>(std::move(c));
    define(n, 0, std::move(v));
  }
  bool is_graph_output(const std::string& name) const {
    for (const auto& out : model_.graph().output())
      if (out.name() == name) return true;
    return false;
  }
  bool output_used(const onnx::NodeProto& n, int i) const {
    if (!has_output(n, i)) return false;
    auto it = uses_.find(n.output(i));
    return it != uses_.end() && it->second > 0;
  }
  void require_unused_outputs(const onnx::NodeProto& n, int first, const char* what) const {
    for (int i = first; i < n.output_size(); ++i)
      if (output_used(n, i)) fail(n, std::string("its ") + what + " output '" + n.output(i) + "' is used; not supported");
  }

  // --- layers ---
  std::string node_layer_name(const onnx::NodeProto& n) const;
  std::string unique_name(const std::string& base);
  int emit(const onnx::NodeProto& n, layer l, const std::vector<int>& inputs, dims_t dims, int output = 0,
           const std::string& name = {});
  // emit() with the dims and layout of `like` (a layer-wise op that keeps its input's shape).
  int emit_like(const onnx::NodeProto& n, layer l, const std::vector<int>& inputs, const value& like,
                const std::string& name = {});
  layer make_layer(layer_kind kind) const {
    layer l;
    l.kind = kind;
    return l;
  }

  // --- steps ---
  void read_opset();
  void read_inputs();
  std::vector<int> order_nodes();
  void import_node(const onnx::NodeProto& n);
  bool fold_constant_node(const onnx::NodeProto& n);
  void read_outputs();

  // --- ops ---
  window_params window_attributes(const onnx::NodeProto& n, int kernel_h, int kernel_w, bool pooling);
  void conv(const onnx::NodeProto& n);
  void pool(const onnx::NodeProto& n, bool max);
  void gemm(const onnx::NodeProto& n);
  void matmul(const onnx::NodeProto& n);
  void batch_norm(const onnx::NodeProto& n);
  void clip(const onnx::NodeProto& n);
  // Patterns (onnx_patterns.cpp). Each returns false when the node is not part of one.
  bool norm_or_gelu_step(const onnx::NodeProto& n);  // Sub, Add, Div, Mul, Pow, Sqrt, Erf
  bool channel_mean(const onnx::NodeProto& n);       // ReduceMean over the channel axis
  void channels_last_transpose(const onnx::NodeProto& n, const value& x, const dims_t& perm);
  void constant_affine_layer(const onnx::NodeProto& n, const value& x, std::vector<float> v, bool multiply);
  // Token tensors and attention (onnx_tokens.cpp): Reshape, Transpose, MatMul, Mul/Div by a
  // scalar, Softmax, Concat, Add of a constant and Gather on the values above; false when the node
  // is not one of these steps.
  bool token_step(const onnx::NodeProto& n);
  // Swin (onnx_windows.cpp): strided slices and cyclic shifts of maps, window partition and
  // reversal, windowed multi-head attention with its score addends; false when the node is none
  // of these. Fails when a node reads windowed tokens other than token by token.
  bool window_step(const onnx::NodeProto& n);
  // Turns a pending spatial_slice value into a spatial_slice layer (its readers need the tensor).
  void materialise_slice(const std::string& tensor);
  // Emits the window_attention layer of `context` (the heads' context back in token order) as the
  // node's output, windowed tokens of dims `out`; returns that value.
  value emit_window_attention(const onnx::NodeProto& n, const value& context, const dims_t& out);
  void hard_sigmoid(const onnx::NodeProto& n, bool swish);
  void binary(const onnx::NodeProto& n);
  void fold_affine(const onnx::NodeProto& n, int tensor_input, const constant& c, bool multiply, bool negate,
                   bool reciprocal);
  void concat(const onnx::NodeProto& n);
  void flatten(const onnx::NodeProto& n);
  void reshape(const onnx::NodeProto& n);
  void transpose(const onnx::NodeProto& n);
  void split(const onnx::NodeProto& n);
  void slice(const onnx::NodeProto& n);
  void pad(const onnx::NodeProto& n);
  void softmax(const onnx::NodeProto& n);
  void reduce_mean(const onnx::NodeProto& n);
  void squeeze_unsqueeze(const onnx::NodeProto& n, bool unsqueeze);
  void shape(const onnx::NodeProto& n);
  void constant_node(const onnx::NodeProto& n);
  std::vector<float> per_channel(const onnx::NodeProto& n, const value& x, const constant& c, const std::string& name);
  // The constant operand i of n when it is a scalar (one value, any rank), else NaN.
  double scalar_operand(const onnx::NodeProto& n, int i);

  // Constant folding of shape arithmetic (all inputs constant).
  // Element-wise `op` (Add, Sub, Mul, Div, Equal; Expand: a broadcast to the common shape) with
  // numpy broadcasting.
  constant fold_binary(const onnx::NodeProto& n, const constant& a, const constant& b, const std::string& op);
  // `c` broadcast to `dims` (Expand's rule: the result has the common shape of both).
  constant fold_expand(const onnx::NodeProto& n, const constant& c, const dims_t& dims);
  constant fold_gather(const onnx::NodeProto& n, const constant& data, const constant& idx);
  constant fold_concat(const onnx::NodeProto& n, const std::vector<const constant*>& parts);
  constant fold_slice(const onnx::NodeProto& n, const constant& data);
  // Slice's starts, ends, axes and steps (inputs since opset 10, attributes before), with ONNX's
  // defaults filled in: axes 0.., steps 1.
  struct slice_parameters {
    dims_t starts, ends, axes, steps;
  };
  slice_parameters read_slice(const onnx::NodeProto& n);
  dims_t reshape_target(const onnx::NodeProto& n, const dims_t& in);
  dims_t axes_input_or_attribute(const onnx::NodeProto& n, int input, const char* attribute, bool* present);

  const std::string path_;
  onnx::ModelProto& model_;
  external_data external_;
  int64_t opset_ = 0;
  int64_t folded_elements_ = 0;  // of every constant computed so far (define_constant)
  void count_folded(const onnx::NodeProto& n, int64_t elements);
  graph g_;
  std::map<std::string, value> values_;
  std::map<std::string, onnx::TensorProto*> initializers_;
  std::map<std::string, int> remaining_reads_;  // per tensor: node inputs not yet imported
  std::set<std::string> graph_inputs_;
  std::map<std::string, int> uses_;           // per tensor: node inputs reading it + graph outputs
  std::map<std::string, int> node_names_;     // per non-empty node name: how many nodes carry it
  std::vector<std::string> layer_tensor_;     // per layer: the ONNX tensor it currently defines
  std::set<std::string> used_names_;
};

}  // namespace onnx_detail
}  // namespace d3
