// Swin's shifted-window attention as torch.onnx exports it (torchvision's shifted_window_attention),
// on d3's channels-last maps [1, H, W, C]:
//   roll:       Slice [s:] and [:s] on H, Concat on H (then the same on W)  -> a roll layer
//   partition:  Reshape [1, H/wh, wh, W/ww, ww, C] -> Transpose [0,1,3,2,4,5] -> Reshape [nW, T, C]
//   q, k, v:    MatMul + Add (per token: a 1x1 convolution of the map) -> Reshape [nW, T, 3, h, d]
//               -> Transpose [2,0,3,1,4] -> Gather 0, 1, 2 (channel slices of the map)
//   attention:  Mul q by a scalar, MatMul q k^T, Add constants (relative position bias; the shift
//               mask through Reshape [1, nW, h, T, T] and back), Softmax, MatMul v, Transpose
//               [0,2,1,3], Reshape [nW, T, C]                               -> a window_attention layer
//   reversal:   Reshape [1, H/wh, W/ww, wh, ww, C] -> Transpose [0,1,3,2,4,5] -> Reshape [1, H, W, C]
// MaxViT partitions NCHW maps the same way (Reshape [1, C, H/p, p, W/p, p] -> Transpose
// [0,2,4,3,5,1] -> Reshape [1, nW, T, C], back through Transpose [0,5,1,3,2,4]), swaps the two
// token axes for its grid attention (Transpose [0,2,1,3]: window j of the grid holds pixel j of
// every window, a dilated window), splits q, k, v with Slices and multiplies with Einsum.
// Windowed tokens are the map's own bytes (value::window_h): per-token ops run on the map as they
// are, and the partition and its reversal create no layer. Patch merging's strided slices (x[...,
// 0::2, 1::2, :]) become spatial_slice layers. The shift masks are constant arithmetic that the
// importer folds (Range, ScatterND, Where, ...); whatever adds to the scores arrives as constants.
#include <algorithm>
#include <cmath>
#include <set>

#include "onnx/importer.hpp"

namespace d3 {
namespace onnx_detail {

namespace {

bool is_map(const value& v) {
  return v.kind == value_kind::layer && v.channels_last && !v.flat_tokens && !windowed(v) && v.dims.size() == 4 &&
         v.dims[0] == 1;
}

value with_kind(const value& from, value_kind kind, dims_t dims) {
  value v = from;
  v.kind = kind;
  v.dims = std::move(dims);
  return v;
}

void clear_windows(value& v) {
  v.window_h = v.window_w = v.windows_h = v.windows_w = 0;
  v.dilation_h = v.dilation_w = 1;
  v.grid = false;
}

bool is_nchw_map(const value& v) {
  return v.kind == value_kind::layer && !v.channels_last && !windowed(v) && v.dims.size() == 4 && v.dims[0] == 1;
}

// Einsum's equation without spaces, as inputs and output: "bghid,bghjd->bghij".
bool parse_einsum(std::string equation, std::string& a, std::string& b, std::string& out) {
  equation.erase(std::remove(equation.begin(), equation.end(), ' '), equation.end());
  const size_t arrow = equation.find("->"), comma = equation.find(',');
  if (arrow == std::string::npos || comma == std::string::npos || comma > arrow) return false;
  a = equation.substr(0, comma);
  b = equation.substr(comma + 1, arrow - comma - 1);
  out = equation.substr(arrow + 2);
  return a.size() >= 3 && a.size() == b.size() && a.size() == out.size();
}

}  // namespace

void importer::materialise_slice(const std::string& tensor) {
  const value v = values_.at(tensor);
  layer l = make_layer(layer_kind::spatial_slice);
  l.name = unique_name(tensor);
  l.inputs = {v.layer};
  l.row_begin = int(v.row_start);
  l.row_end = int(v.row_start + (v.dims[1] - 1) * v.row_step + 1);
  l.col_begin = int(v.col_start);
  l.col_end = int(v.col_start + (v.dims[2] - 1) * v.col_step + 1);
  l.window.stride_h = int(v.row_step);
  l.window.stride_w = int(v.col_step);
  const int index = int(g_.layers.size());
  g_.layers.push_back(std::move(l));
  layer_tensor_.push_back(tensor);
  value out;
  out.kind = value_kind::layer;
  out.layer = index;
  out.dims = v.dims;
  out.channels_last = true;
  values_[tensor] = std::move(out);
}

value importer::emit_window_attention(const onnx::NodeProto& n, const value& context, const dims_t& out) {
  layer l = make_layer(layer_kind::window_attention);
  l.groups = context.groups;
  l.scale = context.scale;
  l.window.kernel_h = context.window_h;
  l.window.kernel_w = context.window_w;
  l.window.dilation_h = context.dilation_h;
  l.window.dilation_w = context.dilation_w;
  if (context.addend) {
    // [nW][h][T][T]; one table when every window's is the same.
    const std::vector<float>& f = context.addend->f;
    const size_t windows = size_t(context.windows_h) * size_t(context.windows_w), per_window = f.size() / windows;
    if (per_window * windows != f.size() || per_window == 0)
      fail(n, "the scores' addend of " + std::to_string(f.size()) + " values does not split into " +
                  std::to_string(windows) + " windows");
    bool alike = true;
    for (size_t w = 1; w < windows && alike; ++w)
      alike = std::equal(f.begin(), f.begin() + long(per_window), f.begin() + long(w * per_window));
    l.weights = weight_blob::from_vector(alike ? std::vector<float>(f.begin(), f.begin() + long(per_window)) : f);
  }
  value like = with_kind(context, value_kind::layer, out);
  like.channels_last = true;
  like.flat_tokens = false;
  like.addend.reset();
  like.sources.clear();
  emit_like(n, std::move(l), context.sources, like);
  return values_.at(n.output(0));
}

bool importer::window_step(const onnx::NodeProto& n) {
  const std::string& op = n.op_type();
  if (n.input_size() < 1 || !has_input(n, 0)) return false;
  const value& a = get(n, 0);
  const value* b = has_input(n, 1) ? &get(n, 1) : nullptr;
  auto put = [&](value v) {
    define(n, 0, std::move(v));
    return true;
  };

  if (op == "Slice" && (a.kind == value_kind::spatial_slice || is_map(a))) {
    auto [starts, ends, axes, steps] = read_slice(n);
    value v = a;
    if (a.kind != value_kind::spatial_slice) {
      v.kind = value_kind::spatial_slice;
      v.row_start = v.col_start = 0;
      v.row_step = v.col_step = 1;
      v.map_h = a.dims[1];
      v.map_w = a.dims[2];
      v.source_tensor = n.input(0);
    }
    for (size_t k = 0; k < starts.size(); ++k) {
      const int64_t axis = axes[k] < 0 ? axes[k] + 4 : axes[k];
      if (axis < 0 || axis > 3 || steps[k] < 1) return false;  // slice() names the problem
      const slice_range r = clamp_slice(starts[k], ends[k], steps[k], v.dims[size_t(axis)]);
      if (r.start == 0 && r.step == 1 && r.count == v.dims[size_t(axis)]) continue;
      if (axis == 0 || axis == 3) return false;  // channels: a channel slice of the layer
      if (r.count < 1) fail(n, "the slice of " + dims_string(v.dims) + " is empty");
      int64_t& start = axis == 1 ? v.row_start : v.col_start;
      int64_t& step = axis == 1 ? v.row_step : v.col_step;
      start += r.start * step;
      // One row (or column) needs no step; more keep the step below the map's size.
      step = r.count == 1 ? 1 : step * r.step;
      v.dims[size_t(axis)] = r.count;
    }
    if (a.kind != value_kind::spatial_slice && v.dims == a.dims) return put(a);  // nothing sliced
    return put(std::move(v));
  }

  if (op == "Slice" && windowed(a) && a.kind == value_kind::layer) {
    // q, k, v as slices of one Linear's channels (MaxViT's chunk): slice() emits them; anything
    // but the channels of windowed tokens is refused.
    auto [starts, ends, axes, steps] = read_slice(n);
    const int64_t rank = int64_t(a.dims.size());
    for (size_t k = 0; k < starts.size(); ++k) {
      const int64_t axis = axes[k] < 0 ? axes[k] + rank : axes[k];
      if (axis < 0 || axis >= rank || steps[k] == 0) return false;
      const slice_range r = clamp_slice(starts[k], ends[k], steps[k], a.dims[size_t(axis)]);
      if (axis != rank - 1 && !(r.start == 0 && r.step == 1 && r.count == a.dims[size_t(axis)]))
        fail(n, "slices axis " + std::to_string(axis) + " of windowed tokens " + dims_string(a.dims) +
                    "; only their channels may be sliced");
    }
    return false;
  }

  if (op == "Concat" && n.input_size() == 2 && b && a.kind == value_kind::spatial_slice &&
      b->kind == value_kind::spatial_slice && a.layer == b->layer && a.source_tensor == b->source_tensor) {
    // A cyclic shift: [s, D) then [0, s) along H or W, the other axis whole.
    int64_t axis = attr_int(n, "axis", 0);
    if (axis < 0) axis += 4;
    const bool rows = axis == 1;
    if (axis != 1 && axis != 2) return false;
    const bool other_whole = rows ? (a.col_start == 0 && a.col_step == 1 && a.dims[2] == a.map_w && b->col_start == 0 &&
                                     b->col_step == 1 && b->dims[2] == b->map_w)
                                  : (a.row_start == 0 && a.row_step == 1 && a.dims[1] == a.map_h && b->row_start == 0 &&
                                     b->row_step == 1 && b->dims[1] == b->map_h);
    const int64_t size = rows ? a.map_h : a.map_w;
    const int64_t first = rows ? a.row_start : a.col_start, first_step = rows ? a.row_step : a.col_step;
    const int64_t second = rows ? b->row_start : b->col_start, second_step = rows ? b->row_step : b->col_step;
    const int64_t first_count = a.dims[size_t(axis)], second_count = b->dims[size_t(axis)];
    if (!other_whole || first_step != 1 || second_step != 1 || second != 0 || first != second_count ||
        first + first_count != size)
      return false;
    const std::string source = a.source_tensor;
    const value like = values_.at(source);  // the map that was sliced
    layer& src = g_.layers[size_t(a.layer)];
    // The second axis of one roll (Swin shifts H, then W): the first roll layer shifts both when
    // nothing else reads it.
    if (src.kind == layer_kind::roll && layer_tensor_[size_t(a.layer)] == source && uses_[source] == 2 &&
        (rows ? src.row_begin : src.col_begin) == 0) {
      (rows ? src.row_begin : src.col_begin) = int(first);
      layer_tensor_[size_t(a.layer)] = n.output(0);
      return put(like);
    }
    layer l = make_layer(layer_kind::roll);
    (rows ? l.row_begin : l.col_begin) = int(first);
    emit_like(n, std::move(l), {a.layer}, like);
    return true;
  }

  if (op == "Reshape") {
    const bool ours = windowed(a) || a.kind == value_kind::map_grid || a.kind == value_kind::window_grid ||
                      a.kind == value_kind::nchw_grid || a.kind == value_kind::qkv_split ||
                      a.kind == value_kind::qkv_heads;
    if (!ours && !is_map(a) && !is_nchw_map(a)) return false;
    const dims_t out = reshape_target(n, a.dims);
    const dims_t& d = a.dims;
    if (is_map(a)) {
      if (out.size() == 6 && out[0] == 1 && out[1] * out[2] == d[1] && out[3] * out[4] == d[2] && out[5] == d[3] &&
          out[2] > 1 && out[4] > 1)
        return put(with_kind(a, value_kind::map_grid, out));
      return false;
    }
    if (is_nchw_map(a)) {
      if (out.size() == 6 && out[0] == 1 && out[1] == d[1] && out[2] * out[3] == d[2] && out[4] * out[5] == d[3])
        return put(with_kind(a, value_kind::nchw_grid, out));
      return false;
    }
    if (a.kind == value_kind::window_grid &&
        (out == dims_t{d[1] * d[2], d[3] * d[4], d[5]} || out == dims_t{1, d[1] * d[2], d[3] * d[4], d[5]}))
      return put(with_kind(a, value_kind::layer, out));  // windowed tokens [nW, T, C] or [1, nW, T, C]
    if (a.kind == value_kind::nchw_grid && out == dims_t{1, d[1], d[2] * d[3], d[4] * d[5]}) {
      value v = with_kind(a, value_kind::layer, out);  // the NCHW map again
      v.channels_last = false;
      clear_windows(v);
      return put(std::move(v));
    }
    if (a.kind == value_kind::layer && d.size() == 4 && out.size() == 5 && out[0] == d[0] && out[1] == d[1] &&
        out[2] == d[2] && out[3] * out[4] == d[3] && out[3] > 0) {
      value v = with_kind(a, value_kind::heads_split, out);  // [1, nW, T, h, d]: one of q, k, v by head
      v.groups = int(out[3]);
      v.scale = 1.0f;
      return put(std::move(v));
    }
    if (a.kind == value_kind::context_tokens && d.size() == 5 && out == dims_t{d[0], d[1], d[2], d[3] * d[4]})
      return put(emit_window_attention(n, a, out));
    if (a.kind == value_kind::map_grid && out == dims_t{1, d[1] * d[2], d[3] * d[4], d[5]}) {
      value v = with_kind(a, value_kind::layer, out);  // the map again
      clear_windows(v);
      return put(std::move(v));
    }
    if (a.kind == value_kind::layer && !a.grid && a.dilation_h == 1 && a.dilation_w == 1 &&
        out == dims_t{1, a.windows_h, a.windows_w, a.window_h, a.window_w, d.back()})
      return put(with_kind(a, value_kind::window_grid, out));
    if (a.kind == value_kind::layer && d.size() == 3 && out.size() == 5 && out[0] == d[0] && out[1] == d[1] &&
        out[2] * out[3] * out[4] == d[2] && out[3] > 0) {
      value v = with_kind(a, value_kind::qkv_split, out);
      v.groups = int(out[3]);
      return put(std::move(v));
    }
    if (a.kind == value_kind::context_tokens && d.size() == 4 && out == dims_t{d[0], d[1], d[2] * d[3]})
      return put(emit_window_attention(n, a, out));
    if (a.kind == value_kind::attention_scores && out.size() >= 4 && d.size() >= 3 &&
        element_count(out) == element_count(d) && dims_t(out.end() - 3, out.end()) == dims_t(d.end() - 3, d.end()))
      return put(with_kind(a, a.kind, out));  // [nW, h, T, T] <-> [1, nW, h, T, T] around the shift mask
    fail(n, "reshape of " + dims_string(d) + " to " + dims_string(out) +
                " is not part of windowed attention (window partition [1, H/wh, wh, W/ww, ww, C] -> Transpose "
                "[0,1,3,2,4,5] -> [nW, T, C], heads [nW, T, 3, h, d], and the way back)");
  }

  if (op == "Transpose") {
    const bool ours = windowed(a) || a.kind == value_kind::map_grid || a.kind == value_kind::window_grid ||
                      a.kind == value_kind::nchw_grid || a.kind == value_kind::qkv_split ||
                      a.kind == value_kind::qkv_heads;
    if (!ours) return false;
    const dims_t perm = attr_ints(n, "perm", {});
    const dims_t& d = a.dims;
    if (a.kind == value_kind::nchw_grid && perm == dims_t{0, 2, 4, 3, 5, 1}) {
      value v = with_kind(a, value_kind::window_grid, {d[0], d[2], d[4], d[3], d[5], d[1]});
      v.channels_last = true;
      v.windows_h = int(d[2]);
      v.window_h = int(d[3]);
      v.windows_w = int(d[4]);
      v.window_w = int(d[5]);
      v.dilation_h = v.dilation_w = 1;
      return put(std::move(v));
    }
    if (a.kind == value_kind::window_grid && perm == dims_t{0, 5, 1, 3, 2, 4}) {
      value v = with_kind(a, value_kind::nchw_grid, {d[0], d[5], d[1], d[3], d[2], d[4]});
      v.channels_last = false;
      clear_windows(v);
      return put(std::move(v));
    }
    if (a.kind == value_kind::layer && d.size() == 4 && d[0] == 1 && perm == dims_t{0, 2, 1, 3}) {
      // MaxViT's grid: token j of every window as window j (and back). Windows of wh x ww pixels
      // in a grid of nh x nw become windows of nh x nw pixels spaced wh x ww apart, and back.
      value v = with_kind(a, value_kind::layer, {d[0], d[2], d[1], d[3]});
      if (!a.grid && a.dilation_h == 1 && a.dilation_w == 1) {
        v.window_h = a.windows_h;
        v.window_w = a.windows_w;
        v.windows_h = v.dilation_h = a.window_h;
        v.windows_w = v.dilation_w = a.window_w;
      } else if (a.grid && a.windows_h == a.dilation_h && a.windows_w == a.dilation_w) {
        v.window_h = a.dilation_h;
        v.window_w = a.dilation_w;
        v.windows_h = a.window_h;
        v.windows_w = a.window_w;
        v.dilation_h = v.dilation_w = 1;
      } else {
        fail(n, "swaps the token axes of windows that are neither blocks nor a grid");
      }
      v.grid = !a.grid;
      return put(std::move(v));
    }
    if (a.kind == value_kind::heads_split && d.size() == 5 && perm == dims_t{0, 1, 3, 2, 4})
      return put(with_kind(a, value_kind::heads_major, {d[0], d[1], d[3], d[2], d[4]}));
    if (a.kind == value_kind::attention_context && d.size() == 5 && perm == dims_t{0, 1, 3, 2, 4})
      return put(with_kind(a, value_kind::context_tokens, {d[0], d[1], d[3], d[2], d[4]}));
    if ((a.kind == value_kind::map_grid || a.kind == value_kind::window_grid) && perm == dims_t{0, 1, 3, 2, 4, 5}) {
      value v = with_kind(a, a.kind == value_kind::map_grid ? value_kind::window_grid : value_kind::map_grid,
                          {d[0], d[1], d[3], d[2], d[4], d[5]});
      if (a.kind == value_kind::map_grid) {
        v.windows_h = int(d[1]);
        v.window_h = int(d[2]);
        v.windows_w = int(d[3]);
        v.window_w = int(d[4]);
      } else {
        clear_windows(v);
      }
      return put(std::move(v));
    }
    if (a.kind == value_kind::qkv_split && perm == dims_t{2, 0, 3, 1, 4})
      return put(with_kind(a, value_kind::qkv_heads, {d[2], d[0], d[3], d[1], d[4]}));
    if (a.kind == value_kind::heads_major && perm == dims_t{0, 1, 3, 2} && a.scale == 1.0f)
      return put(with_kind(a, value_kind::keys_transposed, {d[0], d[1], d[3], d[2]}));
    if (a.kind == value_kind::attention_context && perm == dims_t{0, 2, 1, 3})
      return put(with_kind(a, value_kind::context_tokens, {d[0], d[2], d[1], d[3]}));
    fail(n, "Transpose with perm=" + dims_string(perm) + " of " + dims_string(d) +
                " is not part of windowed attention (windows [0,1,3,2,4,5], q/k/v [2,0,3,1,4], keys [0,1,3,2], "
                "context [0,2,1,3])");
  }

  if (op == "Gather" && a.kind == value_kind::qkv_heads) {
    allow_attributes(n, {"axis"});
    const value& iv = get(n, 1);
    if (attr_int(n, "axis", 0) != 0 || iv.kind != value_kind::constant || iv.c->is_float || iv.c->size() != 1 ||
        !iv.c->dims.empty())
      fail(n, "q, k and v are picked from " + dims_string(a.dims) + " with one scalar index on axis 0");
    int64_t i = iv.c->i[0];
    if (i < 0) i += a.dims[0];
    if (i < 0 || i >= a.dims[0]) fail(n, "index " + std::to_string(iv.c->i[0]) + " is out of range");
    const int64_t part = a.dims[2] * a.dims[4];  // heads x head channels
    layer l = make_layer(layer_kind::channel_slice);
    l.channel_begin = int(i * part);
    l.channel_end = int((i + 1) * part);
    const int slice = emit(n, std::move(l), {a.layer}, {a.dims[1], a.dims[3], part});
    value v = with_kind(a, value_kind::heads_major, {a.dims[1], a.dims[2], a.dims[3], a.dims[4]});
    v.layer = slice;
    v.scale = 1.0f;
    return put(std::move(v));
  }

  if (op == "Einsum" && b && windowed(a) && windowed(*b)) {
    // MaxViT's q k^T ("bghid,bghjd->bghij") and probs v ("bghij,bghjd->bghid") on heads.
    allow_attributes(n, {"equation"});
    std::string ea, eb, eo;
    if (!parse_einsum(attr_string(n, "equation", ""), ea, eb, eo) || ea.size() != a.dims.size() ||
        eb.size() != b->dims.size())
      fail(n, "equation '" + attr_string(n, "equation", "") + "' does not fit operands " + dims_string(a.dims) +
                  " and " + dims_string(b->dims));
    const size_t r = ea.size();
    const std::string batch = ea.substr(0, r - 2);
    const bool same_batch = eb.substr(0, r - 2) == batch && eo.substr(0, r - 2) == batch;
    if (!same_windows(a, *b) || a.groups != b->groups) fail(n, "operands are not heads of the same windows");
    if (same_batch && a.kind == value_kind::heads_major && b->kind == value_kind::heads_major &&
        ea[r - 1] == eb[r - 1] && eo[r - 2] == ea[r - 2] && eo[r - 1] == eb[r - 2] && ea[r - 2] != eb[r - 2]) {
      value v = a;
      v.kind = value_kind::attention_scores;
      v.scale = a.scale * b->scale;
      v.sources = {a.layer, b->layer};
      v.dims = a.dims;
      v.dims.back() = b->dims[r - 2];
      return put(std::move(v));
    }
    if (same_batch && a.kind == value_kind::attention_probs && b->kind == value_kind::heads_major &&
        ea[r - 1] == eb[r - 2] && eo[r - 2] == ea[r - 2] && eo[r - 1] == eb[r - 1]) {
      if (b->scale != 1.0f) fail(n, "scaled values are not supported in attention");
      value v = a;
      v.kind = value_kind::attention_context;
      v.sources.push_back(b->layer);
      v.dims = b->dims;
      return put(std::move(v));
    }
    fail(n, "equation '" + attr_string(n, "equation", "") + "' is not attention's q k^T or probabilities times v");
  }

  if (op == "Add" && b) {
    const bool sa = a.kind == value_kind::attention_scores && windowed(a);
    const bool sb = b->kind == value_kind::attention_scores && windowed(*b);
    if (sa || sb) {
      const value& s = sa ? a : *b;
      const value& c = sa ? *b : a;
      if (c.kind != value_kind::constant || !c.c->is_float)
        fail(n, "only float constants add to windowed attention scores (relative position bias, shift mask)");
      const constant e = fold_expand(n, *c.c, s.dims);
      if (e.dims != s.dims)
        fail(n, "constant " + dims_string(c.c->dims) + " does not broadcast to the scores " + dims_string(s.dims));
      value v = s;
      auto sum = std::make_shared<constant>(e);
      if (s.addend)
        for (size_t k = 0; k < sum->f.size(); ++k) sum->f[k] += s.addend->f[k];
      v.addend = std::move(sum);
      return put(std::move(v));
    }
  }

  // Windowed attention values and windowed tokens: pairs must agree on their windows, and windowed
  // tokens are read only token by token (the map's order is not the tokens' order).
  for (int i = 0; i < n.input_size(); ++i) {
    if (!has_input(n, i)) continue;
    const value& v = get(n, i);
    if (!windowed(v)) continue;
    if (b && windowed(*b) && windowed(a) && !same_windows(a, *b))
      fail(n, "operands are tokens of different windows");
    static const std::set<std::string> per_token = {
        "MatMul", "Add",   "Sub",   "Mul",     "Div",      "Pow",        "Sqrt",        "Erf",      "Tanh", "Relu",
        "Sigmoid", "Clip", "Softmax", "Identity", "Dropout", "Cast",  "Shape", "ReduceMean", "HardSigmoid", "HardSwish"};
    if (!per_token.count(op))
      fail(n, "reads '" + n.input(i) + "', tokens of " + std::to_string(v.window_h) + "x" + std::to_string(v.window_w) +
                  " windows, which only per-token ops and windowed attention may read");
  }
  return false;
}

}  // namespace onnx_detail
}  // namespace d3
