// Token tensors (vision transformers) as torch.onnx exports them, on d3's NHWC tensors: a token
// tensor [N, T, C] is the layer's d3 tensor [N, T, 1, C] (or, straight from a convolution,
// [N, H, W, C] with T = H*W), so reshapes and transpositions that keep the row-major order with the
// channels last are aliases, per-token Linear layers are 1x1 convolutions, LayerNorm and GELU are
// the per-pixel layers of onnx_patterns.cpp. What moves data gets a layer: the class token
// (prepend_tokens), the position embedding (constant_add), picking the class token (row_slice) and
// multi-head attention, recognised from its parts:
//   q, k, v = slices of one Linear (or three Linears) over the tokens
//   Reshape [T, h, d] -> Transpose [h, T, d] (k: [h, d, T]) -> Div/Mul by a scalar
//   -> MatMul q k^T -> Softmax(-1) -> MatMul v -> Transpose [T, h, d] -> Reshape [T, C]
// (and the same with a leading batch axis of 1). Any other read of an intermediate is an error.
#include <cmath>
#include <limits>

#include "onnx/importer.hpp"

namespace d3 {
namespace onnx_detail {

namespace {

int64_t product(const dims_t& d, size_t begin, size_t end) {
  int64_t p = 1;
  for (size_t k = begin; k < end; ++k) p *= d[k];
  return p;
}

// The axes of size above 1, in order: two shapes with the same list hold their elements in the
// same row-major order.
dims_t non_unit(const dims_t& d) {
  dims_t r;
  for (int64_t v : d)
    if (v != 1) r.push_back(v);
  return r;
}

// Whether `perm` keeps the row-major order of `dims` (it only moves axes of size 1).
bool order_preserving(const dims_t& dims, const dims_t& perm) {
  if (perm.size() != dims.size()) return false;
  int64_t last = -1;
  for (int64_t p : perm) {
    if (p < 0 || p >= int64_t(dims.size())) return false;
    if (dims[size_t(p)] == 1) continue;
    if (p < last) return false;
    last = p;
  }
  return true;
}

// perm without its leading batch axis of 1 ([0, a+1, b+1, c+1] -> [a, b, c]); {} otherwise.
dims_t without_batch(const dims_t& dims, const dims_t& perm) {
  if (dims.size() != 4 || dims[0] != 1 || perm.size() != 4 || perm[0] != 0) return {};
  return {perm[1] - 1, perm[2] - 1, perm[3] - 1};
}

}  // namespace

bool importer::token_step(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (n.input_size() < 1 || !has_input(n, 0)) return false;
  const value& a = get(n, 0);
  const value* b = has_input(n, 1) ? &get(n, 1) : nullptr;
  auto next = [&](const value& from, value_kind kind, dims_t dims) {
    value v = from;
    v.kind = kind;
    v.dims = std::move(dims);
    define(n, 0, std::move(v));
    return true;
  };

  if (op == "Reshape") {
    const dims_t out = reshape_target(n, a.dims);
    if (a.kind == value_kind::layer && !a.channels_last && a.dims.size() == 4 &&
        out == dims_t{a.dims[0], a.dims[1], a.dims[2] * a.dims[3]}) {
      value v = a;  // [N, C, H*W]: the convolution's map as C rows of tokens (transposed next)
      v.flat_tokens = a.dims[3] == 1;
      return next(v, value_kind::layer, out);
    }
    if (a.kind == value_kind::layer && a.channels_last && !out.empty() && out.back() == a.dims.back() &&
        product(out, 0, out.size()) == product(a.dims, 0, a.dims.size()))
      return next(a, value_kind::layer, out);  // the same tokens, regrouped: an alias
    if (a.kind == value_kind::layer && a.channels_last && out.size() >= 2 &&
        out[out.size() - 2] * out.back() == a.dims.back() && out[out.size() - 2] > 1 &&
        product(out, 0, out.size() - 2) == product(a.dims, 0, a.dims.size() - 1)) {
      value v = a;
      v.groups = int(out[out.size() - 2]);
      return next(v, value_kind::heads_split, out);
    }
    if (a.kind == value_kind::context_tokens && out.size() >= 1 && out.back() == product(a.dims, a.dims.size() - 2, a.dims.size()) &&
        product(out, 0, out.size() - 1) == product(a.dims, 0, a.dims.size() - 2)) {
      layer l = make_layer(layer_kind::attention);
      l.groups = a.groups;
      l.scale = a.scale;
      value like = a;
      like.kind = value_kind::layer;
      like.channels_last = true;
      like.dims = out;
      like.flat_tokens = a.flat_tokens;
      emit_like(n, std::move(l), a.sources, like);
      return true;
    }
    return false;
  }

  if (op == "Transpose") {
    const dims_t perm = attr_ints(n, "perm", {});
    if (a.kind == value_kind::layer && !a.channels_last && a.dims.size() == 3 && perm == dims_t{0, 2, 1}) {
      value v = a;
      v.channels_last = true;
      return next(v, value_kind::layer, {a.dims[0], a.dims[2], a.dims[1]});
    }
    if (a.kind == value_kind::layer && a.channels_last && a.dims.size() != 4 && !perm.empty() &&
        perm.back() == int64_t(a.dims.size()) - 1 && order_preserving(a.dims, perm)) {
      dims_t out(perm.size());
      for (size_t k = 0; k < perm.size(); ++k) out[k] = a.dims[size_t(perm[k])];
      return next(a, value_kind::layer, out);
    }
    // The head transpositions, on [T, h, d] or [1, T, h, d] (and back).
    const bool batched = a.dims.size() == 4;
    const dims_t p = batched ? without_batch(a.dims, perm) : perm;
    if (a.dims.size() != 3 && !batched) return false;
    auto moved = [&](std::initializer_list<int64_t> order) {
      dims_t out;
      if (batched) out.push_back(1);
      const size_t base = batched ? 1 : 0;
      for (int64_t k : order) out.push_back(a.dims[base + size_t(k)]);
      return out;
    };
    if (a.kind == value_kind::heads_split && p == dims_t{1, 0, 2}) return next(a, value_kind::heads_major, moved({1, 0, 2}));
    if (a.kind == value_kind::heads_split && p == dims_t{1, 2, 0})
      return next(a, value_kind::keys_transposed, moved({1, 2, 0}));
    if (a.kind == value_kind::heads_major && p == dims_t{0, 2, 1} && a.scale == 1.0f)
      return next(a, value_kind::keys_transposed, moved({0, 2, 1}));
    if (a.kind == value_kind::attention_context && p == dims_t{1, 0, 2})
      return next(a, value_kind::context_tokens, moved({1, 0, 2}));
    return false;
  }

  if ((op == "Mul" || op == "Div") && b) {
    // A scalar factor on queries, keys or scores (1 / sqrt(d) in every attention).
    const bool a_pending = a.kind == value_kind::heads_major || a.kind == value_kind::keys_transposed ||
                           a.kind == value_kind::attention_scores;
    const bool b_pending = b->kind == value_kind::heads_major || b->kind == value_kind::keys_transposed ||
                           b->kind == value_kind::attention_scores;
    if (!a_pending && !(op == "Mul" && b_pending)) return false;
    const value& x = a_pending ? a : *b;
    const double s = scalar_operand(n, a_pending ? 1 : 0);
    if (std::isnan(s)) fail(n, "attention takes only a scalar constant factor here");
    if (op == "Div" && s == 0) fail(n, "divides attention scores by zero");
    value v = x;
    v.scale = float(double(x.scale) * (op == "Div" ? 1.0 / s : s));
    define(n, 0, std::move(v));
    return true;
  }

  if (op == "MatMul" && b) {
    if (a.kind == value_kind::heads_major && b->kind == value_kind::keys_transposed) {
      if (a.groups != b->groups || a.dims.size() != b->dims.size())
        fail(n, "queries " + dims_string(a.dims) + " and keys " + dims_string(b->dims) + " do not pair");
      value v = a;
      v.scale = a.scale * b->scale;
      v.sources = {a.layer, b->layer};
      dims_t out = a.dims;
      out.back() = b->dims.back();
      return next(v, value_kind::attention_scores, out);
    }
    if (a.kind == value_kind::attention_probs && b->kind == value_kind::heads_major) {
      if (b->scale != 1.0f) fail(n, "scaled values are not supported in attention");
      if (a.groups != b->groups || a.dims.size() != b->dims.size())
        fail(n, "attention weights " + dims_string(a.dims) + " and values " + dims_string(b->dims) + " do not pair");
      value v = a;
      v.sources.push_back(b->layer);
      return next(v, value_kind::attention_context, b->dims);
    }
    return false;
  }

  if (op == "Softmax") {
    if (a.kind != value_kind::attention_scores) return false;
    allow_attributes(n, {"axis"});
    const int64_t axis = attr_int(n, "axis", opset_ >= 13 ? -1 : 1);
    if (axis != -1 && axis != int64_t(a.dims.size()) - 1) fail(n, "attention's softmax must run over the keys (axis -1)");
    return next(a, value_kind::attention_probs, a.dims);
  }

  if (op == "Concat" && b && n.input_size() == 2) {
    // The class token before the patches: Concat([1, P, C] constant, [1, T, C] tokens) on axis 1.
    if (a.kind != value_kind::constant || b->kind != value_kind::layer || !b->channels_last || b->dims.size() != 3)
      return false;
    allow_attributes(n, {"axis"});
    const int64_t axis = attr_int(n, "axis", 0);
    const constant& c = *a.c;
    if ((axis != 1 && axis != -2) || !c.is_float || c.dims.size() != 3 || c.dims[0] != 1 || c.dims[2] != b->dims[2] ||
        b->dims[0] != 1)
      fail(n, "concatenating constant " + dims_string(c.dims) + " before tokens " + dims_string(b->dims) +
                  " is supported on the token axis (1) with batch 1 only");
    layer l = make_layer(layer_kind::prepend_tokens);
    l.row_end = int(c.dims[1]);
    l.weights = weight_blob::from_vector(c.f);
    value like = *b;
    like.dims[1] += c.dims[1];
    like.flat_tokens = true;
    emit_like(n, std::move(l), {b->layer}, like);
    return true;
  }

  if (op == "Add" && b) {
    // A constant of the tokens' full shape (the position embedding).
    const bool ca = a.kind == value_kind::constant, cb = b->kind == value_kind::constant;
    if (ca == cb) return false;
    const value& x = ca ? *b : a;
    const constant& c = ca ? *a.c : *b->c;
    if (x.kind != value_kind::layer || !x.channels_last || !c.is_float || non_unit(c.dims) != non_unit(x.dims) ||
        int64_t(c.size()) != product(x.dims, 0, x.dims.size()) || int64_t(c.size()) == channels_of(x))
      return false;  // per-channel constants fold as usual
    if (!x.flat_tokens) fail(n, "adding a constant of the full shape needs tokens in a row (after prepend_tokens)");
    layer l = make_layer(layer_kind::constant_add);
    l.weights = weight_blob::from_vector(c.f);
    emit_like(n, std::move(l), {x.layer}, x);
    return true;
  }

  if (op == "Gather" && b) {
    // One token: x[:, i] of [N, T, C].
    if (a.kind != value_kind::layer || !a.channels_last || a.dims.size() != 3 || b->kind != value_kind::constant)
      return false;
    allow_attributes(n, {"axis"});
    const int64_t axis = attr_int(n, "axis", 0);
    const constant& idx = *b->c;
    if (axis != 1 || idx.is_float || idx.size() != 1 || !idx.dims.empty())
      fail(n, "Gather of tokens " + dims_string(a.dims) + " takes one scalar index on axis 1");
    int64_t i = idx.i[0];
    if (i < 0) i += a.dims[1];
    if (i < 0 || i >= a.dims[1]) fail(n, "token index " + std::to_string(idx.i[0]) + " is out of range");
    if (!a.flat_tokens) fail(n, "selecting a token needs tokens in a row (after prepend_tokens)");
    layer l = make_layer(layer_kind::row_slice);
    l.row_begin = int(i);
    l.row_end = int(i + 1);
    emit(n, std::move(l), {a.layer}, {a.dims[0], a.dims[2]});  // [N, C]: a plain vector
    return true;
  }
  return false;
}

}  // namespace onnx_detail
}  // namespace d3
