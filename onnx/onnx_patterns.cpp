// Multi-node patterns of torch.onnx exports that d3 runs as one layer each, recognised node by node
// as the importer walks the graph in topological order: every step turns its input's pattern value
// (value_kind::norm_* / gelu_*) into the next one, and the last step emits the layer. A pattern
// value read by anything else is an error naming the pattern (get_any_tensor), so a graph that
// only resembles a pattern never imports as something it does not compute.
//
// - Channels-last islands (ConvNeXt): Transpose [0,2,3,1] of an NCHW tensor is the same bytes in
//   d3's NHWC layout, so it creates no layer; ops on the island see the channels on the last ONNX
//   axis, and Transpose [0,3,1,2] ends it.
// - Layer normalisation over channels (opset 13 has no LayerNormalization; torch decomposes it):
//   ReduceMean(x, channel axis) -> Sub(x, mean) -> Pow(., 2) -> ReduceMean(channel axis) ->
//   Add(., epsilon) -> Sqrt -> Div(centered, .), then usually Mul(gamma) and Add(beta), which fold
//   into the layer. Per pixel, so it tiles with no halo.
// - GELU in its erf form: Div(x, sqrt(2)) (or Mul by 1/sqrt(2)) -> Erf -> Add(., 1) -> Mul(x, .)
//   -> Mul(., 0.5).
#include <cmath>
#include <limits>

#include "onnx/importer.hpp"

namespace d3 {
namespace onnx_detail {

namespace {

bool near(double a, double b) { return std::fabs(a - b) <= 1e-6 * std::fabs(b); }

}  // namespace

double importer::scalar_operand(const onnx::NodeProto& n, int i) {
  if (!has_input(n, i)) return std::numeric_limits<double>::quiet_NaN();
  const value& v = get(n, i);
  if (v.kind != value_kind::constant || v.c->size() != 1) return std::numeric_limits<double>::quiet_NaN();
  return v.c->at(0);
}

void importer::channels_last_transpose(const onnx::NodeProto& n, const value& x, const dims_t& perm) {
  value v = x;
  v.channels_last = !x.channels_last;
  for (size_t k = 0; k < perm.size(); ++k) v.dims[k] = x.dims[size_t(perm[k])];
  // The transposed name now stands for the layer's tensor, so a constant that follows can still
  // fold into the layer (ConvNeXt's layer scale after the island's last Linear).
  const std::string& in = n.input(0);
  if (layer_tensor_[size_t(x.layer)] == in && uses_[in] == 1 && has_output(n, 0))
    layer_tensor_[size_t(x.layer)] = n.output(0);
  define(n, 0, std::move(v));
}

void importer::constant_affine_layer(const onnx::NodeProto& n, const value& x, std::vector<float> v, bool multiply) {
  const size_t channels = v.size();
  std::vector<float> scale = multiply ? std::move(v) : std::vector<float>(channels, 1.0f);
  std::vector<float> shift = multiply ? std::vector<float>(channels, 0.0f) : std::move(v);
  emit_like(n, channel_affine_layer({}, x.layer, std::move(scale), std::move(shift)), {x.layer}, x);
}

bool importer::channel_mean(const onnx::NodeProto& n) {
  const value& x = get(n, 0);
  if (x.kind != value_kind::layer && x.kind != value_kind::norm_square) return false;
  bool present = false;
  dims_t axes = axes_input_or_attribute(n, 1, "axes", &present);
  for (int64_t& a : axes)
    if (a < 0) a += int64_t(x.dims.size());
  if (axes != dims_t{int64_t(channel_axis(x))} || attr_int(n, "keepdims", 1) != 1) {
    if (x.kind == value_kind::norm_square)
      fail(n, "the mean of the squared deviations must be over the channel axis with keepdims=1 (layer normalisation)");
    return false;
  }
  value v = x;
  v.kind = x.kind == value_kind::layer ? value_kind::norm_mean : value_kind::norm_variance;
  define(n, 0, std::move(v));
  return true;
}

bool importer::norm_or_gelu_step(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (n.input_size() < 1) return false;
  const value& a = get(n, 0);
  const bool binary = n.input_size() == 2;
  const value* b = binary ? &get(n, 1) : nullptr;
  const bool a_layer = a.kind == value_kind::layer;
  auto next = [&](const value& from, value_kind kind) {
    value v = from;
    v.kind = kind;
    define(n, 0, std::move(v));
    return true;
  };
  // A binary step whose operands are a pattern value of `kind` and a scalar (either order);
  // returns the pattern value and sets *scalar.
  auto with_scalar = [&](value_kind kind, double* scalar) -> const value* {
    if (!binary) return nullptr;
    if (a.kind == kind && !std::isnan(*scalar = scalar_operand(n, 1))) return &a;
    if (b->kind == kind && !std::isnan(*scalar = scalar_operand(n, 0))) return b;
    return nullptr;
  };
  double s = 0;
  if (op == "Sub") {
    if (binary && a_layer && b->kind == value_kind::norm_mean && b->layer == a.layer) return next(a, value_kind::norm_centered);
    return false;
  }
  if (op == "Pow") {
    if (binary && a.kind == value_kind::norm_centered && scalar_operand(n, 1) == 2.0) return next(a, value_kind::norm_square);
    return false;
  }
  if (op == "Sqrt") {
    if (a.kind == value_kind::norm_variance_eps) return next(a, value_kind::norm_deviation);
    return false;
  }
  if (op == "Erf") {
    if (a.kind == value_kind::gelu_scaled) return next(a, value_kind::gelu_erf);
    return false;
  }
  if (op == "Add") {
    if (const value* v = with_scalar(value_kind::norm_variance, &s)) {
      if (!(s >= 0) || !std::isfinite(s)) fail(n, "layer normalisation epsilon " + std::to_string(s) + " must be >= 0");
      value e = *v;
      e.epsilon = float(s);
      return next(e, value_kind::norm_variance_eps);
    }
    if (const value* v = with_scalar(value_kind::gelu_erf, &s)) {
      if (s != 1.0) fail(n, "GELU adds 1 to erf(x / sqrt(2)), this adds " + std::to_string(s));
      return next(*v, value_kind::gelu_erf_plus_one);
    }
    return false;
  }
  if (op == "Div" || op == "Mul") {
    if (op == "Div" && binary && a.kind == value_kind::norm_centered && b->kind == value_kind::norm_deviation &&
        b->layer == a.layer) {
      const int64_t channels = channels_of(a);
      std::vector<float> w(size_t(2 * channels), 0.0f);  // gamma = 1, beta = 0 until constants fold in
      std::fill(w.begin(), w.begin() + channels, 1.0f);
      layer l = make_layer(layer_kind::layer_norm);
      l.weights = weight_blob::from_vector(std::move(w));
      l.epsilon = b->epsilon;
      value like = a;
      like.kind = value_kind::layer;
      emit_like(n, std::move(l), {a.layer}, like);
      return true;
    }
    // x / sqrt(2) where x is read again (by GELU's Mul x): the start of GELU.
    const double sqrt2 = std::sqrt(2.0);
    if (binary && a_layer && uses_[n.input(0)] > 1) {
      s = scalar_operand(n, 1);
      if ((op == "Div" && near(s, sqrt2)) || (op == "Mul" && near(s, 1.0 / sqrt2))) return next(a, value_kind::gelu_scaled);
    }
    if (op == "Mul" && binary) {
      if (a_layer && b->kind == value_kind::gelu_erf_plus_one && b->layer == a.layer) return next(a, value_kind::gelu_product);
      if (b->kind == value_kind::layer && a.kind == value_kind::gelu_erf_plus_one && a.layer == b->layer)
        return next(*b, value_kind::gelu_product);
      if (const value* v = with_scalar(value_kind::gelu_product, &s)) {
        if (s != 0.5) fail(n, "GELU halves x * (1 + erf(x / sqrt(2))), this multiplies by " + std::to_string(s));
        value like = *v;
        like.kind = value_kind::layer;
        emit_like(n, make_layer(layer_kind::gelu), {v->layer}, like);
        return true;
      }
    }
    return false;
  }
  return false;
}

}  // namespace onnx_detail
}  // namespace d3
