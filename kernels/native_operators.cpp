#include "kernels/native_operators.hpp"

#include <pthreadpool.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace d3 {

void layer_norm_rows(const float* x, float* y, size_t pixels, size_t channels, const float* gamma, const float* beta,
                     float epsilon) {
  for (size_t p = 0; p < pixels; ++p) {
    const float* row = x + p * channels;
    float* out = y + p * channels;
    // Two passes in double (mean, then the mean square deviation): PyTorch's decomposition
    // (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div) within float rounding, independent of C.
    double sum = 0;
    for (size_t c = 0; c < channels; ++c) sum += row[c];
    const double mean = sum / double(channels);
    double squares = 0;
    for (size_t c = 0; c < channels; ++c) {
      const double d = double(row[c]) - mean;
      squares += d * d;
    }
    const double inv_std = 1.0 / std::sqrt(squares / double(channels) + double(epsilon));
    for (size_t c = 0; c < channels; ++c)
      out[c] = float((double(row[c]) - mean) * inv_std * double(gamma[c]) + double(beta[c]));
  }
}

namespace {

// Four floats in a vector register (SSE on x86-64, NEON on ARM): GCC and clang vector extensions.
typedef float v4sf __attribute__((vector_size(16)));

v4sf splat(float v) { return v4sf{v, v, v, v}; }

// GELU of four values: x * (1 + erf(x / sqrt(2))) / 2 with erf as Eigen's rational approximation
// on [-4, 4] (max error 4.5e-7, measured against double erf on a 1e-6 grid; erf is +-1 in float
// outside). Separate multiplies and adds: the same rounding in every lane and on every path.
v4sf gelu4(v4sf v) {
  v4sf t = v * splat(0.70710678118654752f);
  t = t < splat(-4.0f) ? splat(-4.0f) : t;
  t = t > splat(4.0f) ? splat(4.0f) : t;
  const v4sf x2 = t * t;
  v4sf p = splat(-2.72614225801306e-10f);
  p = p * x2 + splat(2.77068142495902e-08f);
  p = p * x2 + splat(-2.10102402082508e-06f);
  p = p * x2 + splat(-5.69250639462346e-05f);
  p = p * x2 + splat(-7.34990630326855e-04f);
  p = p * x2 + splat(-2.95459980854025e-03f);
  p = p * x2 + splat(-1.60960333262415e-02f);
  p = p * t;
  v4sf q = splat(-1.45660718464996e-05f);
  q = q * x2 + splat(-2.13374055278905e-04f);
  q = q * x2 + splat(-1.68282697438203e-03f);
  q = q * x2 + splat(-7.37332916720468e-03f);
  q = q * x2 + splat(-1.42647390514189e-02f);
  return (v * (p / q + splat(1.0f))) * splat(0.5f);
}

}  // namespace

void gelu_values(const float* x, float* y, size_t count) {
  size_t i = 0;
  for (; i + 4 <= count; i += 4) {
    v4sf v;
    std::memcpy(&v, x + i, sizeof v);
    v = gelu4(v);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < count) {  // the tail through the same vector code, so every value is computed alike
    v4sf v = splat(0.0f);
    std::memcpy(&v, x + i, (count - i) * sizeof(float));
    v = gelu4(v);
    std::memcpy(y + i, &v, (count - i) * sizeof(float));
  }
}

namespace {

// Runs fn over rows of a [pixels, channels] tensor, split into blocks on the pool's threads.
class pointwise_operator : public layer_operator {
 public:
  pointwise_operator(const layer& l, tensor_shape in) : name_(l.name), kind_(l.kind), shape_(in) {}

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    const size_t pixels = size_t(shape_.n) * shape_.h * shape_.w;
    // Blocks of pixels: enough work per task to amortise the dispatch, several per thread.
    const size_t block = std::max<size_t>(1, 4096 / size_t(shape_.c));
    pthreadpool_parallelize_1d_tile_1d(
        pool,
        [](void* self, size_t first, size_t count) {
          static_cast<pointwise_operator*>(self)->compute(first, count);
        },
        this, pixels, block, 0);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    if (inputs.size() != 1 || inputs[0] != output || inputs[0].c != shape_.c)
      return status::error(std::string(to_string(kind_)) + " layer '" + name_ + "': cannot reshape from " +
                           shape_.to_string() + " to input " + (inputs.empty() ? "none" : inputs[0].to_string()) +
                           " and output " + output.to_string() + " (same shape, " + std::to_string(shape_.c) +
                           " channels)");
    shape_ = output;
    return status::ok();
  }

 protected:
  virtual void compute(size_t first_pixel, size_t pixels) = 0;
  const float* x_ = nullptr;
  float* y_ = nullptr;
  std::string name_;
  layer_kind kind_;
  tensor_shape shape_;
};

class layer_norm_operator : public pointwise_operator {
 public:
  layer_norm_operator(const layer& l, tensor_shape in) : pointwise_operator(l, in), weights_(l.weights), epsilon_(l.epsilon) {}

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    layer_norm_rows(x_ + first * c, y_ + first * c, count, c, weights_.data(), weights_.data() + c, epsilon_);
  }
  weight_blob weights_;
  float epsilon_;
};

class gelu_operator : public pointwise_operator {
 public:
  using pointwise_operator::pointwise_operator;

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    gelu_values(x_ + first * c, y_ + first * c, count * c);
  }
};

// Depthwise convolution, NHWC: out[y][x][c] = clamp(bias[c] + sum over the window's taps inside
// the input, row by row, of w[ky][kx][c] * in[iy][ix][c]). Taps over padding are skipped rather
// than multiplied by zero, on every path. Channels go in blocks of 8 (two vectors); each output row
// is one task on the pool.
class depthwise_operator : public layer_operator {
 public:
  static constexpr size_t block = 8;

  depthwise_operator(const layer& l, tensor_shape in, size_t out_stride)
      : name_(l.name), window_(l.window), act_(l.act), in_(in), out_(l.output_shape), out_stride_(out_stride) {
    const size_t c = size_t(in.c), taps = size_t(l.window.kernel_h) * l.window.kernel_w;
    // d3's OHWI layout with one input channel per group is [C][taps]; the loop wants [taps][C].
    weights_.resize(taps * c);
    for (size_t ch = 0; ch < c; ++ch)
      for (size_t t = 0; t < taps; ++t) weights_[t * c + ch] = l.weights.data()[ch * taps + t];
    bias_.assign(c, 0.0f);
    if (!l.bias.empty()) std::copy(l.bias.begin(), l.bias.end(), bias_.begin());
  }

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    pthreadpool_parallelize_1d(
        pool, [](void* self, size_t row) { static_cast<depthwise_operator*>(self)->compute_row(row); }, this,
        size_t(out_.n) * out_.h, 0);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    const window_params& w = window_;
    if (inputs.size() != 1 || inputs[0].c != in_.c || output.c != out_.c || inputs[0].n != output.n ||
        output.h != window_output_size(inputs[0].h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom, false) ||
        output.w != window_output_size(inputs[0].w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right, false))
      return status::error("convolution layer '" + name_ + "': cannot reshape to input " +
                           (inputs.empty() ? std::string("none") : inputs[0].to_string()) + " and output " +
                           output.to_string() + " (the window and padding were fixed at create)");
    in_ = inputs[0];
    out_ = output;
    return status::ok();
  }

 private:
  void compute_row(size_t row) {
    const window_params& w = window_;
    const size_t c = size_t(in_.c);
    const size_t stride = out_stride_ ? out_stride_ : c;
    const int n = int(row / size_t(out_.h)), oy = int(row % size_t(out_.h));
    const float* image = x_ + size_t(n) * in_.h * in_.w * c;
    float* out_row = y_ + (size_t(n) * out_.h + size_t(oy)) * out_.w * stride;
    for (int ox = 0; ox < out_.w; ++ox) {
      float* out = out_row + size_t(ox) * stride;
      const int y0 = oy * w.stride_h - w.pad.top, x0 = ox * w.stride_w - w.pad.left;
      size_t ch = 0;
      for (; ch + block <= c; ch += block) {
        v4sf a0, a1;
        std::memcpy(&a0, &bias_[ch], sizeof a0);
        std::memcpy(&a1, &bias_[ch + 4], sizeof a1);
        for (int ky = 0; ky < w.kernel_h; ++ky) {
          const int iy = y0 + ky * w.dilation_h;
          if (iy < 0 || iy >= in_.h) continue;
          for (int kx = 0; kx < w.kernel_w; ++kx) {
            const int ix = x0 + kx * w.dilation_w;
            if (ix < 0 || ix >= in_.w) continue;
            const float* in = image + (size_t(iy) * in_.w + size_t(ix)) * c + ch;
            const float* wt = &weights_[size_t(ky * w.kernel_w + kx) * c + ch];
            v4sf i0, i1, w0, w1;
            std::memcpy(&i0, in, sizeof i0);
            std::memcpy(&i1, in + 4, sizeof i1);
            std::memcpy(&w0, wt, sizeof w0);
            std::memcpy(&w1, wt + 4, sizeof w1);
            a0 = a0 + w0 * i0;
            a1 = a1 + w1 * i1;
          }
        }
        a0 = a0 < splat(act_.min) ? splat(act_.min) : a0;
        a0 = a0 > splat(act_.max) ? splat(act_.max) : a0;
        a1 = a1 < splat(act_.min) ? splat(act_.min) : a1;
        a1 = a1 > splat(act_.max) ? splat(act_.max) : a1;
        std::memcpy(out + ch, &a0, sizeof a0);
        std::memcpy(out + ch + 4, &a1, sizeof a1);
      }
      for (; ch < c; ++ch) {  // the same operations, one lane
        float a = bias_[ch];
        for (int ky = 0; ky < w.kernel_h; ++ky) {
          const int iy = y0 + ky * w.dilation_h;
          if (iy < 0 || iy >= in_.h) continue;
          for (int kx = 0; kx < w.kernel_w; ++kx) {
            const int ix = x0 + kx * w.dilation_w;
            if (ix < 0 || ix >= in_.w) continue;
            a = a + weights_[size_t(ky * w.kernel_w + kx) * c + ch] * image[(size_t(iy) * in_.w + size_t(ix)) * c + ch];
          }
        }
        out[ch] = std::min(std::max(a, act_.min), act_.max);
      }
    }
  }

  std::string name_;
  window_params window_;
  activation act_;
  tensor_shape in_, out_;
  size_t out_stride_;
  std::vector<float> weights_, bias_;
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

status check_pointwise(const layer& l, const tensor_shape& input) {
  const std::string where = std::string(to_string(l.kind)) + " layer '" + l.name + "'";
  if (input != l.output_shape)
    return status::error(where + ": output shape " + l.output_shape.to_string() + " differs from its input " +
                         input.to_string());
  if (!l.act.is_identity()) return status::error(where + ": a fused clamp is not supported");
  return status::ok();
}

}  // namespace

result<std::unique_ptr<layer_operator>> create_layer_norm_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (l.weights.size() != size_t(2) * size_t(input.c) || !l.bias.empty())
    return status::error("layer_norm layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats, expected 2 x " + std::to_string(input.c) + " (gamma | beta)");
  if (!(l.epsilon >= 0)) return status::error("layer_norm layer '" + l.name + "': epsilon must be >= 0");
  return std::unique_ptr<layer_operator>(new layer_norm_operator(l, input));
}

result<std::unique_ptr<layer_operator>> create_gelu_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (!l.weights.empty() || !l.bias.empty()) return status::error("gelu layer '" + l.name + "': takes no weights");
  return std::unique_ptr<layer_operator>(new gelu_operator(l, input));
}

bool depthwise_runs_natively(const layer& l, const tensor_shape& input) {
  // XNNPACK (2022)'s largest depthwise kernels take 25 taps (5x5).
  return l.kind == layer_kind::convolution && l.groups > 1 && l.groups == input.c && l.output_channels == l.groups &&
         l.window.kernel_h * l.window.kernel_w > 25;
}

result<std::unique_ptr<layer_operator>> create_depthwise_operator(const layer& l, const tensor_shape& input,
                                                                  size_t output_pixel_stride) {
  if (!depthwise_runs_natively(l, input))
    return status::error("convolution layer '" + l.name + "': not a depthwise convolution of more than 25 taps");
  const size_t taps = size_t(l.window.kernel_h) * l.window.kernel_w;
  if (l.weights.size() != taps * size_t(input.c) || (!l.bias.empty() && l.bias.size() != size_t(input.c)))
    return status::error("convolution layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats, expected " + std::to_string(taps * size_t(input.c)));
  if (l.window.stride_h < 1 || l.window.stride_w < 1 || l.window.dilation_h < 1 || l.window.dilation_w < 1)
    return status::error("convolution layer '" + l.name + "': stride and dilation must be >= 1");
  return std::unique_ptr<layer_operator>(new depthwise_operator(l, input, output_pixel_stride));
}

}  // namespace d3
