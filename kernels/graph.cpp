#include "kernels/graph.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <queue>
#include <unordered_map>
#include <unordered_set>

namespace d3 {

namespace {

struct kind_name {
  layer_kind kind;
  const char* name;
};
constexpr kind_name kind_names[] = {
    {layer_kind::input, "input"},
    {layer_kind::convolution, "convolution"},
    {layer_kind::fully_connected, "fully_connected"},
    {layer_kind::max_pool, "max_pool"},
    {layer_kind::average_pool, "average_pool"},
    {layer_kind::global_average_pool, "global_average_pool"},
    {layer_kind::add, "add"},
    {layer_kind::concat, "concat"},
    {layer_kind::softmax, "softmax"},
    {layer_kind::flatten, "flatten"},
    {layer_kind::batch_norm, "batch_norm"},
    {layer_kind::clamp, "clamp"},
    {layer_kind::multiply, "multiply"},
    {layer_kind::sigmoid, "sigmoid"},
    {layer_kind::channel_shuffle, "channel_shuffle"},
    {layer_kind::channel_slice, "channel_slice"},
    {layer_kind::pad, "pad"},
    {layer_kind::layer_norm, "layer_norm"},
    {layer_kind::gelu, "gelu"},
    {layer_kind::attention, "attention"},
    {layer_kind::prepend_tokens, "prepend_tokens"},
    {layer_kind::constant_add, "constant_add"},
    {layer_kind::row_slice, "row_slice"},
    {layer_kind::hardswish, "hardswish"},
    {layer_kind::preprocess, "preprocess"},
    {layer_kind::window_attention, "window_attention"},
    {layer_kind::roll, "roll"},
    {layer_kind::spatial_slice, "spatial_slice"},
    {layer_kind::tanh, "tanh"},
    {layer_kind::silu, "silu"},
};

std::string describe(const layer& l) { return std::string(to_string(l.kind)) + " layer '" + l.name + "'"; }

status layer_error(const layer& l, const std::string& what) { return status::error(describe(l) + ": " + what); }

size_t expect_inputs(layer_kind kind) {
  switch (kind) {
    case layer_kind::input: return 0;
    case layer_kind::add:
    case layer_kind::multiply: return 2;
    case layer_kind::attention:
    case layer_kind::window_attention: return 3;
    case layer_kind::concat: return size_t(-1);  // one or more
    default: return 1;
  }
}

status check_window(const layer& l) {
  const window_params& w = l.window;
  if (w.kernel_h < 1 || w.kernel_w < 1)
    return layer_error(l, "kernel " + std::to_string(w.kernel_h) + "x" + std::to_string(w.kernel_w) + " must be >= 1");
  if (w.stride_h < 1 || w.stride_w < 1)
    return layer_error(l, "stride " + std::to_string(w.stride_h) + "x" + std::to_string(w.stride_w) + " must be >= 1");
  if (w.dilation_h < 1 || w.dilation_w < 1)
    return layer_error(l, "dilation " + std::to_string(w.dilation_h) + "x" + std::to_string(w.dilation_w) +
                              " must be >= 1");
  if (w.pad.top < 0 || w.pad.left < 0 || w.pad.bottom < 0 || w.pad.right < 0)
    return layer_error(l, "negative padding");
  return status::ok();
}

// Kinds that only move or map values: no weights, and no fused clamp (their operators have none).
status check_plain(const layer& l) {
  if (!l.weights.empty() || !l.bias.empty()) return layer_error(l, "takes no weights");
  if (!l.act.is_identity())
    return layer_error(l, "a fused clamp [" + std::to_string(l.act.min) + ", " + std::to_string(l.act.max) +
                              "] is not supported (use a separate clamp layer)");
  return status::ok();
}

status infer_window_output(const layer& l, const tensor_shape& in, bool ceil_mode, tensor_shape& out) {
  D3_RETURN_IF_ERROR(check_window(l));
  const window_params& w = l.window;
  int oh = window_output_size(in.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom, ceil_mode);
  int ow = window_output_size(in.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right, ceil_mode);
  if (oh < 1 || ow < 1)
    return layer_error(l, "a " + std::to_string(w.kernel_h) + "x" + std::to_string(w.kernel_w) +
                              " window (dilation " + std::to_string(w.dilation_h) + "x" +
                              std::to_string(w.dilation_w) + ") does not fit the padded input " +
                              in.to_string());
  out = {in.n, oh, ow, in.c};
  return status::ok();
}

status infer_layer(const layer& l, const std::vector<tensor_shape>& in, tensor_shape& out) {
  switch (l.kind) {
    case layer_kind::input: {
      const tensor_shape& s = l.input_shape;
      if (s.n < 1 || s.h < 1 || s.w < 1 || s.c < 1) return layer_error(l, "input shape " + s.to_string() + " is empty");
      out = s;
      return status::ok();
    }
    case layer_kind::convolution: {
      if (l.groups < 1) return layer_error(l, "groups " + std::to_string(l.groups) + " must be >= 1");
      if (in[0].c % l.groups != 0)
        return layer_error(l, "input channels " + std::to_string(in[0].c) + " are not divisible by groups " +
                                  std::to_string(l.groups));
      if (l.output_channels < 1 || l.output_channels % l.groups != 0)
        return layer_error(l, "output channels " + std::to_string(l.output_channels) +
                                  " must be a positive multiple of groups " + std::to_string(l.groups));
      size_t expected = size_t(l.output_channels) * l.window.kernel_h * l.window.kernel_w * (in[0].c / l.groups);
      if (l.weights.size() != expected)
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats, expected " +
                                  std::to_string(expected) + " for input " + in[0].to_string());
      if (!l.bias.empty() && l.bias.size() != size_t(l.output_channels))
        return layer_error(l, "bias holds " + std::to_string(l.bias.size()) + " floats, expected " +
                                  std::to_string(l.output_channels));
      if (l.window.ceil_mode) return layer_error(l, "ceil_mode is only supported for pooling");
      D3_RETURN_IF_ERROR(infer_window_output(l, in[0], false, out));
      out.c = l.output_channels;
      return status::ok();
    }
    case layer_kind::fully_connected: {
      if (in[0].h != 1 || in[0].w != 1)
        return layer_error(l, "input " + in[0].to_string() + " must be 2-D (flatten it first)");
      if (l.output_channels < 1) return layer_error(l, "output channels must be >= 1");
      size_t expected = size_t(l.output_channels) * in[0].c;
      if (l.weights.size() != expected)
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats, expected " +
                                  std::to_string(expected) + " (" + std::to_string(l.output_channels) + " x " +
                                  std::to_string(in[0].c) + " input features)");
      if (!l.bias.empty() && l.bias.size() != size_t(l.output_channels))
        return layer_error(l, "bias holds " + std::to_string(l.bias.size()) + " floats, expected " +
                                  std::to_string(l.output_channels));
      out = {in[0].n, 1, 1, l.output_channels};
      return status::ok();
    }
    case layer_kind::max_pool:
    case layer_kind::average_pool:
      if (!l.weights.empty() || !l.bias.empty()) return layer_error(l, "pooling takes no weights");
      return infer_window_output(l, in[0], l.window.ceil_mode, out);
    case layer_kind::global_average_pool:
      out = {in[0].n, 1, 1, in[0].c};
      return status::ok();
    case layer_kind::add:
    case layer_kind::multiply: {
      // Equal shapes, or a second operand of [N,1,1,C] broadcast over H and W (per channel).
      const tensor_shape& a = in[0];
      const tensor_shape& b = in[1];
      const bool per_channel = b.n == a.n && b.h == 1 && b.w == 1 && b.c == a.c;
      if (a != b && !per_channel)
        return layer_error(l, "operand shapes differ: " + a.to_string() + " and " + b.to_string() +
                                  " (the second operand must equal the first or be its per-channel " +
                                  tensor_shape{a.n, 1, 1, a.c}.to_string() + ")");
      if (l.kind == layer_kind::multiply && (!l.weights.empty() || !l.bias.empty()))
        return layer_error(l, "takes no weights");
      out = a;
      return status::ok();
    }
    case layer_kind::sigmoid:
    case layer_kind::gelu:
    case layer_kind::hardswish:
    case layer_kind::tanh:
    case layer_kind::silu:
      D3_RETURN_IF_ERROR(check_plain(l));
      out = in[0];
      return status::ok();
    case layer_kind::attention:
      if (in.size() != 3 || in[1] != in[0] || in[2] != in[0])
        return layer_error(l, "needs q, k and v of one shape");
      if (l.groups < 1 || in[0].c % l.groups != 0)
        return layer_error(l, std::to_string(l.groups) + " heads do not divide " + std::to_string(in[0].c) + " channels");
      if (!std::isfinite(l.scale)) return layer_error(l, "scale must be finite");
      if (!l.weights.empty() || !l.bias.empty() || !l.act.is_identity()) return layer_error(l, "takes no weights or clamp");
      out = in[0];
      return status::ok();
    case layer_kind::window_attention: {
      if (in.size() != 3 || in[1] != in[0] || in[2] != in[0])
        return layer_error(l, "needs q, k and v of one shape");
      if (l.groups < 1 || in[0].c % l.groups != 0)
        return layer_error(l, std::to_string(l.groups) + " heads do not divide " + std::to_string(in[0].c) + " channels");
      if (!std::isfinite(l.scale)) return layer_error(l, "scale must be finite");
      const window_params& w = l.window;
      if (w.kernel_h < 1 || w.kernel_w < 1 || w.dilation_h < 1 || w.dilation_w < 1 || w.kernel_h > in[0].h ||
          w.kernel_w > in[0].w || in[0].h % (w.kernel_h * w.dilation_h) != 0 ||
          in[0].w % (w.kernel_w * w.dilation_w) != 0)
        return layer_error(l, "windows of " + std::to_string(w.kernel_h) + "x" + std::to_string(w.kernel_w) +
                                  " pixels spaced " + std::to_string(w.dilation_h) + "x" +
                                  std::to_string(w.dilation_w) + " do not tile the input " + in[0].to_string());
      const size_t tokens = size_t(w.kernel_h) * size_t(w.kernel_w);
      const size_t windows = size_t(in[0].h) * size_t(in[0].w) / tokens;
      const size_t per_window = size_t(l.groups) * tokens * tokens;
      if (!l.weights.empty() && l.weights.size() != per_window && l.weights.size() != per_window * windows)
        return layer_error(l, "score addend holds " + std::to_string(l.weights.size()) + " floats, expected " +
                                  std::to_string(per_window) + " (heads x tokens x tokens) or " +
                                  std::to_string(per_window * windows) + " (one per window)");
      if (!l.bias.empty() || !l.act.is_identity()) return layer_error(l, "takes no bias or clamp");
      out = in[0];
      return status::ok();
    }
    case layer_kind::roll:
      D3_RETURN_IF_ERROR(check_plain(l));
      if (l.row_begin < 0 || l.row_begin >= in[0].h || l.col_begin < 0 || l.col_begin >= in[0].w)
        return layer_error(l, "first row " + std::to_string(l.row_begin) + " and column " + std::to_string(l.col_begin) +
                                  " are not inside the input " + in[0].to_string());
      out = in[0];
      return status::ok();
    case layer_kind::spatial_slice: {
      D3_RETURN_IF_ERROR(check_plain(l));
      const window_params& w = l.window;
      if (w.stride_h < 1 || w.stride_w < 1 || l.row_begin < 0 || l.row_begin >= l.row_end || l.row_end > in[0].h ||
          l.col_begin < 0 || l.col_begin >= l.col_end || l.col_end > in[0].w)
        return layer_error(l, "rows [" + std::to_string(l.row_begin) + ", " + std::to_string(l.row_end) + ") step " +
                                  std::to_string(w.stride_h) + " and columns [" + std::to_string(l.col_begin) + ", " +
                                  std::to_string(l.col_end) + ") step " + std::to_string(w.stride_w) +
                                  " are not a non-empty slice of " + in[0].to_string());
      out = in[0];
      out.h = (l.row_end - l.row_begin + w.stride_h - 1) / w.stride_h;
      out.w = (l.col_end - l.col_begin + w.stride_w - 1) / w.stride_w;
      return status::ok();
    }
    case layer_kind::prepend_tokens: {
      if (l.row_end < 1 || l.weights.size() != size_t(l.row_end) * size_t(in[0].c) || !l.bias.empty())
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats, not " +
                                  std::to_string(l.row_end) + " tokens of " + std::to_string(in[0].c) + " channels");
      if (!l.act.is_identity()) return layer_error(l, "a fused clamp is not supported");
      const long rows = long(l.row_end) + long(in[0].h) * in[0].w;
      if (rows > INT_MAX) return layer_error(l, "too many tokens");
      out = {in[0].n, int(rows), 1, in[0].c};
      return status::ok();
    }
    case layer_kind::constant_add:
      if (in[0].n != 1 || l.weights.size() != in[0].elements() || !l.bias.empty())
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats for an input " +
                                  in[0].to_string() + " (batch 1, one addend per element)");
      if (!l.act.is_identity()) return layer_error(l, "a fused clamp is not supported");
      out = in[0];
      return status::ok();
    case layer_kind::row_slice:
      D3_RETURN_IF_ERROR(check_plain(l));
      if (l.row_begin < 0 || l.row_begin >= l.row_end || l.row_end > in[0].h)
        return layer_error(l, "rows [" + std::to_string(l.row_begin) + ", " + std::to_string(l.row_end) +
                                  ") are not a non-empty range within the " + std::to_string(in[0].h) + " rows of " +
                                  in[0].to_string());
      out = in[0];
      out.h = l.row_end - l.row_begin;
      return status::ok();
    case layer_kind::preprocess:
      if (l.weights.size() != size_t(in[0].c) || l.bias.size() != size_t(in[0].c))
        return layer_error(l, "mean and std hold " + std::to_string(l.weights.size()) + " and " +
                                  std::to_string(l.bias.size()) + " floats, expected " + std::to_string(in[0].c) +
                                  " each (one per channel)");
      for (size_t c = 0; c < l.bias.size(); ++c)
        if (!(l.bias.data()[c] > 0) || !std::isfinite(l.bias.data()[c]) || !std::isfinite(l.weights.data()[c]))
          return layer_error(l, "channel " + std::to_string(c) + ": mean " + std::to_string(l.weights.data()[c]) +
                                    " and std " + std::to_string(l.bias.data()[c]) + " must be finite, std > 0");
      if (!l.act.is_identity()) return layer_error(l, "a fused clamp is not supported");
      out = in[0];
      return status::ok();
    case layer_kind::layer_norm:
      if (l.weights.size() != size_t(2) * in[0].c || !l.bias.empty())
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats, expected 2 x " +
                                  std::to_string(in[0].c) + " channels (gamma | beta)");
      if (!(l.epsilon >= 0)) return layer_error(l, "epsilon must be >= 0");
      if (!l.act.is_identity()) return layer_error(l, "a fused clamp is not supported");
      out = in[0];
      return status::ok();
    case layer_kind::channel_shuffle:
      D3_RETURN_IF_ERROR(check_plain(l));
      if (l.groups < 1 || in[0].c % l.groups != 0)
        return layer_error(l, "groups " + std::to_string(l.groups) + " do not divide the " + std::to_string(in[0].c) +
                                  " input channels of " + in[0].to_string());
      out = in[0];
      return status::ok();
    case layer_kind::channel_slice:
      D3_RETURN_IF_ERROR(check_plain(l));
      if (l.channel_begin < 0 || l.channel_begin >= l.channel_end || l.channel_end > in[0].c)
        return layer_error(l, "channels [" + std::to_string(l.channel_begin) + ", " + std::to_string(l.channel_end) +
                                  ") are not a non-empty range within the " + std::to_string(in[0].c) +
                                  " input channels of " + in[0].to_string());
      out = in[0];
      out.c = l.channel_end - l.channel_begin;
      return status::ok();
    case layer_kind::pad: {
      D3_RETURN_IF_ERROR(check_plain(l));
      const padding& p = l.window.pad;
      if (p.top < 0 || p.left < 0 || p.bottom < 0 || p.right < 0)
        return layer_error(l, "padding (top " + std::to_string(p.top) + ", left " + std::to_string(p.left) +
                                  ", bottom " + std::to_string(p.bottom) + ", right " + std::to_string(p.right) +
                                  ") must not be negative");
      const long h = long(in[0].h) + p.top + p.bottom;
      const long w = long(in[0].w) + p.left + p.right;
      if (h > INT_MAX || w > INT_MAX)
        return layer_error(l, "padded output of " + in[0].to_string() + " is too large");
      out = {in[0].n, int(h), int(w), in[0].c};
      return status::ok();
    }
    case layer_kind::concat: {
      out = in[0];
      long channels = 0;
      for (const tensor_shape& s : in) {
        if (s.n != in[0].n || s.h != in[0].h || s.w != in[0].w)
          return layer_error(l, "inputs " + in[0].to_string() + " and " + s.to_string() + " differ outside channels");
        channels += s.c;
      }
      if (channels > INT_MAX) return layer_error(l, "output has too many channels");
      out.c = int(channels);
      return status::ok();
    }
    case layer_kind::softmax:
      if (in[0].h != 1 || in[0].w != 1)
        return layer_error(l, "input " + in[0].to_string() + " must be 2-D (softmax runs over channels)");
      out = in[0];
      return status::ok();
    case layer_kind::flatten: {
      long features = long(in[0].c) * in[0].h * in[0].w;
      if (features > INT_MAX) return layer_error(l, "input " + in[0].to_string() + " has too many features");
      out = {in[0].n, 1, 1, int(features)};
      return status::ok();
    }
    case layer_kind::batch_norm:
      if (l.weights.size() != size_t(4) * in[0].c)
        return layer_error(l, "weights hold " + std::to_string(l.weights.size()) + " floats, expected 4 x " +
                                  std::to_string(in[0].c) + " channels");
      if (!(l.epsilon >= 0)) return layer_error(l, "epsilon must be >= 0");
      out = in[0];
      return status::ok();
    case layer_kind::clamp:
      out = in[0];
      return status::ok();
  }
  return layer_error(l, "unknown layer kind");
}

// Removes the layers flagged in `dead`, redirecting every reader of a removed layer to
// `replacement[removed]` and renumbering edges.
void remove_layers(graph& g, const std::vector<bool>& dead, const std::vector<int>& replacement) {
  auto resolve = [&](int index) {
    while (dead[index]) index = replacement[index];
    return index;
  };
  std::vector<int> new_index(g.layers.size(), -1);
  std::vector<layer> kept;
  for (size_t i = 0; i < g.layers.size(); ++i) {
    if (dead[i]) continue;
    new_index[i] = int(kept.size());
    kept.push_back(std::move(g.layers[i]));
  }
  for (layer& l : kept)
    for (int& in : l.inputs) in = new_index[resolve(in)];
  for (int& out : g.outputs) out = new_index[resolve(out)];
  g.layers = std::move(kept);
}

}  // namespace

const char* to_string(layer_kind kind) {
  for (const kind_name& k : kind_names)
    if (k.kind == kind) return k.name;
  return "unknown";
}

result<layer_kind> layer_kind_from_string(std::string_view name) {
  for (const kind_name& k : kind_names)
    if (name == k.name) return k.kind;
  return status::error("unknown layer kind '" + std::string(name) + "'");
}

weight_blob weight_blob::from_vector(std::vector<float> values) {
  auto owner = std::make_shared<std::vector<float>>(std::move(values));
  weight_blob blob;
  blob.size_ = owner->size();
  blob.data_ = std::shared_ptr<const float>(owner, owner->data());
  return blob;
}

weight_blob weight_blob::copy_of(const float* values, size_t count) {
  return from_vector(std::vector<float>(values, values + count));
}

weight_blob weight_blob::borrowed(const float* values, size_t count, std::shared_ptr<const void> owner) {
  weight_blob blob;
  blob.size_ = count;
  blob.data_ = std::shared_ptr<const float>(std::move(owner), values);
  return blob;
}

int graph::find(std::string_view layer_name) const {
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].name == layer_name) return int(i);
  return -1;
}

std::vector<int> graph::input_layers() const {
  std::vector<int> result;
  for (size_t i = 0; i < layers.size(); ++i)
    if (layers[i].kind == layer_kind::input) result.push_back(int(i));
  return result;
}

std::vector<std::vector<int>> graph::consumers() const {
  std::vector<std::vector<int>> result(layers.size());
  for (size_t i = 0; i < layers.size(); ++i)
    for (int in : layers[i].inputs)
      if (in >= 0 && size_t(in) < layers.size()) result[in].push_back(int(i));
  return result;
}

int window_output_size(int input, int kernel, int stride, int dilation, int pad_before, int pad_after,
                       bool ceil_mode) {
  long span = long(input) + pad_before + pad_after - long(dilation) * (kernel - 1) - 1;
  if (span < 0) return 0;
  long out = (ceil_mode ? (span + stride - 1) / stride : span / stride) + 1;
  // PyTorch: with ceil_mode the last window must start inside the input or its leading padding.
  if (ceil_mode && (out - 1) * stride >= long(input) + pad_before) --out;
  return int(out);
}

int ceil_mode_extra_padding(int input, int output, int kernel, int stride, int dilation, int pad_before,
                            int pad_after) {
  long needed = long(output - 1) * stride + long(dilation) * (kernel - 1) + 1;
  long have = long(input) + pad_before + pad_after;
  return needed > have ? int(needed - have) : 0;
}

result<std::vector<int>> topological_order(const graph& g) {
  const size_t n = g.layers.size();
  std::vector<int> pending(n, 0);
  for (size_t i = 0; i < n; ++i) pending[i] = int(g.layers[i].inputs.size());
  std::vector<std::vector<int>> readers = g.consumers();
  // A min-heap keeps the order stable: among ready layers, the lowest index runs first.
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (size_t i = 0; i < n; ++i)
    if (pending[i] == 0) ready.push(int(i));
  std::vector<int> order;
  order.reserve(n);
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int reader : readers[i])
      if (--pending[reader] == 0) ready.push(reader);
  }
  if (order.size() != n) {
    for (size_t i = 0; i < n; ++i)
      if (pending[i] > 0)
        return status::error("graph '" + g.name + "' has a cycle through layer '" + g.layers[i].name + "'");
  }
  return order;
}

status infer_layer_shape(const layer& l, const std::vector<tensor_shape>& inputs, tensor_shape& output) {
  return infer_layer(l, inputs, output);
}

status infer_shapes(graph& g) {
  const int n = int(g.layers.size());
  std::unordered_set<std::string> names;
  for (const layer& l : g.layers) {
    if (l.name.empty()) return status::error("graph '" + g.name + "': a " + to_string(l.kind) + " layer has no name");
    if (!names.insert(l.name).second) return status::error("graph '" + g.name + "': duplicate layer name '" + l.name + "'");
    size_t expected = expect_inputs(l.kind);
    if (expected == size_t(-1) ? l.inputs.empty() : l.inputs.size() != expected)
      return layer_error(l, "has " + std::to_string(l.inputs.size()) + " inputs, expected " +
                                (expected == size_t(-1) ? std::string("at least 1") : std::to_string(expected)));
    for (int in : l.inputs)
      if (in < 0 || in >= n) return layer_error(l, "input index " + std::to_string(in) + " is out of range");
  }
  if (g.outputs.empty()) return status::error("graph '" + g.name + "' has no outputs");
  for (int out : g.outputs)
    if (out < 0 || out >= n) return status::error("graph '" + g.name + "': output index " + std::to_string(out) + " is out of range");
  auto order = topological_order(g);
  if (!order) return order.error();
  for (int i : *order) {
    layer& l = g.layers[i];
    std::vector<tensor_shape> in;
    for (int producer : l.inputs) in.push_back(g.layers[producer].output_shape);
    tensor_shape out;
    D3_RETURN_IF_ERROR(infer_layer(l, in, out));
    l.output_shape = out;
  }
  return status::ok();
}

layer_cost cost_of(const graph& g, int index) {
  const layer& l = g.layers[index];
  layer_cost cost;
  cost.output_bytes = l.output_shape.bytes();
  cost.weight_bytes = (l.weights.size() + l.bias.size()) * sizeof(float);
  const double out = double(l.output_shape.elements());
  switch (l.kind) {
    case layer_kind::convolution: {
      const tensor_shape& in = g.layers[l.inputs[0]].output_shape;
      cost.flops = 2.0 * out * (in.c / l.groups) * l.window.kernel_h * l.window.kernel_w;
      break;
    }
    case layer_kind::fully_connected:
      cost.flops = 2.0 * out * g.layers[l.inputs[0]].output_shape.c;
      break;
    case layer_kind::max_pool:
    case layer_kind::average_pool:
      cost.flops = out * l.window.kernel_h * l.window.kernel_w;
      break;
    case layer_kind::global_average_pool:
      cost.flops = double(g.layers[l.inputs[0]].output_shape.elements());
      break;
    case layer_kind::attention: {
      // q k^T and the weighted sum of v: 2 x tokens^2 x channels multiply-adds per batch.
      const double tokens = double(l.output_shape.h) * l.output_shape.w;
      cost.flops = 4.0 * l.output_shape.n * tokens * tokens * l.output_shape.c;
      break;
    }
    case layer_kind::window_attention: {
      // The same per window: 4 x pixels x window tokens x channels.
      const double window_tokens = double(l.window.kernel_h) * l.window.kernel_w;
      cost.flops = 4.0 * double(l.output_shape.elements()) * window_tokens;
      break;
    }
    case layer_kind::roll:
    case layer_kind::spatial_slice:
    case layer_kind::prepend_tokens:
    case layer_kind::row_slice:
    case layer_kind::input:
    case layer_kind::concat:
    case layer_kind::flatten:
    case layer_kind::channel_shuffle:
    case layer_kind::channel_slice:
    case layer_kind::pad:
      cost.flops = 0;
      break;
    default:
      cost.flops = out;
      break;
  }
  return cost;
}

double total_flops(const graph& g) {
  double sum = 0;
  for (size_t i = 0; i < g.layers.size(); ++i) sum += cost_of(g, int(i)).flops;
  return sum;
}

namespace {

// The affine layer HardSigmoid with alpha 1/6 and beta 1/2 imports as.
bool is_hard_sigmoid(const layer& l) {
  if (l.kind != layer_kind::convolution || l.inputs.size() != 1 || l.groups != l.output_channels ||
      l.window.kernel_h != 1 || l.window.kernel_w != 1 || l.window.stride_h != 1 || l.window.stride_w != 1 ||
      l.window.pad.any() || !(l.act == activation{0.0f, 1.0f}) || l.weights.size() != size_t(l.output_channels) ||
      l.bias.size() != size_t(l.output_channels))
    return false;
  for (float w : l.weights)
    if (w != 1.0f / 6.0f) return false;
  for (float b : l.bias)
    if (b != 0.5f) return false;
  return true;
}

}  // namespace

layer channel_affine_of_batch_norm(const layer& bn) {
  const int channels = bn.output_shape.c;
  const float* gamma = bn.weights.data();
  const float* beta = gamma + channels;
  const float* mean = beta + channels;
  const float* var = mean + channels;
  std::vector<float> scale(static_cast<size_t>(channels)), shift(static_cast<size_t>(channels));
  for (int c = 0; c < channels; ++c) {
    // The same arithmetic as folding into a convolution (double, one rounding to float).
    const double s = double(gamma[c]) / std::sqrt(double(var[c]) + double(bn.epsilon));
    scale[size_t(c)] = float(s);
    shift[size_t(c)] = float(double(beta[c]) - double(mean[c]) * s);
  }
  return channel_affine_layer(bn.name, bn.inputs[0], std::move(scale), std::move(shift), bn.act);
}

layer channel_affine_layer(std::string name, int input, std::vector<float> scale, std::vector<float> shift,
                           activation act) {
  layer l;
  l.name = std::move(name);
  l.kind = layer_kind::convolution;
  l.inputs = {input};
  l.output_channels = int(scale.size());
  l.groups = int(scale.size());
  l.act = act;
  l.weights = weight_blob::from_vector(std::move(scale));
  l.bias = weight_blob::from_vector(std::move(shift));
  return l;
}

status prepare_for_inference(graph& g) {
  D3_RETURN_IF_ERROR(infer_shapes(g));
  const size_t n = g.layers.size();
  std::vector<std::vector<int>> readers = g.consumers();
  std::vector<bool> returned(n, false);
  for (int out : g.outputs) returned[out] = true;
  std::vector<bool> dead(n, false);
  std::vector<int> replacement(n, -1);
  auto sole_reader = [&](int producer) { return readers[producer].size() == 1 && !returned[producer]; };

  auto order = topological_order(g);
  if (!order) return order.error();
  for (int i : *order) {
    layer& l = g.layers[i];
    if (l.kind == layer_kind::batch_norm) {
      int producer = l.inputs[0];
      while (dead[producer]) producer = replacement[producer];
      layer& conv = g.layers[producer];
      if (conv.kind != layer_kind::convolution || !sole_reader(producer) || !conv.act.is_identity()) {
        // Nothing to fold into (DenseNet's pre-activation Concat -> BN -> ReLU): the batch norm
        // stays as its own per-channel affine layer.
        const tensor_shape shape = l.output_shape;
        l = channel_affine_of_batch_norm(l);
        l.output_shape = shape;
        continue;
      }
      // y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta: scale the output channel's
      // weights and shift its bias. Folding in double keeps the rounding to one float step.
      const int channels = conv.output_channels;
      const float* gamma = l.weights.data();
      const float* beta = gamma + channels;
      const float* mean = beta + channels;
      const float* var = mean + channels;
      const size_t per_channel = conv.weights.size() / channels;
      std::vector<float> weights(conv.weights.begin(), conv.weights.end());
      std::vector<float> bias(channels);
      for (int c = 0; c < channels; ++c) {
        double scale = double(gamma[c]) / std::sqrt(double(var[c]) + double(l.epsilon));
        for (size_t k = 0; k < per_channel; ++k)
          weights[c * per_channel + k] = float(double(weights[c * per_channel + k]) * scale);
        double b = conv.bias.empty() ? 0.0 : double(conv.bias.data()[c]);
        bias[c] = float((b - double(mean[c])) * scale + double(beta[c]));
      }
      conv.weights = weight_blob::from_vector(std::move(weights));
      conv.bias = weight_blob::from_vector(std::move(bias));
      // The folded convolution takes the batch norm's place (and its readers).
      dead[i] = true;
      replacement[i] = producer;
      readers[producer] = readers[i];
      returned[producer] = returned[i];
      conv.output_shape = l.output_shape;
    } else if (l.kind == layer_kind::multiply && l.act.is_identity() && l.weights.empty() && l.bias.empty()) {
      // x * HardSigmoid(x) with PyTorch's 1/6 and 1/2 (how opset 13 exports hardswish) and
      // x * Sigmoid(x) (how it exports SiLU): one hardswish or silu layer, one pass over the tensor
      // instead of two. x may be a convolution that absorbed a batch norm above.
      auto live = [&](int k) {
        while (dead[k]) k = replacement[k];
        return k;
      };
      for (int side = 0; side < 2; ++side) {
        const int x = live(l.inputs[size_t(side)]), gate = l.inputs[size_t(1 - side)];
        if (dead[gate] || !sole_reader(gate)) continue;
        const layer& gl = g.layers[gate];
        if (gl.inputs.size() != 1 || live(gl.inputs[0]) != x) continue;
        layer_kind fused;
        if (is_hard_sigmoid(gl))
          fused = layer_kind::hardswish;
        else if (gl.kind == layer_kind::sigmoid && gl.act.is_identity() && gl.weights.empty() && gl.bias.empty())
          fused = layer_kind::silu;
        else
          continue;
        dead[gate] = true;
        replacement[gate] = x;
        l.kind = fused;
        l.inputs = {x};
        break;
      }
    } else if (l.kind == layer_kind::clamp) {
      int producer = l.inputs[0];
      while (dead[producer]) producer = replacement[producer];
      layer& p = g.layers[producer];
      bool fusable = p.kind == layer_kind::convolution || p.kind == layer_kind::fully_connected ||
                     p.kind == layer_kind::add || p.kind == layer_kind::multiply || p.kind == layer_kind::max_pool ||
                     p.kind == layer_kind::average_pool || p.kind == layer_kind::global_average_pool ||
                     p.kind == layer_kind::clamp;
      if (!fusable || !sole_reader(producer)) continue;
      p.act.min = std::max(p.act.min, l.act.min);
      p.act.max = std::min(p.act.max, l.act.max);
      dead[i] = true;
      replacement[i] = producer;
      readers[producer] = readers[i];
      returned[producer] = returned[i];
    }
  }
  remove_layers(g, dead, replacement);
  return infer_shapes(g);
}

subgraph_boundary boundary_of(const graph& g, const std::vector<int>& layer_set) {
  const size_t n = g.layers.size();
  std::vector<bool> inside(n, false);
  for (int i : layer_set)
    if (g.layers[i].kind != layer_kind::input) inside[i] = true;
  std::vector<bool> is_input(n, false), is_output(n, false);
  for (size_t i = 0; i < n; ++i) {
    if (!inside[i]) continue;
    for (int in : g.layers[i].inputs)
      if (!inside[in]) is_input[in] = true;
  }
  std::vector<std::vector<int>> readers = g.consumers();
  for (int out : g.outputs)
    if (inside[out]) is_output[out] = true;
  for (size_t i = 0; i < n; ++i) {
    if (!inside[i]) continue;
    for (int reader : readers[i])
      if (!inside[reader]) is_output[i] = true;
  }
  subgraph_boundary b;
  for (size_t i = 0; i < n; ++i) {
    if (is_input[i]) b.inputs.push_back(int(i));
    if (is_output[i]) b.outputs.push_back(int(i));
  }
  return b;
}

}  // namespace d3
