// Naive reference implementations: one plain loop nest per layer kind, double accumulation,
// PyTorch semantics on NHWC tensors. Written to be obviously right, not fast.
#include "kernels/reference.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>

namespace d3 {

namespace {

[[noreturn]] void fail(const std::string& message) {
  std::fprintf(stderr, "d3 reference: %s\n", message.c_str());
  std::fflush(stderr);
  std::abort();
}

void check(bool condition, const layer& l, const std::string& what) {
  if (!condition) fail("layer '" + l.name + "' (" + to_string(l.kind) + "): " + what);
}

// Index of element (n, h, w, c) in an NHWC tensor of shape s.
size_t at(const tensor_shape& s, int n, int h, int w, int c) {
  return ((size_t(n) * s.h + h) * s.w + w) * s.c + c;
}

// The layer's fused output clamp, applied to a double result and rounded to float.
float activate(const layer& l, double value) {
  float v = static_cast<float>(value);
  if (v < l.act.min) v = l.act.min;
  if (v > l.act.max) v = l.act.max;
  return v;
}

tensor convolution(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  const window_params& win = l.window;
  const int groups = l.groups;
  check(groups >= 1 && is.c % groups == 0 && os.c % groups == 0, l, "bad groups");
  check(os.c == l.output_channels, l, "output_shape.c != output_channels");
  check(os.n == is.n, l, "batch mismatch");
  const int in_per_group = is.c / groups;
  const int out_per_group = os.c / groups;
  check(l.weights.size() == size_t(os.c) * win.kernel_h * win.kernel_w * in_per_group, l, "weights size");
  check(l.bias.empty() || l.bias.size() == size_t(os.c), l, "bias size");
  const float* w = l.weights.data();

  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int oh = 0; oh < os.h; ++oh)
      for (int ow = 0; ow < os.w; ++ow)
        for (int o = 0; o < os.c; ++o) {
          const int g = o / out_per_group;
          // Four partial sums (input channels i, i + 4, ... in each): a double sum in another
          // order, as exact for the 1e-5 comparisons, without one long chain of dependent adds
          // (VGG-16's reference took most of executor_test's time).
          double p0 = 0.0, p1 = 0.0, p2 = 0.0, p3 = 0.0;
          for (int kh = 0; kh < win.kernel_h; ++kh) {
            const int ih = oh * win.stride_h - win.pad.top + kh * win.dilation_h;
            if (ih < 0 || ih >= is.h) continue;  // zero padding
            for (int kw = 0; kw < win.kernel_w; ++kw) {
              const int iw = ow * win.stride_w - win.pad.left + kw * win.dilation_w;
              if (iw < 0 || iw >= is.w) continue;
              const float* xs = x.data() + at(is, n, ih, iw, g * in_per_group);
              const float* ws = w + ((size_t(o) * win.kernel_h + kh) * win.kernel_w + kw) * in_per_group;
              int i = 0;
              for (; i + 4 <= in_per_group; i += 4) {
                p0 += double(xs[i]) * double(ws[i]);
                p1 += double(xs[i + 1]) * double(ws[i + 1]);
                p2 += double(xs[i + 2]) * double(ws[i + 2]);
                p3 += double(xs[i + 3]) * double(ws[i + 3]);
              }
              for (; i < in_per_group; ++i) p0 += double(xs[i]) * double(ws[i]);
            }
          }
          const double bias = l.bias.empty() ? 0.0 : double(l.bias.data()[o]);
          y.data()[at(os, n, oh, ow, o)] = activate(l, bias + ((p0 + p1) + (p2 + p3)));
        }
  return y;
}

tensor fully_connected(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  check(is.h == 1 && is.w == 1, l, "input must be [N,1,1,K], got " + is.to_string());
  check(os.n == is.n && os.h == 1 && os.w == 1 && os.c == l.output_channels, l, "bad output_shape");
  const int k = is.c;
  check(l.weights.size() == size_t(os.c) * k, l, "weights size");
  check(l.bias.empty() || l.bias.size() == size_t(os.c), l, "bias size");

  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int o = 0; o < os.c; ++o) {
      double sum = l.bias.empty() ? 0.0 : double(l.bias.data()[o]);
      for (int i = 0; i < k; ++i) sum += double(x.data()[size_t(n) * k + i]) * double(l.weights.data()[size_t(o) * k + i]);
      y.data()[size_t(n) * os.c + o] = activate(l, sum);
    }
  return y;
}

tensor max_pool(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  const window_params& win = l.window;
  check(os.n == is.n && os.c == is.c, l, "bad output_shape");

  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int oh = 0; oh < os.h; ++oh)
      for (int ow = 0; ow < os.w; ++ow)
        for (int c = 0; c < os.c; ++c) {
          double best = -std::numeric_limits<double>::infinity();
          for (int kh = 0; kh < win.kernel_h; ++kh) {
            const int ih = oh * win.stride_h - win.pad.top + kh * win.dilation_h;
            if (ih < 0 || ih >= is.h) continue;  // padding never wins; ceil_mode overflow is clipped
            for (int kw = 0; kw < win.kernel_w; ++kw) {
              const int iw = ow * win.stride_w - win.pad.left + kw * win.dilation_w;
              if (iw < 0 || iw >= is.w) continue;
              best = std::max(best, double(x.data()[at(is, n, ih, iw, c)]));
            }
          }
          y.data()[at(os, n, oh, ow, c)] = activate(l, best);
        }
  return y;
}

// Along one axis, for the window starting at `start`: `pool` counts the taps before the end of the
// trailing padding (PyTorch's hend = min(hstart + kernel, H + pad_after), taken before clipping to
// the image, so padding counts but ceil_mode's overflow does not); `valid` counts taps in the image.
// With dilation 1 this is exactly PyTorch's avg_pool2d; dilation generalises it tap by tap.
void count_taps(int start, int kernel, int dilation, int size, int pad_after, int* pool, int* valid) {
  *pool = 0;
  *valid = 0;
  for (int k = 0; k < kernel; ++k) {
    const int pos = start + k * dilation;
    if (pos < size + pad_after) ++*pool;
    if (pos >= 0 && pos < size) ++*valid;
  }
}

tensor average_pool(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  const window_params& win = l.window;
  check(os.n == is.n && os.c == is.c, l, "bad output_shape");

  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int oh = 0; oh < os.h; ++oh)
      for (int ow = 0; ow < os.w; ++ow) {
        const int hstart = oh * win.stride_h - win.pad.top;
        const int wstart = ow * win.stride_w - win.pad.left;
        int pool_h, valid_h, pool_w, valid_w;
        count_taps(hstart, win.kernel_h, win.dilation_h, is.h, win.pad.bottom, &pool_h, &valid_h);
        count_taps(wstart, win.kernel_w, win.dilation_w, is.w, win.pad.right, &pool_w, &valid_w);
        const double divisor = win.count_include_pad ? double(pool_h) * pool_w : double(valid_h) * valid_w;
        for (int c = 0; c < os.c; ++c) {
          double sum = 0.0;
          for (int kh = 0; kh < win.kernel_h; ++kh) {
            const int ih = hstart + kh * win.dilation_h;
            if (ih < 0 || ih >= is.h) continue;
            for (int kw = 0; kw < win.kernel_w; ++kw) {
              const int iw = wstart + kw * win.dilation_w;
              if (iw < 0 || iw >= is.w) continue;
              sum += x.data()[at(is, n, ih, iw, c)];
            }
          }
          // An all-padding window (impossible with PyTorch's limits) averages to zero.
          y.data()[at(os, n, oh, ow, c)] = activate(l, divisor > 0 ? sum / divisor : 0.0);
        }
      }
  return y;
}

tensor global_average_pool(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  check(os.n == is.n && os.h == 1 && os.w == 1 && os.c == is.c, l, "bad output_shape");
  tensor y(os);
  for (int n = 0; n < is.n; ++n)
    for (int c = 0; c < is.c; ++c) {
      double sum = 0.0;
      for (int h = 0; h < is.h; ++h)
        for (int w = 0; w < is.w; ++w) sum += x.data()[at(is, n, h, w, c)];
      y.data()[size_t(n) * is.c + c] = activate(l, sum / (double(is.h) * is.w));
    }
  return y;
}

// Element `i` of the output read from operand `t`: the same element, or for a per-channel operand
// [N,1,1,C] the element of the same batch and channel (broadcast over H and W).
double operand(const tensor& t, const tensor_shape& os, size_t i) {
  if (t.shape() == os) return t.data()[i];
  const size_t c = i % size_t(os.c);
  const size_t n = i / (size_t(os.h) * os.w * os.c);
  return t.data()[n * size_t(os.c) + c];
}

void check_operands(const layer& l, const std::vector<const tensor*>& inputs) {
  const tensor_shape& os = l.output_shape;
  check(inputs[0]->shape() == os, l, "first input shape " + inputs[0]->shape().to_string() + " != output");
  for (const tensor* t : inputs) {
    const tensor_shape& s = t->shape();
    const bool per_channel = s.n == os.n && s.h == 1 && s.w == 1 && s.c == os.c;
    check(s == os || per_channel, l, "input shape " + s.to_string() + " is neither the output's nor per channel");
  }
}

tensor add(const layer& l, const std::vector<const tensor*>& inputs) {
  check_operands(l, inputs);
  const tensor_shape& os = l.output_shape;
  tensor y(os);
  for (size_t i = 0; i < y.elements(); ++i) {
    double sum = 0.0;
    for (const tensor* t : inputs) sum += operand(*t, os, i);
    y.data()[i] = activate(l, sum);
  }
  return y;
}

tensor multiply(const layer& l, const std::vector<const tensor*>& inputs) {
  check_operands(l, inputs);
  const tensor_shape& os = l.output_shape;
  tensor y(os);
  for (size_t i = 0; i < y.elements(); ++i) {
    double product = 1.0;
    for (const tensor* t : inputs) product *= operand(*t, os, i);
    y.data()[i] = activate(l, product);
  }
  return y;
}

tensor sigmoid(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) y.data()[i] = activate(l, 1.0 / (1.0 + std::exp(-double(x.data()[i]))));
  return y;
}

// Per pixel over its channels, in double from the definition.
tensor layer_norm(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == s, l, "bad output_shape");
  check(l.weights.size() == size_t(2) * s.c, l, "bad weights");
  tensor y(s);
  const size_t c = size_t(s.c);
  for (size_t p = 0; p < x.elements() / c; ++p) {
    double mean = 0, var = 0;
    for (size_t k = 0; k < c; ++k) mean += x.data()[p * c + k];
    mean /= double(c);
    for (size_t k = 0; k < c; ++k) var += (x.data()[p * c + k] - mean) * (x.data()[p * c + k] - mean);
    var /= double(c);
    for (size_t k = 0; k < c; ++k)
      y.data()[p * c + k] = float((x.data()[p * c + k] - mean) / std::sqrt(var + l.epsilon) * l.weights.data()[k] +
                                  l.weights.data()[c + k]);
  }
  return y;
}

tensor preprocess(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  const size_t c = size_t(x.shape().c);
  check(l.weights.size() == c && l.bias.size() == c, l, "bad mean or std");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i)
    y.data()[i] = float((double(x.data()[i]) / 255.0 - l.weights.data()[i % c]) / l.bias.data()[i % c]);
  return y;
}

tensor hardswish(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) {
    const double v = x.data()[i];
    y.data()[i] = float(v * std::min(std::max(v / 6.0 + 0.5, 0.0), 1.0));
  }
  return y;
}

tensor silu(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) {
    const double v = x.data()[i];
    y.data()[i] = float(v / (1.0 + std::exp(-v)));
  }
  return y;
}

tensor gelu(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) {
    const double v = x.data()[i];
    y.data()[i] = float(0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))));
  }
  return y;
}

// Per batch and head, in double: softmax over keys of (q . k) * scale, then the weighted sum of v.
tensor attention(const layer& l, const tensor& q, const tensor& k, const tensor& v) {
  const tensor_shape& s = q.shape();
  check(k.shape() == s && v.shape() == s && l.output_shape == s, l, "bad shapes");
  const size_t tokens = size_t(s.h) * s.w, c = size_t(s.c), heads = size_t(l.groups), d = c / heads;
  tensor y(s);
  std::vector<double> p(tokens);
  for (size_t n = 0; n < size_t(s.n); ++n)
    for (size_t h = 0; h < heads; ++h)
      for (size_t i = 0; i < tokens; ++i) {
        const float* qi = q.data() + (n * tokens + i) * c + h * d;
        double max = -std::numeric_limits<double>::infinity();
        for (size_t j = 0; j < tokens; ++j) {
          const float* kj = k.data() + (n * tokens + j) * c + h * d;
          double dot = 0;
          for (size_t e = 0; e < d; ++e) dot += double(qi[e]) * kj[e];
          p[j] = dot * l.scale;
          max = std::max(max, p[j]);
        }
        double sum = 0;
        for (size_t j = 0; j < tokens; ++j) sum += (p[j] = std::exp(p[j] - max));
        for (size_t e = 0; e < d; ++e) {
          double acc = 0;
          for (size_t j = 0; j < tokens; ++j) acc += p[j] / sum * v.data()[(n * tokens + j) * c + h * d + e];
          y.data()[(n * tokens + i) * c + h * d + e] = float(acc);
        }
      }
  return y;
}

// Swin's windowed attention, in double, by pixel coordinates: query (y, x) attends to the keys of
// the window holding it, with the layer's addend (per window or shared) on the scores.
tensor window_attention(const layer& l, const tensor& q, const tensor& k, const tensor& v) {
  const tensor_shape& s = q.shape();
  check(k.shape() == s && v.shape() == s && l.output_shape == s, l, "bad shapes");
  const int wh = l.window.kernel_h, ww = l.window.kernel_w, dh = l.window.dilation_h, dw = l.window.dilation_w;
  check(wh > 0 && ww > 0 && dh > 0 && dw > 0 && s.h % (wh * dh) == 0 && s.w % (ww * dw) == 0, l,
        "windows do not tile the map");
  const size_t c = size_t(s.c), heads = size_t(l.groups), d = c / heads, t = size_t(wh) * size_t(ww);
  const size_t across = size_t(s.w / ww), windows = size_t(s.h / wh) * across;
  // Window row wy (of s.h / wh) is block wy / dh at phase wy % dh; its token row r lies at
  // block * wh * dh + r * dh + phase (and likewise for columns).
  auto row = [&](size_t wy, size_t r) { return wy / size_t(dh) * size_t(wh * dh) + r * size_t(dh) + wy % size_t(dh); };
  auto col = [&](size_t wx, size_t r) { return wx / size_t(dw) * size_t(ww * dw) + r * size_t(dw) + wx % size_t(dw); };
  check(l.weights.empty() || l.weights.size() == heads * t * t || l.weights.size() == windows * heads * t * t, l,
        "bad score addend");
  auto at = [&](const tensor& x, size_t n, size_t y, size_t xx, size_t ch) {
    return double(x.data()[((n * size_t(s.h) + y) * size_t(s.w) + xx) * c + ch]);
  };
  tensor y(s);
  std::vector<double> p(t);
  for (size_t n = 0; n < size_t(s.n); ++n)
    for (size_t wy = 0; wy < size_t(s.h / wh); ++wy)
      for (size_t wx = 0; wx < across; ++wx)
        for (size_t h = 0; h < heads; ++h)
          for (size_t i = 0; i < t; ++i) {
            const size_t iy = row(wy, i / size_t(ww)), ix = col(wx, i % size_t(ww));
            double max = -std::numeric_limits<double>::infinity();
            for (size_t j = 0; j < t; ++j) {
              const size_t jy = row(wy, j / size_t(ww)), jx = col(wx, j % size_t(ww));
              double dot = 0;
              for (size_t e = 0; e < d; ++e) dot += at(q, n, iy, ix, h * d + e) * at(k, n, jy, jx, h * d + e);
              p[j] = dot * l.scale;
              if (!l.weights.empty()) {
                const size_t table = l.weights.size() == heads * t * t ? 0 : wy * across + wx;
                p[j] += l.weights.data()[((table * heads + h) * t + i) * t + j];
              }
              max = std::max(max, p[j]);
            }
            double sum = 0;
            for (size_t j = 0; j < t; ++j) sum += (p[j] = std::exp(p[j] - max));
            for (size_t e = 0; e < d; ++e) {
              double acc = 0;
              for (size_t j = 0; j < t; ++j)
                acc += p[j] / sum * at(v, n, row(wy, j / size_t(ww)), col(wx, j % size_t(ww)), h * d + e);
              y.data()[((n * size_t(s.h) + iy) * size_t(s.w) + ix) * c + h * d + e] = float(acc);
            }
          }
  return y;
}

// The NHWC offset of (n, y, x, c) in a tensor of shape s.
size_t nhwc_offset(const tensor_shape& s, int n, int y, int x, int c) {
  return ((size_t(n) * size_t(s.h) + size_t(y)) * size_t(s.w) + size_t(x)) * size_t(s.c) + size_t(c);
}

tensor roll(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == s, l, "bad output_shape");
  tensor y(s);
  for (int n = 0; n < s.n; ++n)
    for (int r = 0; r < s.h; ++r)
      for (int col = 0; col < s.w; ++col)
        for (int ch = 0; ch < s.c; ++ch)
          y.data()[nhwc_offset(s, n, r, col, ch)] =
              x.data()[nhwc_offset(s, n, (r + l.row_begin) % s.h, (col + l.col_begin) % s.w, ch)];
  return y;
}

tensor spatial_slice(const layer& l, const tensor& x) {
  tensor y(l.output_shape);
  const tensor_shape& o = l.output_shape;
  for (int n = 0; n < o.n; ++n)
    for (int r = 0; r < o.h; ++r)
      for (int col = 0; col < o.w; ++col)
        for (int ch = 0; ch < o.c; ++ch)
          y.data()[nhwc_offset(o, n, r, col, ch)] = x.data()[nhwc_offset(
              x.shape(), n, l.row_begin + r * l.window.stride_h, l.col_begin + col * l.window.stride_w, ch)];
  return y;
}

tensor prepend_tokens(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  const size_t c = size_t(s.c), prefix = l.weights.size() / c, tokens = size_t(s.h) * s.w;
  check(l.output_shape == (tensor_shape{s.n, int(prefix + tokens), 1, s.c}), l, "bad output_shape");
  tensor y(l.output_shape);
  for (size_t n = 0; n < size_t(s.n); ++n) {
    float* out = y.data() + n * (prefix + tokens) * c;
    std::copy(l.weights.begin(), l.weights.end(), out);
    std::copy(x.data() + n * tokens * c, x.data() + (n + 1) * tokens * c, out + prefix * c);
  }
  return y;
}

tensor constant_add(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape() && l.weights.size() == x.elements(), l, "bad shapes");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) y.data()[i] = x.data()[i] + l.weights.data()[i];
  return y;
}

tensor row_slice(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == (tensor_shape{s.n, l.row_end - l.row_begin, s.w, s.c}), l, "bad output_shape");
  tensor y(l.output_shape);
  const size_t row = size_t(s.w) * s.c;
  for (size_t n = 0; n < size_t(s.n); ++n)
    std::copy(x.data() + (n * s.h + size_t(l.row_begin)) * row, x.data() + (n * s.h + size_t(l.row_end)) * row,
              y.data() + n * size_t(l.row_end - l.row_begin) * row);
  return y;
}

// PyTorch's x.view(N, g, C/g, H, W).transpose(1, 2).reshape(N, C, H, W), written as that view:
// output channel (j, i) of the [C/g][g] view is input channel (i, j) of the [g][C/g] view.
tensor channel_shuffle(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == s, l, "bad output_shape");
  const int g = l.groups;
  check(g >= 1 && s.c % g == 0, l, "groups do not divide the channels");
  const int per_group = s.c / g;
  tensor y(s);
  for (int n = 0; n < s.n; ++n)
    for (int h = 0; h < s.h; ++h)
      for (int w = 0; w < s.w; ++w)
        for (int i = 0; i < g; ++i)
          for (int j = 0; j < per_group; ++j)
            y.data()[at(s, n, h, w, j * g + i)] = activate(l, x.data()[at(s, n, h, w, i * per_group + j)]);
  return y;
}

tensor channel_slice(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  check(l.channel_begin >= 0 && l.channel_begin < l.channel_end && l.channel_end <= is.c, l, "bad channel range");
  check(os.n == is.n && os.h == is.h && os.w == is.w && os.c == l.channel_end - l.channel_begin, l,
        "bad output_shape");
  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int h = 0; h < os.h; ++h)
      for (int w = 0; w < os.w; ++w)
        for (int c = 0; c < os.c; ++c)
          y.data()[at(os, n, h, w, c)] = activate(l, x.data()[at(is, n, h, w, l.channel_begin + c)]);
  return y;
}

tensor pad(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  const padding& p = l.window.pad;
  check(p.top >= 0 && p.left >= 0 && p.bottom >= 0 && p.right >= 0, l, "negative padding");
  check(os.n == is.n && os.c == is.c && os.h == is.h + p.top + p.bottom && os.w == is.w + p.left + p.right, l,
        "bad output_shape");
  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int h = 0; h < os.h; ++h)
      for (int w = 0; w < os.w; ++w)
        for (int c = 0; c < os.c; ++c) {
          const int ih = h - p.top, iw = w - p.left;
          const bool inside = ih >= 0 && ih < is.h && iw >= 0 && iw < is.w;
          y.data()[at(os, n, h, w, c)] = activate(l, inside ? double(x.data()[at(is, n, ih, iw, c)]) : 0.0);
        }
  return y;
}

tensor concat(const layer& l, const std::vector<const tensor*>& inputs) {
  const tensor_shape& os = l.output_shape;
  int total = 0;
  for (const tensor* t : inputs) {
    const tensor_shape& s = t->shape();
    check(s.n == os.n && s.h == os.h && s.w == os.w, l, "input shape " + s.to_string() + " does not match output");
    total += s.c;
  }
  check(total == os.c, l, "channel sum != output channels");
  tensor y(os);
  for (int n = 0; n < os.n; ++n)
    for (int h = 0; h < os.h; ++h)
      for (int w = 0; w < os.w; ++w) {
        int offset = 0;
        for (const tensor* t : inputs) {
          const tensor_shape& s = t->shape();
          for (int c = 0; c < s.c; ++c) y.data()[at(os, n, h, w, offset + c)] = activate(l, t->data()[at(s, n, h, w, c)]);
          offset += s.c;
        }
      }
  return y;
}

tensor softmax(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == s, l, "bad output_shape");
  tensor y(s);
  const size_t positions = size_t(s.n) * s.h * s.w;
  for (size_t p = 0; p < positions; ++p) {
    const float* in = x.data() + p * s.c;
    double max = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < s.c; ++c) max = std::max(max, double(in[c]));
    double sum = 0.0;
    for (int c = 0; c < s.c; ++c) sum += std::exp(double(in[c]) - max);
    for (int c = 0; c < s.c; ++c) y.data()[p * s.c + c] = activate(l, std::exp(double(in[c]) - max) / sum);
  }
  return y;
}

tensor flatten(const layer& l, const tensor& x) {
  const tensor_shape& is = x.shape();
  const tensor_shape& os = l.output_shape;
  const int features = is.c * is.h * is.w;
  check(os.n == is.n && os.h == 1 && os.w == 1 && os.c == features, l, "bad output_shape");
  tensor y(os);
  for (int n = 0; n < is.n; ++n)
    for (int h = 0; h < is.h; ++h)
      for (int w = 0; w < is.w; ++w)
        for (int c = 0; c < is.c; ++c)
          y.data()[size_t(n) * features + (size_t(c) * is.h + h) * is.w + w] = activate(l, x.data()[at(is, n, h, w, c)]);
  return y;
}

tensor batch_norm(const layer& l, const tensor& x) {
  const tensor_shape& s = x.shape();
  check(l.output_shape == s, l, "bad output_shape");
  const size_t channels = size_t(s.c);
  check(l.weights.size() == 4 * channels, l, "weights must be [gamma|beta|mean|var]");
  const float* gamma = l.weights.data();
  const float* beta = gamma + channels;
  const float* mean = beta + channels;
  const float* var = mean + channels;
  tensor y(s);
  for (size_t i = 0; i < y.elements(); ++i) {
    const size_t c = i % channels;
    const double normalized = (double(x.data()[i]) - mean[c]) / std::sqrt(double(var[c]) + double(l.epsilon));
    y.data()[i] = activate(l, normalized * gamma[c] + beta[c]);
  }
  return y;
}

tensor clamp(const layer& l, const tensor& x) {
  check(l.output_shape == x.shape(), l, "bad output_shape");
  tensor y(x.shape());
  for (size_t i = 0; i < y.elements(); ++i) y.data()[i] = activate(l, x.data()[i]);
  return y;
}

}  // namespace

tensor reference_layer(const layer& l, const std::vector<const tensor*>& inputs) {
  for (const tensor* t : inputs) check(t != nullptr && !t->empty(), l, "missing input tensor");
  auto one_input = [&]() -> const tensor& {
    check(inputs.size() == 1, l, "expects exactly one input, got " + std::to_string(inputs.size()));
    return *inputs[0];
  };
  switch (l.kind) {
    case layer_kind::input: fail("layer '" + l.name + "': reference_layer cannot compute an input layer");
    case layer_kind::convolution: return convolution(l, one_input());
    case layer_kind::fully_connected: return fully_connected(l, one_input());
    case layer_kind::max_pool: return max_pool(l, one_input());
    case layer_kind::average_pool: return average_pool(l, one_input());
    case layer_kind::global_average_pool: return global_average_pool(l, one_input());
    case layer_kind::add:
      check(inputs.size() >= 2, l, "add needs at least two inputs");
      return add(l, inputs);
    case layer_kind::concat:
      check(!inputs.empty(), l, "concat needs inputs");
      return concat(l, inputs);
    case layer_kind::softmax: return softmax(l, one_input());
    case layer_kind::flatten: return flatten(l, one_input());
    case layer_kind::batch_norm: return batch_norm(l, one_input());
    case layer_kind::clamp: return clamp(l, one_input());
    case layer_kind::multiply:
      check(inputs.size() >= 2, l, "multiply needs at least two inputs");
      return multiply(l, inputs);
    case layer_kind::sigmoid: return sigmoid(l, one_input());
    case layer_kind::channel_shuffle: return channel_shuffle(l, one_input());
    case layer_kind::channel_slice: return channel_slice(l, one_input());
    case layer_kind::pad: return pad(l, one_input());
    case layer_kind::layer_norm: return layer_norm(l, one_input());
    case layer_kind::gelu: return gelu(l, one_input());
    case layer_kind::tanh: {
      const tensor& x = one_input();
      tensor y(x.shape());
      for (size_t i = 0; i < x.elements(); ++i) y.data()[i] = float(std::tanh(double(x.data()[i])));
      return y;
    }
    case layer_kind::hardswish: return hardswish(l, one_input());
    case layer_kind::silu: return silu(l, one_input());
    case layer_kind::preprocess: return preprocess(l, one_input());
    case layer_kind::attention:
      check(inputs.size() == 3, l, "attention needs q, k and v");
      return attention(l, *inputs[0], *inputs[1], *inputs[2]);
    case layer_kind::window_attention:
      check(inputs.size() == 3, l, "window attention needs q, k and v");
      return window_attention(l, *inputs[0], *inputs[1], *inputs[2]);
    case layer_kind::roll: return roll(l, one_input());
    case layer_kind::spatial_slice: return spatial_slice(l, one_input());
    case layer_kind::prepend_tokens: return prepend_tokens(l, one_input());
    case layer_kind::constant_add: return constant_add(l, one_input());
    case layer_kind::row_slice: return row_slice(l, one_input());
  }
  fail("layer '" + l.name + "': unknown layer kind");
}

std::map<std::string, tensor> reference_run(const graph& g, const std::map<std::string, tensor>& inputs) {
  result<std::vector<int>> order = topological_order(g);
  if (!order.is_ok()) fail("reference_run: " + order.message());
  std::vector<const tensor*> produced(g.layers.size(), nullptr);
  std::map<std::string, tensor> tensors;
  for (int index : order.value()) {
    const layer& l = g.layers[size_t(index)];
    tensor out;
    if (l.kind == layer_kind::input) {
      auto it = inputs.find(l.name);
      if (it == inputs.end()) fail("reference_run: no tensor supplied for input layer '" + l.name + "'");
      if (it->second.shape() != l.output_shape)
        fail("reference_run: input '" + l.name + "' has shape " + it->second.shape().to_string() + ", expected " +
             l.output_shape.to_string());
      out = it->second;
    } else {
      std::vector<const tensor*> args;
      for (int producer : l.inputs) {
        if (producer < 0 || size_t(producer) >= produced.size() || produced[size_t(producer)] == nullptr)
          fail("reference_run: layer '" + l.name + "' reads a tensor not computed yet");
        args.push_back(produced[size_t(producer)]);
      }
      out = reference_layer(l, args);
    }
    // std::map nodes are stable, so the pointer stays valid as more tensors are inserted.
    auto [it, inserted] = tensors.insert_or_assign(l.name, std::move(out));
    produced[size_t(index)] = &it->second;
  }
  return tensors;
}

std::string compare_relative(const tensor& actual, const tensor& expected, double tolerance) {
  const tensor_shape& s = expected.shape();
  if (actual.shape() != s)
    return "shape mismatch: actual " + actual.shape().to_string() + " expected " + s.to_string() + " (NCHW)";
  const size_t count = s.elements();
  if (count == 0) return "";
  if (actual.data() == nullptr || expected.data() == nullptr) return "missing data";

  double largest = 0.0;
  for (size_t i = 0; i < count; ++i) {
    const double e = expected.data()[i];
    if (std::isfinite(e)) largest = std::max(largest, std::fabs(e));
  }

  size_t mismatches = 0, first = 0;
  double first_diff = 0, first_tol = 0;
  for (size_t i = 0; i < count; ++i) {
    const double a = actual.data()[i];
    const double e = expected.data()[i];
    const double diff = std::fabs(a - e);
    const double tol = tolerance * largest;
    const bool ok = a == e || (std::isnan(a) && std::isnan(e)) || diff <= tol;  // NaN diff fails
    if (!ok) {
      if (mismatches == 0) {
        first = i;
        first_diff = diff;
        first_tol = tol;
      }
      ++mismatches;
    }
  }
  if (mismatches == 0) return "";

  const size_t c = first % size_t(s.c);
  const size_t w = first / size_t(s.c) % size_t(s.w);
  const size_t h = first / (size_t(s.c) * s.w) % size_t(s.h);
  const size_t n = first / (size_t(s.c) * s.w * s.h);
  char buffer[320];
  std::snprintf(buffer, sizeof buffer,
                "index %zu (n=%zu,h=%zu,w=%zu,c=%zu): actual %.7g expected %.7g, |diff| %.2g > tol %.2g "
                "(%zu of %zu elements differ, shape %s NCHW)",
                first, n, h, w, c, double(actual.data()[first]), double(expected.data()[first]), first_diff, first_tol,
                mismatches, count, s.to_string().c_str());
  return buffer;
}

}  // namespace d3
