#include "schema/layer_codec.hpp"

#include <cmath>

namespace d3 {

namespace {

constexpr int layer_kind_count = 30;

// d3::layer_kind and schema::LayerKind must number the kinds identically.
#define D3_SAME_KIND(a, b) \
  static_assert(uint16_t(schema::LayerKind::a) == uint16_t(layer_kind::b), "layer kind " #b)
D3_SAME_KIND(INPUT, input);
D3_SAME_KIND(CONVOLUTION, convolution);
D3_SAME_KIND(FULLY_CONNECTED, fully_connected);
D3_SAME_KIND(MAX_POOL, max_pool);
D3_SAME_KIND(AVERAGE_POOL, average_pool);
D3_SAME_KIND(GLOBAL_AVERAGE_POOL, global_average_pool);
D3_SAME_KIND(ADD, add);
D3_SAME_KIND(CONCAT, concat);
D3_SAME_KIND(SOFTMAX, softmax);
D3_SAME_KIND(FLATTEN, flatten);
D3_SAME_KIND(BATCH_NORM, batch_norm);
D3_SAME_KIND(CLAMP, clamp);
D3_SAME_KIND(MULTIPLY, multiply);
D3_SAME_KIND(SIGMOID, sigmoid);
D3_SAME_KIND(CHANNEL_SHUFFLE, channel_shuffle);
D3_SAME_KIND(CHANNEL_SLICE, channel_slice);
D3_SAME_KIND(PAD, pad);
D3_SAME_KIND(LAYER_NORM, layer_norm);
D3_SAME_KIND(GELU, gelu);
D3_SAME_KIND(ATTENTION, attention);
D3_SAME_KIND(PREPEND_TOKENS, prepend_tokens);
D3_SAME_KIND(CONSTANT_ADD, constant_add);
D3_SAME_KIND(ROW_SLICE, row_slice);
D3_SAME_KIND(HARDSWISH, hardswish);
D3_SAME_KIND(PREPROCESS, preprocess);
D3_SAME_KIND(WINDOW_ATTENTION, window_attention);
D3_SAME_KIND(ROLL, roll);
D3_SAME_KIND(SPATIAL_SLICE, spatial_slice);
D3_SAME_KIND(TANH, tanh);
D3_SAME_KIND(SILU, silu);
#undef D3_SAME_KIND
static_assert(uint16_t(layer_kind::silu) + 1 == layer_kind_count, "update layer_kind_count");

}  // namespace

capnp::Text::Reader capnp_text(const std::string& s) { return capnp::Text::Reader(s.c_str(), s.size()); }
std::string std_string(capnp::Text::Reader t) { return std::string(t.cStr(), t.size()); }

void write_layer_fields(schema::Layer::Builder lb, const layer& l) {
  lb.setName(capnp_text(l.name));
  lb.setKind(static_cast<schema::LayerKind>(static_cast<uint16_t>(l.kind)));
  auto inputs = lb.initInputs(static_cast<capnp::uint>(l.inputs.size()));
  for (size_t k = 0; k < l.inputs.size(); ++k) inputs.set(capnp::uint(k), uint32_t(l.inputs[k]));
  auto shape = lb.getInputShape();
  shape.setN(l.input_shape.n);
  shape.setH(l.input_shape.h);
  shape.setW(l.input_shape.w);
  shape.setC(l.input_shape.c);
  auto win = lb.getWindow();
  win.setKernelH(l.window.kernel_h);
  win.setKernelW(l.window.kernel_w);
  win.setStrideH(l.window.stride_h);
  win.setStrideW(l.window.stride_w);
  win.setDilationH(l.window.dilation_h);
  win.setDilationW(l.window.dilation_w);
  win.setPadTop(l.window.pad.top);
  win.setPadLeft(l.window.pad.left);
  win.setPadBottom(l.window.pad.bottom);
  win.setPadRight(l.window.pad.right);
  win.setCeilMode(l.window.ceil_mode);
  win.setCountIncludePad(l.window.count_include_pad);
  lb.setOutputChannels(l.output_channels);
  lb.setGroups(l.groups);
  lb.setChannelBegin(l.channel_begin);
  lb.setChannelEnd(l.channel_end);
  lb.setEpsilon(l.epsilon);
  lb.setScale(l.scale);
  lb.setRowBegin(l.row_begin);
  lb.setRowEnd(l.row_end);
  lb.setColBegin(l.col_begin);
  lb.setColEnd(l.col_end);
  lb.setActivationMin(l.act.min);
  lb.setActivationMax(l.act.max);
}

status read_layer_fields(schema::Layer::Reader lr, size_t layer_count, const std::string& what, layer& l) {
  const int max_dim = max_layer_dimension, max_window = max_layer_window, max_channels = max_layer_channels;
  l.name = std_string(lr.getName());
  const uint16_t kind = static_cast<uint16_t>(lr.getKind());
  if (kind >= layer_kind_count) return status::error(what + ": unknown layer kind " + std::to_string(kind));
  l.kind = static_cast<layer_kind>(kind);

  auto inputs = lr.getInputs();
  l.inputs.clear();
  l.inputs.reserve(inputs.size());
  for (uint32_t in : inputs) {
    if (in >= layer_count)
      return status::error(what + ": input index " + std::to_string(in) + " is out of range (the model has " +
                           std::to_string(layer_count) + " layers)");
    l.inputs.push_back(int(in));
  }

  auto shape = lr.getInputShape();
  l.input_shape = tensor_shape{shape.getN(), shape.getH(), shape.getW(), shape.getC()};
  if (l.kind == layer_kind::input) {
    const tensor_shape& s = l.input_shape;
    for (int d : {s.n, s.h, s.w, s.c})
      if (d <= 0 || d > max_dim)
        return status::error(what + ": input shape " + s.to_string() + " has a dimension outside [1, " +
                             std::to_string(max_dim) + "]");
    if (s.elements() > (size_t(1) << 31)) return status::error(what + ": input shape " + s.to_string() + " is too large");
  }

  auto win = lr.getWindow();
  window_params& w = l.window;
  w.kernel_h = win.getKernelH();
  w.kernel_w = win.getKernelW();
  w.stride_h = win.getStrideH();
  w.stride_w = win.getStrideW();
  w.dilation_h = win.getDilationH();
  w.dilation_w = win.getDilationW();
  w.pad.top = win.getPadTop();
  w.pad.left = win.getPadLeft();
  w.pad.bottom = win.getPadBottom();
  w.pad.right = win.getPadRight();
  w.ceil_mode = win.getCeilMode();
  w.count_include_pad = win.getCountIncludePad();
  if (l.kind == layer_kind::pad)
    for (int v : {w.pad.top, w.pad.left, w.pad.bottom, w.pad.right})
      if (v < 0 || v > max_dim)
        return status::error(what + ": padding " + std::to_string(v) + " outside [0, " + std::to_string(max_dim) + "]");
  if (l.kind == layer_kind::convolution || l.kind == layer_kind::max_pool || l.kind == layer_kind::average_pool ||
      l.kind == layer_kind::window_attention || l.kind == layer_kind::spatial_slice) {
    for (int v : {w.kernel_h, w.kernel_w, w.stride_h, w.stride_w, w.dilation_h, w.dilation_w})
      if (v < 1 || v > max_window)
        return status::error(what + ": window size, stride or dilation " + std::to_string(v) + " outside [1, " +
                             std::to_string(max_window) + "]");
    for (int v : {w.pad.top, w.pad.left, w.pad.bottom, w.pad.right})
      if (v < 0 || v > max_window)
        return status::error(what + ": padding " + std::to_string(v) + " outside [0, " + std::to_string(max_window) + "]");
  }

  l.output_channels = lr.getOutputChannels();
  l.groups = lr.getGroups();
  if (l.output_channels < 0 || l.output_channels > max_channels)
    return status::error(what + ": output channels " + std::to_string(l.output_channels) + " out of range");
  if (l.groups < 1 || l.groups > max_channels)
    return status::error(what + ": groups " + std::to_string(l.groups) + " out of range");
  l.channel_begin = lr.getChannelBegin();
  l.channel_end = lr.getChannelEnd();
  if (l.channel_begin < 0 || l.channel_begin > max_channels || l.channel_end < 0 || l.channel_end > max_channels)
    return status::error(what + ": channel range [" + std::to_string(l.channel_begin) + ", " +
                         std::to_string(l.channel_end) + ") outside [0, " + std::to_string(max_channels) + "]");
  l.epsilon = lr.getEpsilon();
  if (!std::isfinite(l.epsilon) || l.epsilon < 0)
    return status::error(what + ": epsilon " + std::to_string(l.epsilon) + " is not a finite value >= 0");
  l.scale = lr.getScale();
  if (!std::isfinite(l.scale)) return status::error(what + ": scale " + std::to_string(l.scale) + " is not finite");
  l.row_begin = lr.getRowBegin();
  l.row_end = lr.getRowEnd();
  if (l.row_begin < 0 || l.row_begin > max_dim || l.row_end < 0 || l.row_end > max_dim)
    return status::error(what + ": row range [" + std::to_string(l.row_begin) + ", " + std::to_string(l.row_end) +
                         ") outside [0, " + std::to_string(max_dim) + "]");
  l.col_begin = lr.getColBegin();
  l.col_end = lr.getColEnd();
  if (l.col_begin < 0 || l.col_begin > max_dim || l.col_end < 0 || l.col_end > max_dim)
    return status::error(what + ": column range [" + std::to_string(l.col_begin) + ", " + std::to_string(l.col_end) +
                         ") outside [0, " + std::to_string(max_dim) + "]");
  l.act.min = lr.getActivationMin();
  l.act.max = lr.getActivationMax();
  if (std::isnan(l.act.min) || std::isnan(l.act.max) || l.act.min > l.act.max)
    return status::error(what + ": activation range [" + std::to_string(l.act.min) + ", " + std::to_string(l.act.max) +
                         "] is empty or NaN");
  return status::ok();
}

}  // namespace d3
