#include "kernels/depthwise_convolution.hpp"

// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_ps(), which
// -W(maybe-)uninitialized reports (GCC bug 105593) where they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC's name; clang has no such group
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <pthreadpool.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/cpu_features.hpp"
#include "kernels/native_operators.hpp"

namespace d3 {

namespace {

constexpr int max_taps = 25;  // XNNPACK's largest depthwise kernel; beyond, native_operators' loop

// What the AVX-512 and the AVX2 loops share: the taps in XNNPACK's order, the weights as
// [tap][channel] rows of whole vectors, and where each tap of a row's pixels reads (plain pointer
// arithmetic, no vector code, so that both widths' loops inline it).
class fma_depthwise_base : public depthwise_rows_operator {
 protected:
  // `lanes`: floats per vector; the weight rows, the bias and the zero rows are padded to whole
  // vectors, so a vector load past the last channel reads zeros, never past the buffer.
  fma_depthwise_base(const layer& l, tensor_shape in, size_t out_stride, size_t lanes)
      : depthwise_rows_operator(l, in, out_stride) {
    const size_t c = size_t(in.c);
    const int kh = window_.kernel_h, kw = window_.kernel_w;
    taps_ = kh * kw;
    padded_ = (c + lanes - 1) / lanes * lanes;
    // XNNPACK's order of the taps: its depthwise kernels (3, 4, 9 and 25 taps) take them column by
    // column, row by row within a column; any other window runs on its IGEMM, row by row.
    const bool by_column = taps_ == 3 || taps_ == 4 || taps_ == 9 || taps_ == 25;
    for (int t = 0; t < taps_; ++t) {
      tap_y_[t] = by_column ? t % kh : t / kw;
      tap_x_[t] = by_column ? t / kh : t % kw;
    }
    // d3's OHWI weights with one input channel per group are [C][kh][kw]; the loop reads tap t as
    // row t of padded_ floats.
    weights_.assign(size_t(taps_) * padded_, 0.0f);
    for (size_t ch = 0; ch < c; ++ch)
      for (int t = 0; t < taps_; ++t)
        weights_[size_t(t) * padded_ + ch] = l.weights.data()[(ch * size_t(kh) + size_t(tap_y_[t])) * size_t(kw) + size_t(tap_x_[t])];
    bias_.assign(padded_, 0.0f);
    if (!l.bias.empty()) std::copy(l.bias.begin(), l.bias.end(), bias_.begin());
    zero_.assign(padded_, 0.0f);
    zero_row_.assign(size_t(in.w) * c + padded_, 0.0f);
  }

  // A band or tile of another width reads a zero row of its own width over padding rows.
  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(depthwise_rows_operator::reshape(inputs, output));
    zero_row_.assign(size_t(in_.w) * size_t(in_.c) + padded_, 0.0f);
    return status::ok();
  }

  // Where an interior group's taps read: pixel p of the group at `first`, tap t reads row[t] +
  // first * pixel_step + offset[t] + p * pixel_step (a padding row reads zero_row_, as wide as an
  // input row).
  struct interior_taps {
    const float* row[max_taps];
    ptrdiff_t offset[max_taps];
    ptrdiff_t pixel_step;
  };

  // The four pixels' pointers of tap t (plus a channel offset) in a group: an interior group's
  // from its taps' rows and offsets (`at`: its first pixel's offset in a row), a border group's
  // from its table.
  struct interior_pixels {
    const interior_taps* taps;
    ptrdiff_t at;
    __attribute__((always_inline)) inline void get(int t, const float* (&p)[4]) const {
      const ptrdiff_t s = taps->pixel_step;
      p[0] = taps->row[t] + (at + taps->offset[t]);
      p[1] = p[0] + s;
      p[2] = p[0] + 2 * s;
      p[3] = p[0] + 3 * s;
    }
  };
  struct border_pixels {
    const float* const (*quad)[max_taps];
    __attribute__((always_inline)) inline void get(int t, const float* (&p)[4]) const {
      for (int k = 0; k < 4; ++k) p[k] = quad[k][t];
    }
  };

  // Where the taps of one output row read.
  struct row_plan {
    const float* rows[max_taps];  // the input row of each tap, or null over padding
    interior_taps taps;
    int inner_begin = 0, inner_end = 0;  // output columns whose window columns all lie inside the input
    float* out_row = nullptr;
    size_t stride = 0;  // floats between output pixels
  };

  // Row `row` of the n * out_.h output rows.
  void plan_row(size_t row, row_plan& p) const {
    const size_t c = size_t(in_.c);
    p.stride = out_stride_ ? out_stride_ : c;
    const int kw = window_.kernel_w, dw = window_.dilation_w, sw = window_.stride_w;
    const int n = int(row / size_t(out_.h)), oy = int(row % size_t(out_.h));
    const float* image = x_ + size_t(n) * in_.h * in_.w * c;
    p.out_row = y_ + (size_t(n) * out_.h + size_t(oy)) * out_.w * p.stride;
    for (int t = 0; t < taps_; ++t) {
      const int iy = oy * window_.stride_h - window_.pad.top + tap_y_[t] * window_.dilation_h;
      p.rows[t] = iy >= 0 && iy < in_.h ? image + size_t(iy) * in_.w * c : nullptr;
    }
    const int span = (kw - 1) * dw, left = window_.pad.left;
    p.inner_begin = std::min(out_.w, (left + sw - 1) / sw);
    p.inner_end = std::max(p.inner_begin, std::min(out_.w, (in_.w - span + left + sw - 1) / sw));
    p.taps.pixel_step = ptrdiff_t(sw) * ptrdiff_t(c);
    for (int t = 0; t < taps_; ++t) {
      p.taps.row[t] = p.rows[t] ? p.rows[t] : zero_row_.data();
      p.taps.offset[t] = ptrdiff_t(tap_x_[t] * dw - left) * ptrdiff_t(c);
    }
  }

  // The groups of four output pixels of a row, from the left; the last one may overlap the one
  // before it (its pixels get the same values again). Precondition: out_.w >= 4.
  int group_start(int ox) const { return std::min(ox, out_.w - 4); }
  bool interior_group(const row_plan& p, int first) const {
    return first >= p.inner_begin && first + 4 <= p.inner_end;
  }

  // Each tap's pointer for `count` pixels from output column `first`: the input, or zeros over
  // padding.
  void border_pointers(const row_plan& p, int first, int count, const float* (*ptr)[max_taps]) const {
    const size_t c = size_t(in_.c);
    const int x0 = first * window_.stride_w - window_.pad.left;
    for (int q = 0; q < count; ++q)
      for (int t = 0; t < taps_; ++t) {
        const int ix = x0 + q * window_.stride_w + tap_x_[t] * window_.dilation_w;
        ptr[q][t] = p.rows[t] && ix >= 0 && ix < in_.w ? p.rows[t] + size_t(ix) * c : zero_.data();
      }
  }

  size_t padded_ = 0;  // channels rounded up to whole vectors
  int taps_ = 0;
  int tap_y_[max_taps], tap_x_[max_taps];  // the window position of each tap, in XNNPACK's order
  std::vector<float> weights_, bias_;
  std::vector<float> zero_;      // padded_ zeros: what a tap over padding reads (border groups)
  std::vector<float> zero_row_;  // an input row of zeros and padded_ more: a padding row (interior groups)
};

constexpr size_t lanes = 16;

class fma_depthwise_operator : public fma_depthwise_base {
 public:
  fma_depthwise_operator(const layer& l, tensor_shape in, size_t out_stride)
      : fma_depthwise_base(l, in, out_stride, lanes) {
    const window_params& w = window_;
    const bool square = w.kernel_h == w.kernel_w && w.dilation_h == 1 && w.dilation_w == 1;
    const int k = w.kernel_w, s = w.stride_w;
    if (square && k == 3 && s == 1) slide_ = &fma_depthwise_operator::slide_row<3, 1, 8>, slide_pixels_ = 8;
    if (square && k == 3 && s == 2) slide_ = &fma_depthwise_operator::slide_row<3, 2, 8>, slide_pixels_ = 8;
    if (square && k == 5 && s == 1) slide_ = &fma_depthwise_operator::slide_row<5, 1, 5>, slide_pixels_ = 5;
    if (square && k == 5 && s == 2) slide_ = &fma_depthwise_operator::slide_row<5, 2, 4>, slide_pixels_ = 4;
  }

 private:
  // Whole groups of slide_pixels_ columns of a row's interior by a window sliding along it (3x3
  // and 5x5 windows, strides 1 and 2, no dilation); the rest of the row as below.
  using slide_fn = void (fma_depthwise_operator::*)(const row_plan&, int, int, size_t, __mmask16) const;
  slide_fn slide_ = nullptr;
  int slide_pixels_ = 0;

  // One output row. Every tap reads through a pointer, to the input or to zeros over padding (as
  // XNNPACK's indirection buffer does), so the tap loop has no branches. Four output pixels at a
  // time (independent sums per channel vector hide the FMA latency, each weight vector loads once
  // for the four), all channels of a group before the next group, one pixel at a time only on
  // maps narrower than four. An interior group (its window columns all inside the input) reads
  // each tap at its row's pointer plus a fixed offset, without the 4 x taps pointers a border
  // group sets up (at 32 channels, most of the work: MNASNet's first depthwise layer 0.173 ->
  // 0.134 ms). Tried and dropped: all groups of a row per channel pair (worse for 48 channels at
  // stride 2, the same at 1152 channels), and tasks of four channel vectors over all rows (40%
  // slower at 7x7 with 1152 channels: every row of every chunk sets its border pointers up again).
  __attribute__((target("avx512f"))) void compute_row(size_t row) override {
    row_plan p;
    plan_row(row, p);
    const size_t c = size_t(in_.c);
    const size_t full = c / lanes;  // whole vectors; vector `full` is the masked tail if any
    const __mmask16 tail = __mmask16((1u << (c % lanes)) - 1);
    const float* quad[4][max_taps];  // per pixel of a border group and tap
    // The sliding window takes the interior from the first multiple of four, so that the groups
    // of four before it tile the left border without overlap, and as many whole groups as fit;
    // the groups of four below take the rest (at 7 columns, all: two groups).
    int slid_begin = 0, slid_end = 0;
    if (slide_ != nullptr) {
      const int begin = (p.inner_begin + 3) / 4 * 4;
      const int groups = begin < p.inner_end ? (p.inner_end - begin) / slide_pixels_ : 0;
      if (groups > 0) {
        (this->*slide_)(p, begin, groups, full, tail);
        slid_begin = begin;
        slid_end = begin + groups * slide_pixels_;
      }
    }
    for (int ox = 0; ox < out_.w && out_.w >= 4;) {
      if (ox >= slid_begin && ox < slid_end) ox = slid_end;
      if (ox >= out_.w) break;
      const int first = group_start(ox);
      float* out = p.out_row + size_t(first) * p.stride;
      ox = first + 4;
      if (interior_group(p, first)) {
        group(out, p.stride, interior_pixels{&p.taps, ptrdiff_t(first) * p.taps.pixel_step}, full, tail);
        continue;
      }
      border_pointers(p, first, 4, quad);
      group(out, p.stride, border_pixels{quad}, full, tail);
    }
    // Maps narrower than four pixels: one at a time.
    for (int ox = 0; ox < out_.w && out_.w < 4; ++ox) {
      const float* ptr[1][max_taps];  // per tap of a lone pixel
      border_pointers(p, ox, 1, ptr);
      float* out = p.out_row + size_t(ox) * p.stride;
      for (size_t v = 0; v < full; ++v) one_pixel<false>(out, v, ptr[0], 0xFFFF);
      if (tail) one_pixel<true>(out, full, ptr[0], tail);
    }
  }

  // Every channel vector of `groups` groups of N output columns from `begin`, all inside the
  // row's interior [inner_begin, inner_end). The loops above load each tap's input
  // once per pixel and a weight vector per tap: 1.25 loads per FMA, which bound them (MNASNet's
  // 5x5 layers at 28x28 ran at 0.09 ms against ONNX Runtime's 0.057). Here a channel vector's K x K
  // weights stay in registers for the whole row, and each input column of a group loads once for
  // every pixel whose window covers it: window column kx of pixel q reads the group's input column
  // j = q * S + kx. Going through j in order and the window rows ky within each j, pixel q meets
  // its taps column by column, row by row within a column: XNNPACK's order (the taps' order of
  // weights_ for these windows), one FMA each from the bias, so the same bits as the loops above.
  // 5x5: 5 pixels at stride 1 (25 weights, 5 sums and an input fill 31 of the 32 vector
  // registers; 0.36 loads per FMA, and five FMA chains instead of four: MNASNet's 28x28 layers
  // 0.067 -> 0.063 ms), 4 at stride 2 (five measured no faster); 3x3: 8 pixels, 0.42-0.71 loads per
  // FMA (12 measured 4x slower: GCC no longer unrolled the pixels and kept the sums in memory).
  template <int K, int S, int N>
  __attribute__((target("avx512f"))) void slide_row(const row_plan& p, int begin, int groups, size_t full,
                                                    __mmask16 tail) const {
    for (size_t v = 0; v < full; ++v) slide_vector<K, S, N, false>(p, begin, groups, v, 0xFFFF);
    if (tail) slide_vector<K, S, N, true>(p, begin, groups, full, tail);
  }

  template <int K, int S, int N, bool Masked>
  __attribute__((target("avx512f"), always_inline)) inline void slide_vector(const row_plan& p, int begin, int groups,
                                                                             size_t v, __mmask16 m) const {
    const size_t ch = v * lanes, c = size_t(in_.c);
    __m512 w[K * K];  // tap t = kx * K + ky, as weights_
#pragma GCC unroll 25
    for (int t = 0; t < K * K; ++t) w[t] = _mm512_loadu_ps(&weights_[size_t(t) * padded_ + ch]);
    // Window row ky's input row (taps 0..K-1 are window column 0), at window column 0 of output
    // column 0; a padding row is the zero row, which the interior's offsets keep inside.
    const float* rows[K];
#pragma GCC unroll 5
    for (int ky = 0; ky < K; ++ky) rows[ky] = p.taps.row[ky] + p.taps.offset[ky] + ch;
    for (int g = 0; g < groups; ++g) {
      const int first = begin + g * N;
      const ptrdiff_t at = ptrdiff_t(first) * p.taps.pixel_step;
      __m512 acc[N];
#pragma GCC unroll 8
      for (int q = 0; q < N; ++q) acc[q] = _mm512_loadu_ps(&bias_[ch]);
#pragma GCC unroll 32
      for (int j = 0; j < (N - 1) * S + K; ++j) {
#pragma GCC unroll 5
        for (int ky = 0; ky < K; ++ky) {
          const __m512 in = load<Masked>(m, rows[ky] + at + ptrdiff_t(j) * ptrdiff_t(c));
#pragma GCC unroll 8
          for (int q = 0; q < N; ++q) {
            const int kx = j - q * S;
            if (kx >= 0 && kx < K) acc[q] = _mm512_fmadd_ps(in, w[kx * K + ky], acc[q]);
          }
        }
      }
      float* out = p.out_row + size_t(first) * p.stride + ch;
#pragma GCC unroll 8
      for (int q = 0; q < N; ++q) _mm512_mask_storeu_ps(out + size_t(q) * p.stride, m, clamp(acc[q]));
    }
  }

  // Lanes outside `m` are neither read nor written (Masked; otherwise m is all ones).
  template <bool Masked>
  __attribute__((target("avx512f"), always_inline)) static inline __m512 load(__mmask16 m, const float* p) {
    return Masked ? _mm512_maskz_loadu_ps(m, p) : _mm512_loadu_ps(p);
  }

  // All channels of a group of four pixels: pairs of vectors, the last pair's second the masked
  // tail where that makes a pair (eight sums instead of two runs of four, which wait on the FMA
  // latency), then a lone vector if one is left. 3x3 windows with their taps known at compile
  // time.
  template <typename Pixels>
  __attribute__((target("avx512f"), always_inline)) inline void group(float* out, size_t stride, const Pixels& pixels,
                                                                      size_t full, __mmask16 tail) const {
    const size_t vectors = full + (tail ? 1 : 0);
    size_t v = 0;
    for (; v + 2 <= vectors; v += 2) {
      if (v + 1 == full)
        two_vectors<0, true>(out, stride, v, pixels, tail);
      else if (taps_ == 9)
        two_vectors<9, false>(out, stride, v, pixels, 0xFFFF);
      else
        two_vectors<0, false>(out, stride, v, pixels, 0xFFFF);
    }
    if (v < full) one_vector<false>(out, stride, v, pixels, 0xFFFF);
    if (v == full && tail) one_vector<true>(out, stride, v, pixels, tail);
  }

  // Channel vectors v and v + 1 of four pixels: eight sums, each pointer read once for two.
  // Taps: the window's when known at compile time, else taps_. MaskedB: the second vector's lanes
  // outside `mb` are neither read nor written.
  template <int Taps, bool MaskedB, typename Pixels>
  __attribute__((target("avx512f"), always_inline)) inline void two_vectors(float* out, size_t stride, size_t v,
                                                                            const Pixels& pixels, __mmask16 mb) const {
    const size_t ch = v * lanes;
    __m512 a0 = _mm512_loadu_ps(&bias_[ch]), b0 = _mm512_loadu_ps(&bias_[ch + lanes]);
    __m512 a1 = a0, a2 = a0, a3 = a0, b1 = b0, b2 = b0, b3 = b0;
    const int count = Taps > 0 ? Taps : taps_;
    const float* w = &weights_[ch];
    for (int t = 0; t < count; ++t, w += padded_) {
      const __m512 wa = _mm512_loadu_ps(w), wb = _mm512_loadu_ps(w + lanes);
      const float* p[4];
      pixels.get(t, p);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(p[0] + ch), wa, a0);
      b0 = _mm512_fmadd_ps(load<MaskedB>(mb, p[0] + ch + lanes), wb, b0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(p[1] + ch), wa, a1);
      b1 = _mm512_fmadd_ps(load<MaskedB>(mb, p[1] + ch + lanes), wb, b1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(p[2] + ch), wa, a2);
      b2 = _mm512_fmadd_ps(load<MaskedB>(mb, p[2] + ch + lanes), wb, b2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(p[3] + ch), wa, a3);
      b3 = _mm512_fmadd_ps(load<MaskedB>(mb, p[3] + ch + lanes), wb, b3);
    }
    float* o = out + ch;
    _mm512_storeu_ps(o, clamp(a0));
    _mm512_mask_storeu_ps(o + lanes, mb, clamp(b0));
    _mm512_storeu_ps(o + stride, clamp(a1));
    _mm512_mask_storeu_ps(o + stride + lanes, mb, clamp(b1));
    _mm512_storeu_ps(o + 2 * stride, clamp(a2));
    _mm512_mask_storeu_ps(o + 2 * stride + lanes, mb, clamp(b2));
    _mm512_storeu_ps(o + 3 * stride, clamp(a3));
    _mm512_mask_storeu_ps(o + 3 * stride + lanes, mb, clamp(b3));
  }

  // Channel vector v of four pixels, lanes outside `m` neither read nor written (Masked;
  // otherwise m is all ones).
  template <bool Masked, typename Pixels>
  __attribute__((target("avx512f"), always_inline)) inline void one_vector(float* out, size_t stride, size_t v,
                                                                           const Pixels& pixels, __mmask16 m) const {
    const size_t ch = v * lanes;
    __m512 acc0 = _mm512_loadu_ps(&bias_[ch]);
    __m512 acc1 = acc0, acc2 = acc0, acc3 = acc0;
    const float* w = &weights_[ch];
    for (int t = 0; t < taps_; ++t, w += padded_) {
      const __m512 wt = _mm512_loadu_ps(w);
      const float* p[4];
      pixels.get(t, p);
      acc0 = _mm512_fmadd_ps(load<Masked>(m, p[0] + ch), wt, acc0);
      acc1 = _mm512_fmadd_ps(load<Masked>(m, p[1] + ch), wt, acc1);
      acc2 = _mm512_fmadd_ps(load<Masked>(m, p[2] + ch), wt, acc2);
      acc3 = _mm512_fmadd_ps(load<Masked>(m, p[3] + ch), wt, acc3);
    }
    float* o = out + ch;
    _mm512_mask_storeu_ps(o, m, clamp(acc0));
    _mm512_mask_storeu_ps(o + stride, m, clamp(acc1));
    _mm512_mask_storeu_ps(o + 2 * stride, m, clamp(acc2));
    _mm512_mask_storeu_ps(o + 3 * stride, m, clamp(acc3));
  }

  // Channel vector v of one pixel.
  template <bool Masked>
  __attribute__((target("avx512f"), always_inline)) inline void one_pixel(float* out, size_t v, const float* const* ptr,
                                                                         __mmask16 m) const {
    const size_t at = v * lanes;
    __m512 acc = _mm512_loadu_ps(&bias_[at]);
    const float* w = &weights_[at];
    for (int t = 0; t < taps_; ++t, w += padded_)
      acc = _mm512_fmadd_ps(load<Masked>(m, ptr[t] + at), _mm512_loadu_ps(w), acc);
    _mm512_mask_storeu_ps(out + at, m, clamp(acc));
  }

  // XNNPACK's clamp: max with the lower bound, then min with the upper.
  __attribute__((target("avx512f"), always_inline)) inline __m512 clamp(__m512 a) const {
    return _mm512_min_ps(_mm512_max_ps(a, _mm512_set1_ps(act_.min)), _mm512_set1_ps(act_.max));
  }

};

// The AVX-512 loop's structure on AVX2 with FMA3 (8 lanes, 16 vector registers): four pixels by
// two channel vectors (eight sums, two weight vectors, the inputs as FMA memory operands), the same
// taps in the same order, so the same bits. On AVX2 CPUs XNNPACK (2022) ran these layers one
// pixel at a time, two loads per FMA (measured on a Zen 1 EPYC, one thread: MNASNet's 3x3 and
// 5x5 layers at 56x56 to 14x14 1.3-1.7x slower than ONNX Runtime's).
constexpr size_t avx2_lanes = 8;

class avx2_depthwise_operator : public fma_depthwise_base {
 public:
  avx2_depthwise_operator(const layer& l, tensor_shape in, size_t out_stride)
      : fma_depthwise_base(l, in, out_stride, avx2_lanes) {}

 private:
  __attribute__((target("avx2,fma"))) void compute_row(size_t row) override {
    row_plan p;
    plan_row(row, p);
    const size_t c = size_t(in_.c);
    const size_t full = c / avx2_lanes;  // whole vectors; vector `full` is the masked tail if any
    const size_t rest = c % avx2_lanes;
    const __m256i tail = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(rest)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const float* quad[4][max_taps];
    for (int ox = 0; ox < out_.w && out_.w >= 4;) {
      const int first = group_start(ox);
      float* out = p.out_row + size_t(first) * p.stride;
      ox = first + 4;
      if (interior_group(p, first)) {
        group(out, p.stride, interior_pixels{&p.taps, ptrdiff_t(first) * p.taps.pixel_step}, full, rest != 0, tail);
        continue;
      }
      border_pointers(p, first, 4, quad);
      group(out, p.stride, border_pixels{quad}, full, rest != 0, tail);
    }
    for (int ox = 0; ox < out_.w && out_.w < 4; ++ox) {
      const float* ptr[1][max_taps];
      border_pointers(p, ox, 1, ptr);
      float* out = p.out_row + size_t(ox) * p.stride;
      for (size_t v = 0; v < full; ++v) one_pixel<false>(out, v, ptr[0], tail);
      if (rest) one_pixel<true>(out, full, ptr[0], tail);
    }
  }

  // Lanes outside `m` are neither read nor written (Masked; otherwise all lanes are).
  template <bool Masked>
  __attribute__((target("avx2,fma"), always_inline)) static inline __m256 load(__m256i m, const float* p) {
    return Masked ? _mm256_maskload_ps(p, m) : _mm256_loadu_ps(p);
  }
  template <bool Masked>
  __attribute__((target("avx2,fma"), always_inline)) static inline void store(__m256i m, float* p, __m256 v) {
    if (Masked)
      _mm256_maskstore_ps(p, m, v);
    else
      _mm256_storeu_ps(p, v);
  }

  template <typename Pixels>
  __attribute__((target("avx2,fma"), always_inline)) inline void group(float* out, size_t stride, const Pixels& pixels,
                                                                     size_t full, bool has_tail, __m256i tail) const {
    const size_t vectors = full + (has_tail ? 1 : 0);
    size_t v = 0;
    for (; v + 2 <= vectors; v += 2) {
      if (v + 1 == full)
        two_vectors<0, true>(out, stride, v, pixels, tail);
      else if (taps_ == 9)
        two_vectors<9, false>(out, stride, v, pixels, tail);
      else if (taps_ == 25)
        two_vectors<25, false>(out, stride, v, pixels, tail);
      else
        two_vectors<0, false>(out, stride, v, pixels, tail);
    }
    if (v < full) one_vector<false>(out, stride, v, pixels, tail);
    if (v == full && has_tail) one_vector<true>(out, stride, v, pixels, tail);
  }

  // Channel vectors v and v + 1 of four pixels; MaskedB: the second one is the tail.
  template <int Taps, bool MaskedB, typename Pixels>
  __attribute__((target("avx2,fma"), always_inline)) inline void two_vectors(float* out, size_t stride, size_t v,
                                                                           const Pixels& pixels, __m256i mb) const {
    const size_t ch = v * avx2_lanes;
    __m256 a0 = _mm256_loadu_ps(&bias_[ch]), b0 = _mm256_loadu_ps(&bias_[ch + avx2_lanes]);
    __m256 a1 = a0, a2 = a0, a3 = a0, b1 = b0, b2 = b0, b3 = b0;
    const int count = Taps > 0 ? Taps : taps_;
    const float* w = &weights_[ch];
    for (int t = 0; t < count; ++t, w += padded_) {
      const __m256 wa = _mm256_loadu_ps(w), wb = _mm256_loadu_ps(w + avx2_lanes);
      const float* p[4];
      pixels.get(t, p);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(p[0] + ch), wa, a0);
      b0 = _mm256_fmadd_ps(load<MaskedB>(mb, p[0] + ch + avx2_lanes), wb, b0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(p[1] + ch), wa, a1);
      b1 = _mm256_fmadd_ps(load<MaskedB>(mb, p[1] + ch + avx2_lanes), wb, b1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(p[2] + ch), wa, a2);
      b2 = _mm256_fmadd_ps(load<MaskedB>(mb, p[2] + ch + avx2_lanes), wb, b2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(p[3] + ch), wa, a3);
      b3 = _mm256_fmadd_ps(load<MaskedB>(mb, p[3] + ch + avx2_lanes), wb, b3);
    }
    float* o = out + ch;
    _mm256_storeu_ps(o, clamp(a0));
    store<MaskedB>(mb, o + avx2_lanes, clamp(b0));
    _mm256_storeu_ps(o + stride, clamp(a1));
    store<MaskedB>(mb, o + stride + avx2_lanes, clamp(b1));
    _mm256_storeu_ps(o + 2 * stride, clamp(a2));
    store<MaskedB>(mb, o + 2 * stride + avx2_lanes, clamp(b2));
    _mm256_storeu_ps(o + 3 * stride, clamp(a3));
    store<MaskedB>(mb, o + 3 * stride + avx2_lanes, clamp(b3));
  }

  // Channel vector v of four pixels.
  template <bool Masked, typename Pixels>
  __attribute__((target("avx2,fma"), always_inline)) inline void one_vector(float* out, size_t stride, size_t v,
                                                                          const Pixels& pixels, __m256i m) const {
    const size_t ch = v * avx2_lanes;
    __m256 acc0 = _mm256_loadu_ps(&bias_[ch]);
    __m256 acc1 = acc0, acc2 = acc0, acc3 = acc0;
    const float* w = &weights_[ch];
    for (int t = 0; t < taps_; ++t, w += padded_) {
      const __m256 wt = _mm256_loadu_ps(w);
      const float* p[4];
      pixels.get(t, p);
      acc0 = _mm256_fmadd_ps(load<Masked>(m, p[0] + ch), wt, acc0);
      acc1 = _mm256_fmadd_ps(load<Masked>(m, p[1] + ch), wt, acc1);
      acc2 = _mm256_fmadd_ps(load<Masked>(m, p[2] + ch), wt, acc2);
      acc3 = _mm256_fmadd_ps(load<Masked>(m, p[3] + ch), wt, acc3);
    }
    float* o = out + ch;
    store<Masked>(m, o, clamp(acc0));
    store<Masked>(m, o + stride, clamp(acc1));
    store<Masked>(m, o + 2 * stride, clamp(acc2));
    store<Masked>(m, o + 3 * stride, clamp(acc3));
  }

  // Channel vector v of one pixel.
  template <bool Masked>
  __attribute__((target("avx2,fma"), always_inline)) inline void one_pixel(float* out, size_t v, const float* const* ptr,
                                                                         __m256i m) const {
    const size_t at = v * avx2_lanes;
    __m256 acc = _mm256_loadu_ps(&bias_[at]);
    const float* w = &weights_[at];
    for (int t = 0; t < taps_; ++t, w += padded_)
      acc = _mm256_fmadd_ps(load<Masked>(m, ptr[t] + at), _mm256_loadu_ps(w), acc);
    store<Masked>(m, out + at, clamp(acc));
  }

  // XNNPACK's clamp: max with the lower bound, then min with the upper.
  __attribute__((target("avx2,fma"), always_inline)) inline __m256 clamp(__m256 a) const {
    return _mm256_min_ps(_mm256_max_ps(a, _mm256_set1_ps(act_.min)), _mm256_set1_ps(act_.max));
  }
};

}  // namespace

bool depthwise_runs_on_native_fma(const layer& l, const tensor_shape& input) {
  const window_params& w = l.window;
  return l.kind == layer_kind::convolution && l.groups > 1 && l.groups == input.c && l.output_channels == l.groups &&
         w.kernel_h >= 1 && w.kernel_w >= 1 && w.kernel_h * w.kernel_w <= max_taps &&
         (cpu_has_avx512f() || cpu_has_avx2_fma()) && !xnnpack_convolutions_forced() && !channel_affine_runs_natively(l, input);
}

result<std::unique_ptr<layer_operator>> create_fma_depthwise_operator(const layer& l, const tensor_shape& input,
                                                                      size_t output_pixel_stride) {
  const std::string what = "convolution layer '" + l.name + "'";
  if (!depthwise_runs_on_native_fma(l, input))
    return status::error(what + ": not a depthwise convolution of at most 25 taps on an AVX-512 or AVX2 CPU");
  const window_params& w = l.window;
  const size_t taps = size_t(w.kernel_h) * size_t(w.kernel_w);
  if (l.weights.size() != taps * size_t(input.c) || (!l.bias.empty() && l.bias.size() != size_t(input.c)))
    return status::error(what + ": weights hold " + std::to_string(l.weights.size()) + " floats, expected " +
                         std::to_string(taps * size_t(input.c)));
  if (w.stride_h < 1 || w.stride_w < 1 || w.dilation_h < 1 || w.dilation_w < 1)
    return status::error(what + ": stride and dilation must be >= 1");
  if (w.pad.top < 0 || w.pad.left < 0 || w.pad.bottom < 0 || w.pad.right < 0)
    return status::error(what + ": negative padding");
  if (cpu_has_avx512f())
    return std::unique_ptr<layer_operator>(new fma_depthwise_operator(l, input, output_pixel_stride));
  return std::unique_ptr<layer_operator>(new avx2_depthwise_operator(l, input, output_pixel_stride));
}

}  // namespace d3
