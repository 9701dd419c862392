#include "kernels/pointwise_gemm.hpp"

// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_ps(), which -Wuninitialized
// reports (GCC bug 105593) once per instantiation.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <pthreadpool.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>

#include "kernels/cpu_features.hpp"
#include "kernels/memory.hpp"

namespace d3 {

namespace {

constexpr size_t panel_width = 32;  // output channels per packed weight panel (two vectors)
constexpr size_t block_rows = 12;   // pixels per kernel call: 24 accumulators of 32 registers
// Pixels per task: as many as keep the task's input rows within about 192 KB of L2, so that each
// weight panel, streamed once per task, meets its rows in cache (at least one block).
constexpr size_t task_input_bytes = size_t(192) << 10;

// out[r][j] = clamp(bias[j] + sum over k in order of x[r][k] * w[k][j]), r < Rows, j < 32 (the
// stored columns: `columns` of them, the rest of a partial last panel masked off). One FMA per k
// into an accumulator that starts at the bias: XNNPACK's order (see the header).
template <size_t Rows>
__attribute__((target("avx512f"))) void gemm_block(size_t k_count, const float* x, size_t x_stride,
                                                   const float* panel, const float* bias, float* y, size_t y_stride,
                                                   __mmask16 mask0, __mmask16 mask1, float lo, float hi) {
  __m512 acc0[Rows], acc1[Rows];
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
#pragma GCC unroll 12
  for (size_t r = 0; r < Rows; ++r) {
    acc0[r] = b0;
    acc1[r] = b1;
  }
  for (size_t k = 0; k < k_count; ++k) {
    const __m512 w0 = _mm512_load_ps(panel + k * panel_width);
    const __m512 w1 = _mm512_load_ps(panel + k * panel_width + 16);
#pragma GCC unroll 12
    for (size_t r = 0; r < Rows; ++r) {
      const __m512 v = _mm512_set1_ps(x[r * x_stride + k]);
      acc0[r] = _mm512_fmadd_ps(v, w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(v, w1, acc1[r]);
    }
  }
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
#pragma GCC unroll 12
  for (size_t r = 0; r < Rows; ++r) {
    _mm512_mask_storeu_ps(y + r * y_stride, mask0, _mm512_min_ps(_mm512_max_ps(acc0[r], vlo), vhi));
    _mm512_mask_storeu_ps(y + r * y_stride + 16, mask1, _mm512_min_ps(_mm512_max_ps(acc1[r], vlo), vhi));
  }
}

using block_fn = void (*)(size_t, const float*, size_t, const float*, const float*, float*, size_t, __mmask16,
                          __mmask16, float, float);

template <size_t... Rows>
constexpr std::array<block_fn, sizeof...(Rows)> block_table(std::index_sequence<Rows...>) {
  return {&gemm_block<Rows + 1>...};
}

// block_kernels[r - 1] computes r rows (1 <= r <= block_rows).
constexpr std::array<block_fn, block_rows> block_kernels = block_table(std::make_index_sequence<block_rows>());

bool xnnpack_forced() {
  const char* v = std::getenv("D3_POINTWISE");
  return v != nullptr && std::string(v) == "xnnpack";
}

// Pixels x input channels (dense rows) times the packed weights into pixels x output channels
// (rows `out_stride` floats apart). Tasks are (pixel chunk, panel) pairs on the pool.
class pointwise_operator : public layer_operator {
 public:
  pointwise_operator(const layer& l, const tensor_shape& in, size_t out_stride)
      : name_(l.name), act_(l.act), in_(in), out_(l.output_shape), out_stride_(out_stride) {
    const size_t k = size_t(in.c), n = size_t(l.output_channels);
    panels_ = (n + panel_width - 1) / panel_width;
    const size_t floats = panels_ * k * panel_width;
    packed_.reset(static_cast<float*>(allocate_aligned(64, floats * sizeof(float))));
    std::memset(packed_.get(), 0, floats * sizeof(float));
    const float* w = l.weights.data();  // OHWI with a 1x1 window: [out][in]
    for (size_t j = 0; j < n; ++j)
      for (size_t kk = 0; kk < k; ++kk)
        packed_.get()[((j / panel_width) * k + kk) * panel_width + j % panel_width] = w[j * k + kk];
    bias_.assign(panels_ * panel_width, 0.0f);
    if (!l.bias.empty()) std::copy(l.bias.begin(), l.bias.end(), bias_.begin());
  }

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    return status::ok();
  }

  status run(pthreadpool_t pool) override {
    const size_t pixels = size_t(in_.n) * in_.h * in_.w;
    if (pixels == 0) return status::ok();
    const size_t chunk = chunk_rows();
    pthreadpool_parallelize_2d(
        pool,
        [](void* self, size_t c, size_t p) { static_cast<pointwise_operator*>(self)->compute(c, p); }, this,
        (pixels + chunk - 1) / chunk, panels_, 0);
    return status::ok();
  }

  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    if (inputs.size() != 1 || inputs[0].c != in_.c || output.c != out_.c || inputs[0].n != output.n ||
        inputs[0].h != output.h || inputs[0].w != output.w)
      return status::error("convolution layer '" + name_ + "': cannot reshape a 1x1 convolution to input " +
                           (inputs.empty() ? std::string("none") : inputs[0].to_string()) + " and output " +
                           output.to_string() + " (the same pixels in and out, channels fixed at create)");
    in_ = inputs[0];
    out_ = output;
    return status::ok();
  }

 private:
  struct free_deleter {
    void operator()(float* p) const { std::free(p); }
  };

  size_t chunk_rows() const {
    const size_t rows = task_input_bytes / (size_t(in_.c) * sizeof(float)) / block_rows * block_rows;
    return std::max(rows, block_rows);
  }

  void compute(size_t chunk_index, size_t panel) {
    const size_t k = size_t(in_.c), n = size_t(out_.c);
    const size_t stride = out_stride_ ? out_stride_ : n;
    const size_t pixels = size_t(in_.n) * in_.h * in_.w;
    const size_t chunk = chunk_rows();
    const size_t first = chunk_index * chunk, last = std::min(pixels, first + chunk);
    const size_t column = panel * panel_width;
    const size_t columns = std::min(panel_width, n - column);
    const __mmask16 mask0 = __mmask16(columns >= 16 ? 0xFFFF : (1u << columns) - 1);
    const __mmask16 mask1 = __mmask16(columns >= 32 ? 0xFFFF : columns <= 16 ? 0 : (1u << (columns - 16)) - 1);
    const float* w = packed_.get() + panel * k * panel_width;
    for (size_t row = first; row < last; row += block_rows) {
      const size_t rows = std::min(block_rows, last - row);
      block_kernels[rows - 1](k, x_ + row * k, k, w, bias_.data() + column, y_ + row * stride + column, stride, mask0,
                              mask1, act_.min, act_.max);
    }
  }

  std::string name_;
  activation act_;
  tensor_shape in_, out_;
  size_t out_stride_;
  size_t panels_ = 0;
  std::unique_ptr<float, free_deleter> packed_;  // [panel][k][32], zero past the last channel
  std::vector<float> bias_;                      // panels x 32, zero past the last channel
  const float* x_ = nullptr;
  float* y_ = nullptr;
};

}  // namespace

bool pointwise_runs_natively(const layer& l, const tensor_shape& input) {
  const window_params& w = l.window;
  return l.kind == layer_kind::convolution && l.groups == 1 && w.kernel_h == 1 && w.kernel_w == 1 &&
         w.stride_h == 1 && w.stride_w == 1 && w.pad.top == 0 && w.pad.left == 0 && w.pad.bottom == 0 &&
         w.pad.right == 0 && input.c > 0 && l.output_channels > 0 && cpu_has_avx512f() && !xnnpack_forced();
}

result<std::unique_ptr<layer_operator>> create_pointwise_operator(const layer& l, const tensor_shape& input,
                                                                  size_t output_pixel_stride) {
  if (!pointwise_runs_natively(l, input))
    return status::error("convolution layer '" + l.name +
                         "': not a 1x1 convolution with stride 1, no padding and one group on an AVX-512 CPU");
  const size_t k = size_t(input.c), n = size_t(l.output_channels);
  if (l.weights.size() != k * n || (!l.bias.empty() && l.bias.size() != n))
    return status::error("convolution layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats and bias " + std::to_string(l.bias.size()) + ", expected " + std::to_string(k * n) +
                         " and " + std::to_string(n));
  if (l.output_shape.h != input.h || l.output_shape.w != input.w || l.output_shape.n != input.n ||
      l.output_shape.c != l.output_channels)
    return status::error("convolution layer '" + l.name + "': output shape " + l.output_shape.to_string() +
                         " does not follow from input " + input.to_string());
  return std::unique_ptr<layer_operator>(new pointwise_operator(l, input, output_pixel_stride));
}

}  // namespace d3
