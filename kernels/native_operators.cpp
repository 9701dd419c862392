#include "kernels/native_operators.hpp"

#include <pthreadpool.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/cpu_features.hpp"

namespace d3 {

namespace {

// Four floats in a vector register (SSE on x86-64, NEON on ARM), eight (one AVX2 register) and
// sixteen (one AVX-512 register): GCC and clang vector extensions. This file is compiled with
// -ffp-contract=off (kernels/CMakeLists.txt): a multiply and an add stay two roundings on every
// target, so the eight- and sixteen-lane paths compute the four-lane paths' bits (nodes with
// AVX-512, with AVX2 and with neither answer alike).
typedef float v4sf __attribute__((vector_size(16)));
typedef float v8sf __attribute__((vector_size(32)));
typedef float v16sf __attribute__((vector_size(64)));

std::atomic<bool> four_lanes_forced{false};

// The sixteen-lane paths where the CPU has AVX-512, unless a test or a measurement asked for four.
bool sixteen_lanes() { return cpu_has_avx512f() && !four_lanes_forced.load(std::memory_order_relaxed); }
// Eight (one AVX2 register) where the CPU has AVX2 but not AVX-512, unless four were asked for.
bool eight_lanes() {
  return !cpu_has_avx512f() && cpu_has_avx2_fma() && !four_lanes_forced.load(std::memory_order_relaxed);
}

#define D3_INLINE inline __attribute__((always_inline))
// The 16- and 8-lane instances are inlined into their AVX-512 and AVX2 callers only: no v16sf or
// v8sf crosses a call, so GCC's note that passing one would change the ABI does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

template <class V>
D3_INLINE V splat_as(float v) {
  return V{} + v;
}

// GELU of a vector's values: x * (1 + erf(x / sqrt(2))) / 2 with erf as Eigen's rational
// approximation on [-4, 4] (max error 4.5e-7, measured against double erf on a 1e-6 grid; erf is
// +-1 in float outside). Separate multiplies and adds: the same rounding in every lane and on
// every path.
template <class V>
D3_INLINE V gelu_vector(V v) {
  V t = v * splat_as<V>(0.70710678118654752f);
  t = t < splat_as<V>(-4.0f) ? splat_as<V>(-4.0f) : t;
  t = t > splat_as<V>(4.0f) ? splat_as<V>(4.0f) : t;
  const V x2 = t * t;
  V p = splat_as<V>(-2.72614225801306e-10f);
  p = p * x2 + splat_as<V>(2.77068142495902e-08f);
  p = p * x2 + splat_as<V>(-2.10102402082508e-06f);
  p = p * x2 + splat_as<V>(-5.69250639462346e-05f);
  p = p * x2 + splat_as<V>(-7.34990630326855e-04f);
  p = p * x2 + splat_as<V>(-2.95459980854025e-03f);
  p = p * x2 + splat_as<V>(-1.60960333262415e-02f);
  p = p * t;
  V q = splat_as<V>(-1.45660718464996e-05f);
  q = q * x2 + splat_as<V>(-2.13374055278905e-04f);
  q = q * x2 + splat_as<V>(-1.68282697438203e-03f);
  q = q * x2 + splat_as<V>(-7.37332916720468e-03f);
  q = q * x2 + splat_as<V>(-1.42647390514189e-02f);
  return (v * (p / q + splat_as<V>(1.0f))) * splat_as<V>(0.5f);
}

typedef int32_t v4si __attribute__((vector_size(16)));
typedef int32_t v8si __attribute__((vector_size(32)));
typedef int32_t v16si __attribute__((vector_size(64)));
template <class V>
struct int_lanes;
template <>
struct int_lanes<v4sf> {
  using type = v4si;
};
template <>
struct int_lanes<v8sf> {
  using type = v8si;
};
template <>
struct int_lanes<v16sf> {
  using type = v16si;
};

// e^x of a vector's values, Cephes' expf: x = n ln2 + r with n = floor(x log2(e) + 1/2) and ln2
// in two parts (exact products), e^r as a degree-7 polynomial, times 2^n built in the exponent
// bits (max relative error 8.1e-8 on [-87, 88] in steps of 1e-5, measured against double exp).
// Below -69 the result is 0 (e^-69 = 1e-30): softmax weights that small change no sum, and their
// products would be denormal floats, which cost a microcode assist per operation on x86 (Swin's
// shift masks make many). Above 88.37 it is e^88.37. Separate multiplies and adds, so every lane
// and both widths give the same bits.
template <class V>
D3_INLINE V exp_vector(V x) {
  using VI = typename int_lanes<V>::type;
  const auto negligible = x < splat_as<V>(-69.0f);
  x = negligible ? splat_as<V>(-69.0f) : x;
  x = x > splat_as<V>(88.37626f) ? splat_as<V>(88.37626f) : x;
  const V fx = x * splat_as<V>(1.44269504088896341f) + splat_as<V>(0.5f);
  VI n = __builtin_convertvector(fx, VI);              // toward zero
  n = n + (__builtin_convertvector(n, V) > fx);        // floor: minus one where truncation rounded up
  const V t = __builtin_convertvector(n, V);
  const V r = (x - t * splat_as<V>(0.693359375f)) - t * splat_as<V>(-2.12194440e-4f);
  V y = splat_as<V>(1.9875691500e-4f);
  y = y * r + splat_as<V>(1.3981999507e-3f);
  y = y * r + splat_as<V>(8.3334519073e-3f);
  y = y * r + splat_as<V>(4.1665795894e-2f);
  y = y * r + splat_as<V>(1.6666665459e-1f);
  y = y * r + splat_as<V>(5.0000001201e-1f);
  y = (y * (r * r) + r) + splat_as<V>(1.0f);
  const VI bits = (n + 127) << 23;
  V scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return negligible ? splat_as<V>(0.0f) : y * scale;
}

// tanh of a vector's values, Cephes' tanhf: x + x^3 P(x^2) below |x| = 0.625, 1 - 2 / (e^2|x| + 1)
// with the sign of x above. Separate multiplies and adds (the same bits on every path).
template <class V>
D3_INLINE V tanh_vector(V x) {
  const V a = x < splat_as<V>(0.0f) ? -x : x;
  const V e = exp_vector(a + a);
  V big = splat_as<V>(1.0f) - splat_as<V>(2.0f) / (e + splat_as<V>(1.0f));
  big = x < splat_as<V>(0.0f) ? -big : big;
  const V z = x * x;
  V p = splat_as<V>(-5.70498872745e-3f);
  p = p * z + splat_as<V>(2.06390887954e-2f);
  p = p * z + splat_as<V>(-5.37397155531e-2f);
  p = p * z + splat_as<V>(1.33314422036e-1f);
  p = p * z + splat_as<V>(-3.33332819422e-1f);
  const V small = (p * z) * x + x;
  return a < splat_as<V>(0.625f) ? small : big;
}

// An element-wise function of every value, vectors at a time; the tail through the same vector
// code, so every value is computed alike.
template <class V, V (*F)(V)>
D3_INLINE void map_span(const float* x, float* y, size_t count) {
  size_t i = 0;
  for (; i + sizeof(V) / sizeof(float) <= count; i += sizeof(V) / sizeof(float)) {
    V v;
    std::memcpy(&v, x + i, sizeof v);
    v = F(v);
    std::memcpy(y + i, &v, sizeof v);
  }
  if (i < count) {
    V v = splat_as<V>(0.0f);
    std::memcpy(&v, x + i, (count - i) * sizeof(float));
    v = F(v);
    std::memcpy(y + i, &v, (count - i) * sizeof(float));
  }
}

__attribute__((target("avx512f"))) void tanh_span_avx512(const float* x, float* y, size_t count) {
  map_span<v16sf, tanh_vector<v16sf>>(x, y, count);
}

__attribute__((target("avx512f"))) void gelu_span_avx512(const float* x, float* y, size_t count) {
  map_span<v16sf, gelu_vector<v16sf>>(x, y, count);
}

__attribute__((target("avx2"))) void tanh_span_avx2(const float* x, float* y, size_t count) {
  map_span<v8sf, tanh_vector<v8sf>>(x, y, count);
}

__attribute__((target("avx2"))) void gelu_span_avx2(const float* x, float* y, size_t count) {
  map_span<v8sf, gelu_vector<v8sf>>(x, y, count);
}

// y[i] = a[i] * b[i]; y may be a or b (each vector is loaded before it is stored).
template <class V>
D3_INLINE void multiply_span(const float* a, const float* b, float* y, size_t count) {
  size_t i = 0;
  for (; i + sizeof(V) / sizeof(float) <= count; i += sizeof(V) / sizeof(float)) {
    V u, v;
    std::memcpy(&u, a + i, sizeof u);
    std::memcpy(&v, b + i, sizeof v);
    u = u * v;
    std::memcpy(y + i, &u, sizeof u);
  }
  for (; i < count; ++i) y[i] = a[i] * b[i];
}

__attribute__((target("avx512f"))) void multiply_span_avx512(const float* a, const float* b, float* y, size_t count) {
  multiply_span<v16sf>(a, b, y, count);
}

__attribute__((target("avx2"))) void multiply_span_avx2(const float* a, const float* b, float* y, size_t count) {
  multiply_span<v8sf>(a, b, y, count);
}

// sum[i] = x[i] + x[count + i] + ... + x[(rows - 1) * count + i], added in row order: four
// vectors of columns stay in registers across the rows (a loop adding each row into `sum` in
// memory loads and stores the sums once per row). Precondition: rows >= 1.
template <class V>
D3_INLINE void sum_rows_span(const float* x, size_t rows, size_t count, float* sum) {
  constexpr size_t lanes = sizeof(V) / sizeof(float);
  size_t i = 0;
  for (; i + 4 * lanes <= count; i += 4 * lanes) {
    V a[4];
    std::memcpy(a, x + i, sizeof a);
    for (size_t r = 1; r < rows; ++r) {
      V b[4];
      std::memcpy(b, x + r * count + i, sizeof b);
      a[0] += b[0];
      a[1] += b[1];
      a[2] += b[2];
      a[3] += b[3];
    }
    std::memcpy(sum + i, a, sizeof a);
  }
  for (; i + lanes <= count; i += lanes) {
    V a, b;
    std::memcpy(&a, x + i, sizeof a);
    for (size_t r = 1; r < rows; ++r) {
      std::memcpy(&b, x + r * count + i, sizeof b);
      a += b;
    }
    std::memcpy(sum + i, &a, sizeof a);
  }
  for (; i < count; ++i) {
    float a = x[i];
    for (size_t r = 1; r < rows; ++r) a += x[r * count + i];
    sum[i] = a;
  }
}

__attribute__((target("avx512f"))) void sum_rows_avx512(const float* x, size_t rows, size_t count, float* sum) {
  sum_rows_span<v16sf>(x, rows, count, sum);
}

__attribute__((target("avx2"))) void sum_rows_avx2(const float* x, size_t rows, size_t count, float* sum) {
  sum_rows_span<v8sf>(x, rows, count, sum);
}

}  // namespace

void force_four_lane_vectors(bool forced) { four_lanes_forced.store(forced); }

void gelu_values(const float* x, float* y, size_t count) {
  if (sixteen_lanes())
    gelu_span_avx512(x, y, count);
  else if (eight_lanes())
    gelu_span_avx2(x, y, count);
  else
    map_span<v4sf, gelu_vector<v4sf>>(x, y, count);
}

void multiply_values(const float* a, const float* b, float* y, size_t count) {
  if (sixteen_lanes())
    multiply_span_avx512(a, b, y, count);
  else if (eight_lanes())
    multiply_span_avx2(a, b, y, count);
  else
    multiply_span<v4sf>(a, b, y, count);
}

void sum_rows(const float* x, size_t rows, size_t count, float* sum) {
  if (sixteen_lanes())
    sum_rows_avx512(x, rows, count, sum);
  else if (eight_lanes())
    sum_rows_avx2(x, rows, count, sum);
  else
    sum_rows_span<v4sf>(x, rows, count, sum);
}

void tanh_values(const float* x, float* y, size_t count) {
  if (sixteen_lanes())
    tanh_span_avx512(x, y, count);
  else if (eight_lanes())
    tanh_span_avx2(x, y, count);
  else
    map_span<v4sf, tanh_vector<v4sf>>(x, y, count);
}

namespace {

typedef double v8df __attribute__((vector_size(64)));

// The sum of a row's values (or of their squared deviations from `mean`) in double: eight lanes
// of every eighth channel, the lanes added pairwise in a fixed order, then the tail in order.
// The same operations on every path: one AVX-512 register, or four SSE2 registers.
template <bool Deviations>
D3_INLINE double row_sum(const float* row, size_t channels, double mean) {
  v8df lanes = v8df{} + 0.0;
  size_t c = 0;
  for (; c + 8 <= channels; c += 8) {
    v8sf f;
    std::memcpy(&f, row + c, sizeof f);
    v8df d = __builtin_convertvector(f, v8df);
    if (Deviations) {
      d = d - mean;
      d = d * d;
    }
    lanes = lanes + d;
  }
  double sum = ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
  for (; c < channels; ++c) {
    double d = double(row[c]);
    if (Deviations) {
      d = d - mean;
      d = d * d;
    }
    sum = sum + d;
  }
  return sum;
}

// Two passes in double (mean, then the mean square deviation): PyTorch's decomposition
// (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div) within float rounding, independent of C.
D3_INLINE void layer_norm_span(const float* x, float* y, size_t pixels, size_t channels, const float* gamma,
                               const float* beta, float epsilon) {
  for (size_t p = 0; p < pixels; ++p) {
    const float* row = x + p * channels;
    float* out = y + p * channels;
    const double mean = row_sum<false>(row, channels, 0.0) / double(channels);
    const double variance = row_sum<true>(row, channels, mean) / double(channels);
    const double inv_std = 1.0 / std::sqrt(variance + double(epsilon));
    size_t c = 0;
    for (; c + 8 <= channels; c += 8) {
      v8sf f, g, b;
      std::memcpy(&f, row + c, sizeof f);
      std::memcpy(&g, gamma + c, sizeof g);
      std::memcpy(&b, beta + c, sizeof b);
      const v8df v = (__builtin_convertvector(f, v8df) - mean) * inv_std * __builtin_convertvector(g, v8df) +
                     __builtin_convertvector(b, v8df);
      const v8sf o = __builtin_convertvector(v, v8sf);
      std::memcpy(out + c, &o, sizeof o);
    }
    for (; c < channels; ++c) out[c] = float((double(row[c]) - mean) * inv_std * double(gamma[c]) + double(beta[c]));
  }
}

__attribute__((target("avx512f"))) void layer_norm_span_avx512(const float* x, float* y, size_t pixels,
                                                              size_t channels, const float* gamma, const float* beta,
                                                              float epsilon) {
  layer_norm_span(x, y, pixels, channels, gamma, beta, epsilon);
}

__attribute__((target("avx2"))) void layer_norm_span_avx2(const float* x, float* y, size_t pixels, size_t channels,
                                                         const float* gamma, const float* beta, float epsilon) {
  layer_norm_span(x, y, pixels, channels, gamma, beta, epsilon);
}

}  // namespace

void layer_norm_rows(const float* x, float* y, size_t pixels, size_t channels, const float* gamma, const float* beta,
                     float epsilon) {
  if (sixteen_lanes())
    layer_norm_span_avx512(x, y, pixels, channels, gamma, beta, epsilon);
  else if (eight_lanes())
    layer_norm_span_avx2(x, y, pixels, channels, gamma, beta, epsilon);
  else
    layer_norm_span(x, y, pixels, channels, gamma, beta, epsilon);
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

// An element-wise function (GELU, tanh) of every value.
class elementwise_operator : public pointwise_operator {
 public:
  using function = void (*)(const float* x, float* y, size_t count);
  elementwise_operator(const layer& l, tensor_shape in, function f) : pointwise_operator(l, in), f_(f) {}

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    f_(x_ + first * c, y_ + first * c, count * c);
  }
  function f_;
};

class preprocess_operator : public pointwise_operator {
 public:
  preprocess_operator(const layer& l, tensor_shape in) : pointwise_operator(l, in), mean_(l.weights), std_(l.bias) {}

 private:
  void compute(size_t first, size_t count) override {
    const size_t c = size_t(shape_.c);
    preprocess_rows(x_ + first * c, y_ + first * c, count, c, mean_.data(), std_.data());
  }
  weight_blob mean_, std_;
};

// Depthwise convolution, NHWC: out[y][x][c] = clamp(bias[c] + sum over the window's taps inside
// the input, row by row, of w[ky][kx][c] * in[iy][ix][c]). Taps over padding are skipped rather
// than multiplied by zero, on every path. Each output row is one task on the pool.
class depthwise_operator : public depthwise_rows_operator {
 public:
  depthwise_operator(const layer& l, tensor_shape in, size_t out_stride) : depthwise_rows_operator(l, in, out_stride) {
    const size_t c = size_t(in.c), taps = size_t(l.window.kernel_h) * l.window.kernel_w;
    // d3's OHWI layout with one input channel per group is [C][taps]; the loop wants [taps][C].
    weights_.resize(taps * c);
    for (size_t ch = 0; ch < c; ++ch)
      for (size_t t = 0; t < taps; ++t) weights_[t * c + ch] = l.weights.data()[ch * taps + t];
    bias_.assign(c, 0.0f);
    if (!l.bias.empty()) std::copy(l.bias.begin(), l.bias.end(), bias_.begin());
  }

 private:
  // The window taps [first, last) along one axis that fall inside the input (0 <= start + k *
  // dilation < size): a contiguous range, since the position grows with k. Taps over padding are
  // skipped, never multiplied by zero; the sums run row by row, column by column within a row.
  struct taps {
    int first, last;
  };
  static taps window_taps(int start, int kernel, int dilation, int size) {
    taps t{0, 0};
    while (t.first < kernel && start + t.first * dilation < 0) ++t.first;
    t.last = t.first;
    while (t.last < kernel && start + t.last * dilation < size) ++t.last;
    return t;
  }

  void compute_row(size_t row) override {
    if (sixteen_lanes())
      compute_row_avx512(row);
    else if (eight_lanes())
      compute_row_avx2(row);
    else
      compute_row_with<v4sf>(row);
  }

  __attribute__((target("avx512f"))) void compute_row_avx512(size_t row) { compute_row_with<v16sf>(row); }
  __attribute__((target("avx2"))) void compute_row_avx2(size_t row) { compute_row_with<v8sf>(row); }

  // Channels in groups of up to four vectors (independent sums, so the adds overlap), then single
  // vectors, then one lane at a time; every lane runs the same operations in the same order.
  template <class V>
  D3_INLINE void compute_row_with(size_t row) {
    constexpr size_t lanes = sizeof(V) / sizeof(float);
    const size_t c = size_t(in_.c);
    const size_t stride = out_stride_ ? out_stride_ : c;
    const int n = int(row / size_t(out_.h)), oy = int(row % size_t(out_.h));
    const float* image = x_ + size_t(n) * in_.h * in_.w * c;
    float* out_row = y_ + (size_t(n) * out_.h + size_t(oy)) * out_.w * stride;
    const int y0 = oy * window_.stride_h - window_.pad.top;
    const taps rows = window_taps(y0, window_.kernel_h, window_.dilation_h, in_.h);
    for (int ox = 0; ox < out_.w; ++ox) {
      float* out = out_row + size_t(ox) * stride;
      const int x0 = ox * window_.stride_w - window_.pad.left;
      const taps cols = window_taps(x0, window_.kernel_w, window_.dilation_w, in_.w);
      size_t ch = 0;
      for (; ch + 4 * lanes <= c; ch += 4 * lanes) channel_vectors<V, 4>(image, out, ch, y0, x0, rows, cols);
      for (; ch + lanes <= c; ch += lanes) channel_vectors<V, 1>(image, out, ch, y0, x0, rows, cols);
      for (; ch < c; ++ch) {
        float a = bias_[ch];
        for (int ky = rows.first; ky < rows.last; ++ky)
          for (int kx = cols.first; kx < cols.last; ++kx) {
            const size_t pixel = size_t(y0 + ky * window_.dilation_h) * size_t(in_.w) + size_t(x0 + kx * window_.dilation_w);
            a = a + weights_[size_t(ky * window_.kernel_w + kx) * c + ch] * image[pixel * c + ch];
          }
        out[ch] = std::min(std::max(a, act_.min), act_.max);
      }
    }
  }

  template <class V, size_t Count>
  D3_INLINE void channel_vectors(const float* image, float* out, size_t ch, int y0, int x0, const taps& rows,
                                 const taps& cols) const {
    constexpr size_t lanes = sizeof(V) / sizeof(float);
    const size_t c = size_t(in_.c);
    V acc[Count];
    for (size_t v = 0; v < Count; ++v) std::memcpy(&acc[v], &bias_[ch + v * lanes], sizeof(V));
    for (int ky = rows.first; ky < rows.last; ++ky) {
      const size_t iy = size_t(y0 + ky * window_.dilation_h);
      for (int kx = cols.first; kx < cols.last; ++kx) {
        const float* in = image + (iy * size_t(in_.w) + size_t(x0 + kx * window_.dilation_w)) * c + ch;
        const float* wt = &weights_[size_t(ky * window_.kernel_w + kx) * c + ch];
        for (size_t v = 0; v < Count; ++v) {
          V i, w;
          std::memcpy(&i, in + v * lanes, sizeof i);
          std::memcpy(&w, wt + v * lanes, sizeof w);
          acc[v] = acc[v] + w * i;
        }
      }
    }
    for (size_t v = 0; v < Count; ++v) {
      V a = acc[v];
      a = a < splat_as<V>(act_.min) ? splat_as<V>(act_.min) : a;
      a = a > splat_as<V>(act_.max) ? splat_as<V>(act_.max) : a;
      std::memcpy(out + ch + v * lanes, &a, sizeof a);
    }
  }

  std::vector<float> weights_, bias_;
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
  return std::unique_ptr<layer_operator>(new elementwise_operator(l, input, gelu_values));
}

result<std::unique_ptr<layer_operator>> create_tanh_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (!l.weights.empty() || !l.bias.empty()) return status::error("tanh layer '" + l.name + "': takes no weights");
  return std::unique_ptr<layer_operator>(new elementwise_operator(l, input, tanh_values));
}

result<std::unique_ptr<layer_operator>> create_preprocess_operator(const layer& l, const tensor_shape& input) {
  D3_RETURN_IF_ERROR(check_pointwise(l, input));
  if (l.weights.size() != size_t(input.c) || l.bias.size() != size_t(input.c))
    return status::error("preprocess layer '" + l.name + "': mean and std must hold " + std::to_string(input.c) +
                         " floats each");
  return std::unique_ptr<layer_operator>(new preprocess_operator(l, input));
}

// Three IEEE operations in torchvision's order (divide by 255, subtract the mean, divide by the
// std), each rounded to float32: the values PyTorch computes from the same pixels.
void preprocess_rows(const float* x, float* y, size_t pixels, size_t channels, const float* mean, const float* std) {
  for (size_t p = 0; p < pixels; ++p)
    for (size_t c = 0; c < channels; ++c) {
      const float scaled = x[p * channels + c] / 255.0f;
      const float centred = scaled - mean[c];
      y[p * channels + c] = centred / std[c];
    }
}

namespace {

// A depthwise 1x1 convolution: y[p][c] = clamp(x[p][c] * w[c] + b[c]), a multiply then an add
// (XNNPACK's vmulcaddc on x86 computes exactly this, measured bit for bit), then its clamp (maxps,
// minps). Blocks of pixels on the pool.
class channel_affine_operator : public layer_operator {
 public:
  channel_affine_operator(const layer& l, tensor_shape in, size_t out_stride, size_t in_stride)
      : name_(l.name), window_(l.window), act_(l.act), shape_(in), out_stride_(out_stride), in_stride_(in_stride),
        scale_(l.weights.begin(), l.weights.end()) {
    bias_.assign(size_t(in.c), 0.0f);
    if (!l.bias.empty()) std::copy(l.bias.begin(), l.bias.end(), bias_.begin());
  }

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    const size_t pixels = size_t(shape_.n) * shape_.h * shape_.w;
    const size_t block = std::max<size_t>(1, 16384 / size_t(shape_.c));
    pthreadpool_parallelize_1d_tile_1d(
        pool,
        [](void* self, size_t first, size_t count) {
          auto* op = static_cast<channel_affine_operator*>(self);
          if (sixteen_lanes())
            op->rows_avx512(first, count);
          else if (eight_lanes())
            op->rows_avx2(first, count);
          else
            op->rows_with<v4sf>(first, count);
        },
        this, pixels, block, 0);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_convolution_reshape(name_, window_, shape_, shape_, inputs, output));
    shape_ = output;
    return status::ok();
  }

 private:
  __attribute__((target("avx512f"))) void rows_avx512(size_t first, size_t count) { rows_with<v16sf>(first, count); }
  __attribute__((target("avx2"))) void rows_avx2(size_t first, size_t count) { rows_with<v8sf>(first, count); }

  template <class V>
  D3_INLINE void rows_with(size_t first, size_t count) {
    constexpr size_t lanes = sizeof(V) / sizeof(float);
    const size_t c = size_t(shape_.c), stride = out_stride_ ? out_stride_ : c, in_stride = in_stride_ ? in_stride_ : c;
    const V lo = splat_as<V>(act_.min), hi = splat_as<V>(act_.max);
    for (size_t p = first; p < first + count; ++p) {
      const float* x = x_ + p * in_stride;
      float* y = y_ + p * stride;
      size_t ch = 0;
      for (; ch + lanes <= c; ch += lanes) {
        V v, s, b;
        std::memcpy(&v, x + ch, sizeof v);
        std::memcpy(&s, &scale_[ch], sizeof s);
        std::memcpy(&b, &bias_[ch], sizeof b);
        v = v * s + b;
        v = v > lo ? v : lo;  // x86's maxps and minps: the second operand on a tie or a NaN
        v = v < hi ? v : hi;
        std::memcpy(y + ch, &v, sizeof v);
      }
      for (; ch < c; ++ch) {
        float v = x[ch] * scale_[ch] + bias_[ch];
        v = v > act_.min ? v : act_.min;
        y[ch] = v < act_.max ? v : act_.max;
      }
    }
  }

  std::string name_;
  window_params window_;  // 1x1, stride 1, no padding
  activation act_;
  tensor_shape shape_;
  size_t out_stride_;
  size_t in_stride_;  // floats between input pixels: a prefix of a wider concat's buffer (0: dense)
  std::vector<float> scale_, bias_;
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

}  // namespace

bool channel_affine_runs_natively(const layer& l, const tensor_shape& input) {
  const window_params& w = l.window;
  return l.kind == layer_kind::convolution && l.groups > 1 && l.groups == input.c && l.output_channels == l.groups &&
         w.kernel_h == 1 && w.kernel_w == 1 && w.stride_h == 1 && w.stride_w == 1 && w.pad.top == 0 &&
         w.pad.left == 0 && w.pad.bottom == 0 && w.pad.right == 0 && !xnnpack_convolutions_forced();
}

result<std::unique_ptr<layer_operator>> create_channel_affine_operator(const layer& l, const tensor_shape& input,
                                                                       size_t output_pixel_stride,
                                                                       size_t input_pixel_stride) {
  if (!channel_affine_runs_natively(l, input))
    return status::error("convolution layer '" + l.name + "': not a depthwise 1x1 convolution with stride 1");
  if (l.weights.size() != size_t(input.c) || (!l.bias.empty() && l.bias.size() != size_t(input.c)))
    return status::error("convolution layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats, expected " + std::to_string(input.c));
  if (l.output_shape != input)
    return status::error("convolution layer '" + l.name + "': output shape " + l.output_shape.to_string() +
                         " differs from its input " + input.to_string());
  if (input_pixel_stride != 0 && input_pixel_stride < size_t(input.c))
    return status::error("convolution layer '" + l.name + "': input pixel stride " + std::to_string(input_pixel_stride) +
                         " is below its " + std::to_string(input.c) + " channels");
  return std::unique_ptr<layer_operator>(new channel_affine_operator(l, input, output_pixel_stride, input_pixel_stride));
}

status depthwise_rows_operator::setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) {
  x_ = inputs.at(0);
  y_ = output;
  return status::ok();
}

status depthwise_rows_operator::run(pthreadpool_t pool) {
  pthreadpool_parallelize_1d(
      pool, [](void* self, size_t row) { static_cast<depthwise_rows_operator*>(self)->compute_row(row); }, this,
      size_t(out_.n) * out_.h, 0);
  return status::ok();
}

status depthwise_rows_operator::reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) {
  D3_RETURN_IF_ERROR(check_convolution_reshape(name_, window_, in_, out_, inputs, output));
  in_ = inputs[0];
  out_ = output;
  return status::ok();
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

namespace {

// Multi-head attention, one task per (batch, window, head): scores of query row i against every
// key of its window (dot products over the head's channels, in vectors), plus the layer's score
// addend if any, softmax, then the weighted sum of the values. Plain attention is one window of
// all H x W tokens; window_attention tiles the map into windows of kernel_h x kernel_w pixels.
// Deterministic: every value is computed by one task in a fixed order.
class attention_operator : public layer_operator {
 public:
  attention_operator(const layer& l, tensor_shape s)
      : name_(l.name), heads_(size_t(l.groups)), scale_(l.scale), s_(s), addend_(l.weights),
        window_h_(l.kind == layer_kind::window_attention ? size_t(l.window.kernel_h) : 0),
        window_w_(l.kind == layer_kind::window_attention ? size_t(l.window.kernel_w) : 0),
        dilation_h_(size_t(std::max(1, l.window.dilation_h))), dilation_w_(size_t(std::max(1, l.window.dilation_w))) {}

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    q_ = inputs.at(0);
    k_ = inputs.at(1);
    v_ = inputs.at(2);
    y_ = output;
    scores_.assign(tasks() * padded_tokens(), 0.0f);  // one row of scores per task
    keys_.assign(tasks() * head_channels() * padded_tokens(), 0.0f);  // [task][e][j]
    // Each window's token j at pixel offsets_[window * tokens + j] of the map (no divisions in
    // the inner loops).
    offsets_.resize(windows() * tokens());
    for (size_t w = 0; w < windows(); ++w)
      for (size_t j = 0; j < tokens(); ++j) offsets_[w * tokens() + j] = pixel(w, j) * size_t(s_.c);
    return status::ok();
  }
  status run(pthreadpool_t pool) override {
    pthreadpool_parallelize_1d(
        pool, [](void* self, size_t task) { static_cast<attention_operator*>(self)->head(task); }, this, tasks(), 0);
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    if (inputs.size() != 3 || inputs[0] != output || inputs[1] != output || inputs[2] != output || output.c != s_.c ||
        (window_h_ && (output.h % int(window_h_ * dilation_h_) != 0 || output.w % int(window_w_ * dilation_w_) != 0)))
      return status::error("attention layer '" + name_ + "': cannot reshape to output " + output.to_string());
    s_ = output;
    return status::ok();
  }

 private:
  size_t pixels() const { return size_t(s_.h) * s_.w; }
  size_t tokens() const { return window_h_ ? window_h_ * window_w_ : pixels(); }
  size_t windows() const { return window_h_ ? pixels() / tokens() : 1; }
  size_t tasks() const { return size_t(s_.n) * windows() * heads_; }
  // Keys rounded up to whole 16-lane vectors: the transposed keys' rows and the scores' length.
  size_t padded_tokens() const { return (tokens() + 15) / 16 * 16; }
  size_t head_channels() const { return size_t(s_.c) / heads_; }
  // The pixel (index into H x W) of token j of window `window`: windows in row-major order of
  // (block row, row phase) x (block column, column phase), a block spanning window x dilation
  // pixels.
  size_t pixel(size_t window, size_t j) const {
    if (!window_h_) return j;
    const size_t across = size_t(s_.w) / window_w_;  // windows per row of windows
    const size_t wy = window / across, wx = window % across;
    const size_t by = wy / dilation_h_, ay = wy % dilation_h_, bx = wx / dilation_w_, ax = wx % dilation_w_;
    const size_t y = by * window_h_ * dilation_h_ + j / window_w_ * dilation_h_ + ay;
    const size_t x = bx * window_w_ * dilation_w_ + j % window_w_ * dilation_w_ + ax;
    return y * size_t(s_.w) + x;
  }

  void head(size_t task) {
    if (sixteen_lanes())
      head_avx512(task);
    else if (eight_lanes())
      head_avx2(task);
    else
      head_with<v4sf>(task);
  }

  __attribute__((target("avx512f"))) void head_avx512(size_t task) { head_with<v16sf>(task); }
  __attribute__((target("avx2"))) void head_avx2(size_t task) { head_with<v8sf>(task); }

  // Scores of query i against every key, one key per lane: each lane computes what the dot
  // product of four partial sums computes (lane r of four sums the terms e = r mod 4, in order;
  // then ((s0 + s1) + (s2 + s3)); then the tail terms in order), so the width does not change a
  // bit. The keys are transposed per task ([e][j]) so that a lane's terms load as vectors.
  template <class V>
  D3_INLINE void head_with(size_t task) {
    constexpr size_t lanes = sizeof(V) / sizeof(float);
    const size_t h = task % heads_, window = task / heads_ % windows(), n = task / heads_ / windows();
    const size_t t = tokens(), tp = padded_tokens();
    const size_t d = head_channels(), d4 = d / 4 * 4;
    float* p = &scores_[task * tp];
    float* kt = &keys_[task * d * tp];
    const size_t base = n * pixels() * size_t(s_.c) + h * d;
    const float* q = q_ + base;
    const float* k = k_ + base;
    const float* v = v_ + base;
    float* y = y_ + base;
    // The addend of this window and head: [t][t] (one table for all windows, or one per window).
    const float* addend = nullptr;
    if (!addend_.empty()) {
      const size_t per_window = heads_ * t * t;
      addend = addend_.data() + (addend_.size() == per_window ? 0 : window * per_window) + h * t * t;
    }
    const size_t* at = &offsets_[window * t];
    for (size_t j = 0; j < t; ++j) {
      const float* kj = k + at[j];
      for (size_t e = 0; e < d; ++e) kt[e * tp + j] = kj[e];
    }
    for (size_t i = 0; i < t; ++i) {
      const float* qi = q + at[i];
      // Two vectors of keys at a time (eight independent sums: the adds' latency overlaps), then
      // the last one; each lane's sum is the same either way.
      size_t j = 0;
      for (; j + 2 * lanes <= tp; j += 2 * lanes) {
        V s0 = splat_as<V>(0.0f), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
        for (size_t e = 0; e < d4; e += 4) {
          const float* k0 = kt + e * tp + j;
          const V q0 = splat_as<V>(qi[e]), q1 = splat_as<V>(qi[e + 1]), q2 = splat_as<V>(qi[e + 2]),
                  q3 = splat_as<V>(qi[e + 3]);
          s0 = s0 + q0 * load<V>(k0);
          u0 = u0 + q0 * load<V>(k0 + lanes);
          s1 = s1 + q1 * load<V>(k0 + tp);
          u1 = u1 + q1 * load<V>(k0 + tp + lanes);
          s2 = s2 + q2 * load<V>(k0 + 2 * tp);
          u2 = u2 + q2 * load<V>(k0 + 2 * tp + lanes);
          s3 = s3 + q3 * load<V>(k0 + 3 * tp);
          u3 = u3 + q3 * load<V>(k0 + 3 * tp + lanes);
        }
        V sum = (s0 + s1) + (s2 + s3), sum2 = (u0 + u1) + (u2 + u3);
        for (size_t e = d4; e < d; ++e) {
          sum = sum + splat_as<V>(qi[e]) * load<V>(kt + e * tp + j);
          sum2 = sum2 + splat_as<V>(qi[e]) * load<V>(kt + e * tp + j + lanes);
        }
        sum = sum * splat_as<V>(scale_);
        sum2 = sum2 * splat_as<V>(scale_);
        std::memcpy(p + j, &sum, sizeof sum);
        std::memcpy(p + j + lanes, &sum2, sizeof sum2);
      }
      for (; j < tp; j += lanes) {
        V s0 = splat_as<V>(0.0f), s1 = s0, s2 = s0, s3 = s0;
        for (size_t e = 0; e < d4; e += 4) {
          s0 = s0 + splat_as<V>(qi[e]) * load<V>(kt + e * tp + j);
          s1 = s1 + splat_as<V>(qi[e + 1]) * load<V>(kt + (e + 1) * tp + j);
          s2 = s2 + splat_as<V>(qi[e + 2]) * load<V>(kt + (e + 2) * tp + j);
          s3 = s3 + splat_as<V>(qi[e + 3]) * load<V>(kt + (e + 3) * tp + j);
        }
        V sum = (s0 + s1) + (s2 + s3);
        for (size_t e = d4; e < d; ++e) sum = sum + splat_as<V>(qi[e]) * load<V>(kt + e * tp + j);
        sum = sum * splat_as<V>(scale_);
        std::memcpy(p + j, &sum, sizeof sum);
      }
      if (addend)
        for (size_t j = 0; j < t; ++j) p[j] += addend[i * t + j];
      float max = -INFINITY;
      for (size_t j = 0; j < t; ++j) max = std::max(max, p[j]);
      // e^(s - max) a vector at a time (the padded keys' lanes are computed and ignored).
      for (size_t j = 0; j < tp; j += lanes) {
        const V e = exp_vector(load<V>(p + j) - splat_as<V>(max));
        std::memcpy(p + j, &e, sizeof e);
      }
      float total = 0.0f;
      for (size_t j = 0; j < t; ++j) total += p[j];
      const float inv = 1.0f / total;
      for (size_t j = 0; j < t; ++j) p[j] *= inv;
      // y_i = sum over j in order of p_j v_j, from 0: four vectors of channels at a time in
      // registers (not a load, add and store per key), then single vectors, then the tail.
      float* yi = y + at[i];
      size_t e = 0;
      for (; e + 4 * lanes <= d; e += 4 * lanes) {
        V y0 = splat_as<V>(0.0f), y1 = y0, y2 = y0, y3 = y0;
        for (size_t j = 0; j < t; ++j) {
          const V a = splat_as<V>(p[j]);
          const float* vj = v + at[j] + e;
          y0 = y0 + a * load<V>(vj);
          y1 = y1 + a * load<V>(vj + lanes);
          y2 = y2 + a * load<V>(vj + 2 * lanes);
          y3 = y3 + a * load<V>(vj + 3 * lanes);
        }
        std::memcpy(yi + e, &y0, sizeof y0);
        std::memcpy(yi + e + lanes, &y1, sizeof y1);
        std::memcpy(yi + e + 2 * lanes, &y2, sizeof y2);
        std::memcpy(yi + e + 3 * lanes, &y3, sizeof y3);
      }
      for (; e + lanes <= d; e += lanes) {
        V acc = splat_as<V>(0.0f);
        for (size_t j = 0; j < t; ++j) acc = acc + splat_as<V>(p[j]) * load<V>(v + at[j] + e);
        std::memcpy(yi + e, &acc, sizeof acc);
      }
      for (; e < d; ++e) {
        float acc = 0.0f;
        for (size_t j = 0; j < t; ++j) acc += p[j] * v[at[j] + e];
        yi[e] = acc;
      }
    }
  }

  template <class V>
  static D3_INLINE V load(const float* x) {
    V v;
    std::memcpy(&v, x, sizeof v);
    return v;
  }

  std::string name_;
  size_t heads_;
  float scale_;
  tensor_shape s_;
  weight_blob addend_;
  size_t window_h_, window_w_;  // 0: one window of all tokens
  size_t dilation_h_, dilation_w_;
  const float *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  float* y_ = nullptr;
  std::vector<float> scores_, keys_;
  std::vector<size_t> offsets_;
};

// Copies and additions of token tensors and maps (Swin's roll and strided slices),
// single-threaded (memory-bound and small).
class token_copy_operator : public layer_operator {
 public:
  token_copy_operator(const layer& l, tensor_shape in)
      : name_(l.name), kind_(l.kind), weights_(l.weights), row_begin_(l.row_begin), row_end_(l.row_end),
        col_begin_(l.col_begin), stride_h_(l.window.stride_h), stride_w_(l.window.stride_w), in_(in),
        out_(l.output_shape) {}

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }
  status run(pthreadpool_t) override {
    const size_t c = size_t(in_.c);
    switch (kind_) {
      case layer_kind::prepend_tokens: {
        const size_t prefix = weights_.size(), tokens = size_t(in_.h) * in_.w * c;
        for (size_t n = 0; n < size_t(in_.n); ++n) {
          float* out = y_ + n * (prefix + tokens);
          std::memcpy(out, weights_.data(), prefix * sizeof(float));
          std::memcpy(out + prefix, x_ + n * tokens, tokens * sizeof(float));
        }
        break;
      }
      case layer_kind::constant_add:
        for (size_t i = 0; i < in_.elements(); ++i) y_[i] = x_[i] + weights_.data()[i];
        break;
      case layer_kind::roll: {
        const size_t h = size_t(in_.h), w = size_t(in_.w), first = size_t(col_begin_);
        for (size_t n = 0; n < size_t(in_.n); ++n)
          for (size_t y = 0; y < h; ++y) {
            const float* src = x_ + ((n * h + (y + size_t(row_begin_)) % h) * w) * c;
            float* dst = y_ + ((n * h + y) * w) * c;
            std::memcpy(dst, src + first * c, (w - first) * c * sizeof(float));
            std::memcpy(dst + (w - first) * c, src, first * c * sizeof(float));
          }
        break;
      }
      case layer_kind::spatial_slice:
        for (size_t n = 0; n < size_t(out_.n); ++n)
          for (size_t y = 0; y < size_t(out_.h); ++y)
            for (size_t x = 0; x < size_t(out_.w); ++x) {
              const size_t sy = size_t(row_begin_) + y * size_t(stride_h_);
              const size_t sx = size_t(col_begin_) + x * size_t(stride_w_);
              std::memcpy(y_ + ((n * size_t(out_.h) + y) * size_t(out_.w) + x) * c,
                          x_ + ((n * size_t(in_.h) + sy) * size_t(in_.w) + sx) * c, c * sizeof(float));
            }
        break;
      default: {  // row_slice
        const size_t row = size_t(in_.w) * c, rows = size_t(row_end_ - row_begin_);
        for (size_t n = 0; n < size_t(in_.n); ++n)
          std::memcpy(y_ + n * rows * row, x_ + (n * size_t(in_.h) + size_t(row_begin_)) * row, rows * row * sizeof(float));
        break;
      }
    }
    return status::ok();
  }
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    if (inputs.size() != 1 || inputs[0] != in_ || output != out_)
      return status::error(std::string(to_string(kind_)) + " layer '" + name_ + "': token layers are not tiled");
    return status::ok();
  }

 private:
  std::string name_;
  layer_kind kind_;
  weight_blob weights_;
  int row_begin_, row_end_, col_begin_, stride_h_, stride_w_;
  tensor_shape in_, out_;
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

}  // namespace

result<std::unique_ptr<layer_operator>> create_token_operator(const layer& l, const std::vector<tensor_shape>& inputs) {
  tensor_shape out;
  D3_RETURN_IF_ERROR(infer_layer_shape(l, inputs, out));
  if (out != l.output_shape)
    return status::error(std::string(to_string(l.kind)) + " layer '" + l.name + "': output shape " +
                         l.output_shape.to_string() + " does not follow from its inputs (expected " + out.to_string() + ")");
  if (l.kind == layer_kind::attention || l.kind == layer_kind::window_attention)
    return std::unique_ptr<layer_operator>(new attention_operator(l, inputs[0]));
  return std::unique_ptr<layer_operator>(new token_copy_operator(l, inputs[0]));
}

}  // namespace d3
