#include "kernels/gemm_convolution.hpp"

// GCC 12's AVX-512 intrinsics start some results from _mm512_undefined_ps(), which -Wuninitialized
// and -Wmaybe-uninitialized report (GCC bug 105593) once per instantiation.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // GCC's name; clang has no such group
#endif
#include <immintrin.h>
#pragma GCC diagnostic pop
#include <cpuinfo.h>
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

// Output channels per packed weight panel: two vectors, 32 on AVX-512, 16 on AVX2.
constexpr size_t panel_width = 32;
constexpr size_t avx2_panel_width = 16;
constexpr size_t narrow_panel_width = 8;  // groups of 2 or 4 channels side by side
// Output pixels per kernel call: 12 when the pixels' input rows are consecutive (a 1x1 window over
// the whole map: one base pointer, 24 accumulators); 8 through the indirection buffer, whose eight
// row pointers leave general registers for the loop (with twelve, GCC spills them and a weight
// vector, and every FMA reloads: measured 20% slower than XNNPACK in resnet18).
constexpr size_t dense_rows = 12;
constexpr size_t indirect_rows = 8;
// The stems' window rows as spans (below): 5 pixels x 64 channels, two panels at once (20
// accumulators, 4 weight and 5 input loads per 20 FMAs, against 10 per 16 on one panel). A stem's
// spans are 21-33 floats long, so its inner loops are short and each pixel's loads and loop work
// weigh more than in a 3x3 layer. Measured on resnet18's 7x7 stem, one thread, four alternating
// rounds: 1.30-1.36 ms against 1.36-1.40 on one panel (5 x 64; 6 x 64 spilled, 4 x 64 gained nothing).
// (On the 3x3 layers of ResNet-18 the same blocks were 2-5% slower: they stay on one panel.)
constexpr size_t pair_rows = 5;
// AVX2 has 16 vector registers: 6 pixels x 16 channels (12 accumulators, two weight vectors and a
// broadcast input), both ways.
constexpr size_t avx2_rows = 6;
// Output pixels per task: as many as keep the task's window rows (taps x input channels each)
// within about 192 KB, so that each weight panel, streamed once per block, meets them in cache.
constexpr size_t task_input_bytes = size_t(192) << 10;
// Packed weights beyond which the tasks go panel by panel (each panel meets every pixel chunk
// while it is in L2) rather than chunk by chunk (each chunk meets every panel): about half of a
// core's L2. Measured on resnet18's layer4 (9.4 MB of weights, 49 pixels): chunk by chunk streamed
// all weights from L3 once per 8 pixels, 1.5-1.6 ms per layer.
constexpr size_t panel_major_weight_bytes = size_t(512) << 10;
// The longest window row taken as one span (kernel_w x input channels): the stems (7 x 3, 11 x 3,
// 3 x 3), whose per-tap loops are 3 channels long; wider inputs gain nothing from a copy.
constexpr size_t max_span_floats = 64;

// The input row under tap t of the kernel call's pixel r: consecutive rows of a dense map, or the
// indirection buffer's pointers ([pixel][tap]; a zero row over padding).
// The kernels take their source by reference. Passed by value, the 24-byte indirect_source went on
// the stack as two 8-byte stores read back by one 16-byte load, which cannot be forwarded from
// them: every call waited until the store queue, the previous call's output stores to lines not in
// cache among them, had drained (measured: 5% of resnet18 on one instruction, 0.2 ms of its stem).
struct dense_source {
  const float* x;
  size_t stride;
  const float* row(size_t r, size_t) const { return x + r * stride; }
};
struct indirect_source {
  const float* const* rows;
  size_t taps;
  size_t offset;  // the group's first input channel (0 with one group)
  const float* row(size_t r, size_t t) const { return rows[r * taps + t] + offset; }
};

// What a block does after its sums: the convolution's clamp and, with an add fused into the layer
// (residual_fusion), the residual's value added and the add's clamp, the operations of the two
// layers apart in their order (XNNPACK's add: one IEEE sum, then max-then-min unless it is linear).
struct epilogue {
  float lo = 0, hi = 0;          // the convolution's clamp
  size_t residual_stride = 0;    // floats between the residual's pixels
  bool sum_clamped = false;      // the add clamps (its bounds are not -inf, +inf)
  float sum_lo = 0, sum_hi = 0;  // the add's clamp
};

// One output row's vector at lane `from` of the row `out`: clamped, and with the residual's row
// `res` (when not null) at the same lanes added and clamped again.
__attribute__((target("avx512f"))) inline void store_vector(float* out, const float* res, size_t from, __mmask16 mask,
                                                            __m512 acc, __m512 vlo, __m512 vhi, const epilogue& e) {
  __m512 v = _mm512_min_ps(_mm512_max_ps(acc, vlo), vhi);
  if (res != nullptr) {
    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, res + from));
    if (e.sum_clamped) v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(e.sum_lo)), _mm512_set1_ps(e.sum_hi));
  }
  _mm512_mask_storeu_ps(out + from, mask, v);
}

// out[r][j] = clamp(bias[j] + sum over taps t, then input channels k, of x[r][t][k] * w[t][k][j])
// for r < Rows and the panel's 32 channels j (those past the layer's last channel masked off at
// the store). One FMA per term into an accumulator that starts at the bias: XNNPACK's order.
template <size_t Rows, class Source>
__attribute__((target("avx512f"))) void gemm_block(const Source& source, size_t taps, size_t k_count, const float* panel,
                                                   const float* bias, float* y, size_t y_stride, __mmask16 mask0,
                                                   __mmask16 mask1, const float* res, const epilogue& e) {
  __m512 acc0[Rows], acc1[Rows];
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
#pragma GCC unroll 12
  for (size_t r = 0; r < Rows; ++r) {
    acc0[r] = b0;
    acc1[r] = b1;
  }
  for (size_t t = 0; t < taps; ++t) {
    const float* x[Rows];
#pragma GCC unroll 12
    for (size_t r = 0; r < Rows; ++r) x[r] = source.row(r, t);
    const float* w = panel + t * k_count * panel_width;
    for (size_t k = 0; k < k_count; ++k) {
      const __m512 w0 = _mm512_load_ps(w + k * panel_width);
      const __m512 w1 = _mm512_load_ps(w + k * panel_width + 16);
#pragma GCC unroll 12
      for (size_t r = 0; r < Rows; ++r) {
        const __m512 v = _mm512_set1_ps(x[r][k]);
        acc0[r] = _mm512_fmadd_ps(v, w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(v, w1, acc1[r]);
      }
    }
  }
  const __m512 vlo = _mm512_set1_ps(e.lo), vhi = _mm512_set1_ps(e.hi);
  if (res == nullptr) {
#pragma GCC unroll 12
    for (size_t r = 0; r < Rows; ++r) {
      _mm512_mask_storeu_ps(y + r * y_stride, mask0, _mm512_min_ps(_mm512_max_ps(acc0[r], vlo), vhi));
      _mm512_mask_storeu_ps(y + r * y_stride + 16, mask1, _mm512_min_ps(_mm512_max_ps(acc1[r], vlo), vhi));
    }
    return;
  }
#pragma GCC unroll 12
  for (size_t r = 0; r < Rows; ++r) {
    const float* row = res + r * e.residual_stride;
    store_vector(y + r * y_stride, row, 0, mask0, acc0[r], vlo, vhi, e);
    store_vector(y + r * y_stride, row, 16, mask1, acc1[r], vlo, vhi, e);
  }
}

// gemm_block over two adjacent panels (64 channels: `panel` and `panel + panel_floats`, whose
// biases are consecutive). Every output value's terms and their order are gemm_block's.
template <size_t Rows, class Source>
__attribute__((target("avx512f"))) void gemm_pair_block(const Source& source, size_t taps, size_t k_count,
                                                        const float* panel, size_t panel_floats, const float* bias,
                                                        float* y, size_t y_stride, const __mmask16* masks,
                                                        const float* res, const epilogue& e) {
  __m512 acc0[Rows], acc1[Rows], acc2[Rows], acc3[Rows];
  const __m512 b0 = _mm512_loadu_ps(bias), b1 = _mm512_loadu_ps(bias + 16);
  const __m512 b2 = _mm512_loadu_ps(bias + 32), b3 = _mm512_loadu_ps(bias + 48);
#pragma GCC unroll 6
  for (size_t r = 0; r < Rows; ++r) {
    acc0[r] = b0;
    acc1[r] = b1;
    acc2[r] = b2;
    acc3[r] = b3;
  }
  for (size_t t = 0; t < taps; ++t) {
    const float* x[Rows];
#pragma GCC unroll 6
    for (size_t r = 0; r < Rows; ++r) x[r] = source.row(r, t);
    const float* w = panel + t * k_count * panel_width;
    const float* v = w + panel_floats;
    for (size_t k = 0; k < k_count; ++k) {
      const __m512 w0 = _mm512_load_ps(w + k * panel_width);
      const __m512 w1 = _mm512_load_ps(w + k * panel_width + 16);
      const __m512 w2 = _mm512_load_ps(v + k * panel_width);
      const __m512 w3 = _mm512_load_ps(v + k * panel_width + 16);
#pragma GCC unroll 6
      for (size_t r = 0; r < Rows; ++r) {
        const __m512 in = _mm512_set1_ps(x[r][k]);
        acc0[r] = _mm512_fmadd_ps(in, w0, acc0[r]);
        acc1[r] = _mm512_fmadd_ps(in, w1, acc1[r]);
        acc2[r] = _mm512_fmadd_ps(in, w2, acc2[r]);
        acc3[r] = _mm512_fmadd_ps(in, w3, acc3[r]);
      }
    }
  }
  const __m512 vlo = _mm512_set1_ps(e.lo), vhi = _mm512_set1_ps(e.hi);
#pragma GCC unroll 6
  for (size_t r = 0; r < Rows; ++r) {
    float* out = y + r * y_stride;
    const float* row = res == nullptr ? nullptr : res + r * e.residual_stride;
    store_vector(out, row, 0, masks[0], acc0[r], vlo, vhi, e);
    store_vector(out, row, 16, masks[1], acc1[r], vlo, vhi, e);
    store_vector(out, row, 32, masks[2], acc2[r], vlo, vhi, e);
    store_vector(out, row, 48, masks[3], acc3[r], vlo, vhi, e);
  }
}

// gemm_block on AVX2 with FMA3, for Rows (1 to 6) output pixels and a panel of 16 channels (Wide)
// or its first 8 (a last panel of at most 8 channels: 24, 40 or 72 channels would otherwise
// compute a third to a half of their last panel for nothing): the same terms in the same order,
// `columns` of them stored. Sums are named rather than an array (GCC keeps arrays of accumulators
// in memory here, one store per FMA: half the speed), and the clamp bounds are read only after the
// loop: passed as floats they took two of the 16 vector registers for the whole loop, and GCC
// spilled an accumulator to the stack instead (measured on 1x1 layers: 13-15% slower).
template <size_t Rows, bool Wide, class Source>
__attribute__((target("avx2,fma"))) void gemm_block_avx2(const Source& source, size_t taps, size_t k_count,
                                                         const float* panel, const float* bias, float* y,
                                                         size_t y_stride, size_t columns, const activation& act) {
  static_assert(Rows >= 1 && Rows <= avx2_rows, "one to six pixels");
  const __m256 b0 = _mm256_loadu_ps(bias), b1 = Wide ? _mm256_loadu_ps(bias + 8) : b0;
  __m256 c00 = b0, c01 = b1, c10 = b0, c11 = b1, c20 = b0, c21 = b1;
  __m256 c30 = b0, c31 = b1, c40 = b0, c41 = b1, c50 = b0, c51 = b1;
  for (size_t t = 0; t < taps; ++t) {
    const float* x0 = source.row(0, t);
    const float* x1 = Rows > 1 ? source.row(1, t) : x0;
    const float* x2 = Rows > 2 ? source.row(2, t) : x0;
    const float* x3 = Rows > 3 ? source.row(3, t) : x0;
    const float* x4 = Rows > 4 ? source.row(4, t) : x0;
    const float* x5 = Rows > 5 ? source.row(5, t) : x0;
    const float* w = panel + t * k_count * avx2_panel_width;
    for (size_t k = 0; k < k_count; ++k, w += avx2_panel_width) {
      const __m256 w0 = _mm256_load_ps(w), w1 = Wide ? _mm256_load_ps(w + 8) : w0;
      // The panel line 16 steps ahead: panels beyond L1 (a 3x3 window over 512 channels is 295 KB)
      // stream from L2 once per block; measured on resnet18's layer4, 35 -> 37 GFLOP/s.
      _mm_prefetch(reinterpret_cast<const char*>(w + 16 * avx2_panel_width), _MM_HINT_T0);
      __m256 v = _mm256_broadcast_ss(x0 + k);
      c00 = _mm256_fmadd_ps(v, w0, c00);
      if constexpr (Wide) c01 = _mm256_fmadd_ps(v, w1, c01);
      if constexpr (Rows > 1) {
        v = _mm256_broadcast_ss(x1 + k);
        c10 = _mm256_fmadd_ps(v, w0, c10);
        if constexpr (Wide) c11 = _mm256_fmadd_ps(v, w1, c11);
      }
      if constexpr (Rows > 2) {
        v = _mm256_broadcast_ss(x2 + k);
        c20 = _mm256_fmadd_ps(v, w0, c20);
        if constexpr (Wide) c21 = _mm256_fmadd_ps(v, w1, c21);
      }
      if constexpr (Rows > 3) {
        v = _mm256_broadcast_ss(x3 + k);
        c30 = _mm256_fmadd_ps(v, w0, c30);
        if constexpr (Wide) c31 = _mm256_fmadd_ps(v, w1, c31);
      }
      if constexpr (Rows > 4) {
        v = _mm256_broadcast_ss(x4 + k);
        c40 = _mm256_fmadd_ps(v, w0, c40);
        if constexpr (Wide) c41 = _mm256_fmadd_ps(v, w1, c41);
      }
      if constexpr (Rows > 5) {
        v = _mm256_broadcast_ss(x5 + k);
        c50 = _mm256_fmadd_ps(v, w0, c50);
        if constexpr (Wide) c51 = _mm256_fmadd_ps(v, w1, c51);
      }
    }
  }
  const __m256 vlo = _mm256_broadcast_ss(&act.min), vhi = _mm256_broadcast_ss(&act.max);
  const __m256 sums[avx2_rows][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i mask0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(columns)), lane);
  const __m256i mask1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(columns) - 8), lane);
  for (size_t r = 0; r < Rows; ++r) {
    const __m256 s0 = _mm256_min_ps(_mm256_max_ps(sums[r][0], vlo), vhi);
    if (columns == (Wide ? avx2_panel_width : avx2_panel_width / 2)) {
      _mm256_storeu_ps(y + r * y_stride, s0);
      if constexpr (Wide) _mm256_storeu_ps(y + r * y_stride + 8, _mm256_min_ps(_mm256_max_ps(sums[r][1], vlo), vhi));
    } else {
      _mm256_maskstore_ps(y + r * y_stride, mask0, s0);
      if constexpr (Wide)
        _mm256_maskstore_ps(y + r * y_stride + 8, mask1, _mm256_min_ps(_mm256_max_ps(sums[r][1], vlo), vhi));
    }
  }
}

template <class Source>
using avx2_block_fn = void (*)(const Source&, size_t, size_t, const float*, const float*, float*, size_t, size_t,
                               const activation&);

// [wide][r - 1] computes r output pixels of a whole panel (wide) or of its first 8 channels.
template <class Source, size_t... Rows>
constexpr std::array<std::array<avx2_block_fn<Source>, sizeof...(Rows)>, 2> avx2_block_table(
    std::index_sequence<Rows...>) {
  return {{{&gemm_block_avx2<Rows + 1, false, Source>...}, {&gemm_block_avx2<Rows + 1, true, Source>...}}};
}
constexpr auto avx2_dense_kernels = avx2_block_table<dense_source>(std::make_index_sequence<avx2_rows>());
constexpr auto avx2_indirect_kernels = avx2_block_table<indirect_source>(std::make_index_sequence<avx2_rows>());

// The shuffle that gives lane i of each 128-bit half input channel k of lane i's group, for groups
// of G (2 or 4) channels: lane i of a half holds output (i / G) * G + (its offset) of the half's
// channels, so it reads element (i / G) * G + k.
template <size_t G>
constexpr int narrow_shuffle(size_t k) {
  int imm = 0;
  for (size_t i = 0; i < 4; ++i) imm |= int((i / G) * G + k) << (2 * i);
  return imm;
}

// Groups of G = 2 or 4 input and output channels (ResNeXt-50 32x4d's first stage), 8 / G groups
// per 8-lane panel: lane j is output channel j of the panel, whose weights it holds for its own
// group's G inputs only. Per tap, each pixel's 8 input channels load once and a shuffle gives each
// lane its group's channel k, so no lane computes a zero weight (the 8-wide GEMM block would
// compute a whole vector per group of 4: a 7 GFLOP/s layer). The same terms in the same order as
// the GEMM: bias, then taps row by row, the group's channels in order within a tap.
template <size_t G, size_t Rows, class Source>
__attribute__((target("avx2,fma"))) void narrow_group_block_avx2(const Source& source, size_t taps, const float* panel,
                                                                 const float* bias, float* y, size_t y_stride,
                                                                 const activation& act) {
  static_assert((G == 2 || G == 4) && Rows >= 1 && Rows <= avx2_rows, "groups of 2 or 4, 1 to 6 pixels");
  const __m256 b = _mm256_loadu_ps(bias);
  __m256 c0 = b, c1 = b, c2 = b, c3 = b, c4 = b, c5 = b;
  for (size_t t = 0; t < taps; ++t, panel += G * 8) {
    const __m256 x0 = _mm256_loadu_ps(source.row(0, t));
    const __m256 x1 = Rows > 1 ? _mm256_loadu_ps(source.row(1, t)) : x0;
    const __m256 x2 = Rows > 2 ? _mm256_loadu_ps(source.row(2, t)) : x0;
    const __m256 x3 = Rows > 3 ? _mm256_loadu_ps(source.row(3, t)) : x0;
    const __m256 x4 = Rows > 4 ? _mm256_loadu_ps(source.row(4, t)) : x0;
    const __m256 x5 = Rows > 5 ? _mm256_loadu_ps(source.row(5, t)) : x0;
    const auto step = [&](auto k_constant) __attribute__((always_inline, target("avx2,fma"))) {
      constexpr size_t k = decltype(k_constant)::value;
      constexpr int imm = narrow_shuffle<G>(k);
      const __m256 w = _mm256_load_ps(panel + k * 8);
      c0 = _mm256_fmadd_ps(_mm256_shuffle_ps(x0, x0, imm), w, c0);
      if constexpr (Rows > 1) c1 = _mm256_fmadd_ps(_mm256_shuffle_ps(x1, x1, imm), w, c1);
      if constexpr (Rows > 2) c2 = _mm256_fmadd_ps(_mm256_shuffle_ps(x2, x2, imm), w, c2);
      if constexpr (Rows > 3) c3 = _mm256_fmadd_ps(_mm256_shuffle_ps(x3, x3, imm), w, c3);
      if constexpr (Rows > 4) c4 = _mm256_fmadd_ps(_mm256_shuffle_ps(x4, x4, imm), w, c4);
      if constexpr (Rows > 5) c5 = _mm256_fmadd_ps(_mm256_shuffle_ps(x5, x5, imm), w, c5);
    };
    step(std::integral_constant<size_t, 0>());
    step(std::integral_constant<size_t, 1>());
    if constexpr (G > 2) {
      step(std::integral_constant<size_t, 2>());
      step(std::integral_constant<size_t, 3>());
    }
  }
  const __m256 vlo = _mm256_broadcast_ss(&act.min), vhi = _mm256_broadcast_ss(&act.max);
  const __m256 sums[avx2_rows] = {c0, c1, c2, c3, c4, c5};
  for (size_t r = 0; r < Rows; ++r) _mm256_storeu_ps(y + r * y_stride, _mm256_min_ps(_mm256_max_ps(sums[r], vlo), vhi));
}

template <class Source>
using narrow_block_fn = void (*)(const Source&, size_t, const float*, const float*, float*, size_t, const activation&);

// [G == 4][r - 1] computes r output pixels of a panel of groups of G channels.
template <class Source, size_t... Rows>
constexpr std::array<std::array<narrow_block_fn<Source>, sizeof...(Rows)>, 2> narrow_block_table(
    std::index_sequence<Rows...>) {
  return {{{&narrow_group_block_avx2<2, Rows + 1, Source>...}, {&narrow_group_block_avx2<4, Rows + 1, Source>...}}};
}
constexpr auto narrow_dense_kernels = narrow_block_table<dense_source>(std::make_index_sequence<avx2_rows>());
constexpr auto narrow_indirect_kernels = narrow_block_table<indirect_source>(std::make_index_sequence<avx2_rows>());

template <class Source>
using block_fn = void (*)(const Source&, size_t, size_t, const float*, const float*, float*, size_t, __mmask16, __mmask16,
                          const float*, const epilogue&);

template <class Source, size_t... Rows>
constexpr std::array<block_fn<Source>, sizeof...(Rows)> block_table(std::index_sequence<Rows...>) {
  return {&gemm_block<Rows + 1, Source>...};
}

// [r - 1] computes r output pixels.
constexpr auto dense_kernels = block_table<dense_source>(std::make_index_sequence<dense_rows>());
constexpr auto indirect_kernels = block_table<indirect_source>(std::make_index_sequence<indirect_rows>());

using pair_block_fn = void (*)(const indirect_source&, size_t, size_t, const float*, size_t, const float*, float*, size_t,
                               const __mmask16*, const float*, const epilogue&);
template <size_t... Rows>
constexpr std::array<pair_block_fn, sizeof...(Rows)> pair_block_table(std::index_sequence<Rows...>) {
  return {&gemm_pair_block<Rows + 1, indirect_source>...};
}
// [r - 1] computes r output pixels of two panels.
constexpr auto pair_kernels = pair_block_table(std::make_index_sequence<pair_rows>());

// Groups of 2 or 4 input and output channels, side by side in 8-lane panels (the AVX2 kernel, also
// on AVX-512 CPUs: XNNPACK's grouped GEMM computes a whole 16-channel tile per group of 4 there,
// ResNeXt-50's first-stage 3x3 layers at 26 GFLOP/s, 1.1-1.2 ms against ONNX Runtime's 0.87).
bool narrow_groups(const layer& l, const tensor_shape& input) {
  const int group_in = input.c / l.groups, group_out = l.output_channels / l.groups;
  return l.groups > 1 && group_in == group_out && (group_in == 2 || group_in == 4) &&
         size_t(input.c) % narrow_panel_width == 0 && cpu_has_avx2_fma();
}

// Calls fn(first pixel, count) over [first, last) in the fewest calls of at most `rows` pixels,
// their counts differing by at most one. A remainder of one pixel (49 = 4 x 12 + 1 at 7x7) would
// stream the whole weight panel for one pixel's work; 10 + 10 + 10 + 10 + 9 streams it as often
// and computes the same FMAs. Each output pixel's terms and their order do not depend on its block,
// so the split changes no bit.
template <class Fn>
void for_each_block(size_t first, size_t last, size_t rows, Fn fn) {
  const size_t n = last - first, calls = (n + rows - 1) / rows;
  if (calls == 0) return;
  const size_t base = n / calls, longer = n % calls;  // the first `longer` calls take base + 1
  for (size_t c = 0, row = first; c < calls; ++c) {
    const size_t count = base + (c < longer ? 1 : 0);
    fn(row, count);
    row += count;
  }
}

// NHWC input: the indirection buffer (output pixel x tap -> input row) is built at setup, when the
// input's address is known; tasks are (output pixel chunk, panel) pairs. With groups, each group
// has its own panels (a panel never spans two groups), and its kernels read the group's input
// channels at an offset from the same pixel rows.
class gemm_convolution_operator : public layer_operator {
 public:
  // `sum_act`: an add fused into the layer (residual_fusion), with its clamp; setup() takes the
  // residual as a second input. Null: the convolution alone.
  gemm_convolution_operator(const layer& l, const tensor_shape& in, size_t out_stride, const activation* sum_act)
      : name_(l.name), window_(l.window), act_(l.act), in_(in), out_(l.output_shape), out_stride_(out_stride) {
    epilogue_.lo = act_.min;
    epilogue_.hi = act_.max;
    if (sum_act != nullptr) {
      fused_ = true;
      epilogue_.residual_stride = size_t(out_.c);
      epilogue_.sum_clamped = !sum_act->is_identity();
      epilogue_.sum_lo = sum_act->min;
      epilogue_.sum_hi = sum_act->max;
    }
    const size_t taps = tap_count();
    groups_ = size_t(l.groups);
    group_in_ = size_t(in.c) / groups_;
    group_out_ = size_t(l.output_channels) / groups_;
    const size_t k = group_in_;
    avx512_ = cpu_has_avx512f();
    narrow_ = narrow_groups(l, in);
    const size_t width = panel();
    group_panels_ = narrow_ ? 0 : (group_out_ + width - 1) / width;
    panels_ = narrow_ ? size_t(in.c) / width : groups_ * group_panels_;
    const size_t floats = panels_ * taps * k * width;
    packed_.reset(static_cast<float*>(allocate_aligned(64, floats * sizeof(float))));
    std::memset(packed_.get(), 0, floats * sizeof(float));
    bias_.assign(panels_ * width, 0.0f);
    const float* w = l.weights.data();  // OHWI: [out][tap][in of its group]
    for (size_t j = 0; j < size_t(l.output_channels); ++j) {
      // Output channel j is column jl of its group's panels (narrow: of panel j / 8, groups side
      // by side).
      const size_t jl = narrow_ ? j % width : j % group_out_;
      const size_t panel = narrow_ ? j / width : (j / group_out_) * group_panels_ + jl / width;
      for (size_t t = 0; t < taps; ++t)
        for (size_t kk = 0; kk < k; ++kk)
          packed_.get()[((panel * taps + t) * k + kk) * width + jl % width] = w[(j * taps + t) * k + kk];
      if (!l.bias.empty()) bias_[panel * width + jl % width] = l.bias.data()[j];
    }
    panel_major_ = floats * sizeof(float) > panel_major_weight_bytes;
    const window_params& win = l.window;
    dense_ = taps == 1 && win.stride_h == 1 && win.stride_w == 1 && win.pad.top == 0 && win.pad.left == 0 &&
             win.pad.bottom == 0 && win.pad.right == 0;
    spans_ = !dense_ && groups_ == 1 && win.kernel_w > 1 && win.dilation_w == 1 &&
             k * size_t(win.kernel_w) <= max_span_floats;
    paired_ = spans_ && avx512_ && !narrow_ && panels_ >= 2;
    // A tap over padding reads a group's channels from here, at the group's offset.
    zeros_.assign(std::max(size_t(in.c), size_t(in.c) * size_t(win.kernel_w)), 0.0f);
  }

  status setup(const std::vector<const float*>& inputs, float* output, pthreadpool_t) override {
    x_ = inputs.at(0);
    y_ = output;
    if (fused_) {
      if (inputs.size() != 2) return status::error("convolution layer '" + name_ + "' with an add fused: needs 2 inputs");
      residual_ = inputs[1];
    }
    // Spans point into the operator's own copy: their pointers depend on the shape only, so they
    // are built once per shape (reshape() clears them), not again for each new input address.
    if (dense_ || (spans_ && !rows_.empty())) return status::ok();
    build_rows();
    return status::ok();
  }

  status run(pthreadpool_t pool) override {
    if (pixels() == 0) return status::ok();
    if (spans_) {  // the input into the zero-bordered copy the spans point into
      const size_t c = size_t(in_.c), row = size_t(in_.w) * c, padded_row = padded_width() * c;
      for (size_t r = 0; r < size_t(in_.n) * size_t(in_.h); ++r)
        std::memcpy(padded_.data() + r * padded_row + size_t(window_.pad.left) * c, x_ + r * row, row * sizeof(float));
    }
    const size_t chunk = chunk_rows();
    const size_t chunks = (pixels() + chunk - 1) / chunk;
    if (panel_major_)
      pthreadpool_parallelize_2d(
          pool, [](void* self, size_t p, size_t c) { static_cast<gemm_convolution_operator*>(self)->compute(c, p); },
          this, panel_tasks(), chunks, 0);
    else
      pthreadpool_parallelize_2d(
          pool, [](void* self, size_t c, size_t p) { static_cast<gemm_convolution_operator*>(self)->compute(c, p); },
          this, chunks, panel_tasks(), 0);
    return status::ok();
  }

  status reshape(const std::vector<tensor_shape>& inputs, const tensor_shape& output) override {
    D3_RETURN_IF_ERROR(check_convolution_reshape(name_, window_, in_, out_, inputs, output));
    in_ = inputs[0];
    out_ = output;
    rows_.clear();  // setup() builds them for the new shape
    return status::ok();
  }

 private:
  struct free_deleter {
    void operator()(float* p) const { std::free(p); }
  };

  // The residual under output pixel `row`, channel `column` (fused_), else null.
  const float* residual(size_t row, size_t column) const {
    return fused_ ? residual_ + row * epilogue_.residual_stride + column : nullptr;
  }
  // Tasks per pixel chunk: a panel each, or two (paired_; the last alone when their count is odd).
  size_t panel_tasks() const { return paired_ ? (panels_ + 1) / 2 : panels_; }
  size_t tap_count() const { return size_t(window_.kernel_h) * size_t(window_.kernel_w); }
  size_t panel() const { return narrow_ ? narrow_panel_width : avx512_ ? panel_width : avx2_panel_width; }
  size_t padded_width() const { return size_t(in_.w) + size_t(window_.pad.left) + size_t(window_.pad.right); }

  // The indirection buffer, [output pixel][tap] -> input row, or a zero row over padding.
  // Window rows as spans: with few input channels (the stems: 3), a window row's kernel_w taps are
  // kernel_w x C consecutive floats of a copy of the input with zero columns left and right, so
  // the kernel takes one pointer per window row instead of one per tap. The terms and their order
  // are the same (taps row by row, channels within a tap; zeros over padding): the same bits.
  void build_rows() {
    const size_t c = size_t(in_.c);
    const float* base = x_;
    size_t width = size_t(in_.w), left = 0;  // the rows' floats per pixel row, and their first column
    int taps_per_row = window_.kernel_w;
    if (spans_) {
      width = padded_width();
      left = size_t(window_.pad.left);
      taps_per_row = 1;
      padded_.assign(size_t(in_.n) * size_t(in_.h) * width * c, 0.0f);
      base = padded_.data();
    }
    rows_.resize(pixels() * size_t(window_.kernel_h) * size_t(taps_per_row));
    size_t i = 0;
    for (int n = 0; n < out_.n; ++n)
      for (int oy = 0; oy < out_.h; ++oy)
        for (int ox = 0; ox < out_.w; ++ox)
          for (int ky = 0; ky < window_.kernel_h; ++ky)
            for (int kx = 0; kx < taps_per_row; ++kx) {
              const int iy = oy * window_.stride_h - window_.pad.top + ky * window_.dilation_h;
              const int ix = ox * window_.stride_w - window_.pad.left + kx * window_.dilation_w;
              const bool inside = iy >= 0 && iy < in_.h && (spans_ || (ix >= 0 && ix < in_.w));
              rows_[i++] = inside ? base + ((size_t(n) * in_.h + size_t(iy)) * width + size_t(ix + int(left))) * c
                                  : zeros_.data();
            }
  }
  size_t pixels() const { return size_t(out_.n) * out_.h * out_.w; }

  // Output pixels per task. The tasks of one chunk go through every panel (unless panel_major_),
  // so the chunk's inputs should stay in cache between them. With groups, each panel reads only
  // its group's channels of every pixel under the chunk's windows, and the next panel the next
  // ones of the same cache lines: the chunk's footprint is its input pixels' every channel
  // (stride_h x stride_w pixels per output pixel). Measured on ResNeXt-50's stride-2 grouped 3x3
  // (57 x 57 x 256 in, 8 channels per group): chunks of 678 pixels streamed 2.7 MB of input per
  // group, 2.5-4.0 ms; 1.9 ms with the footprint counted.
  size_t chunk_rows() const {
    const size_t block = narrow_ || !avx512_ ? avx2_rows : dense_ ? dense_rows : paired_ ? pair_rows : indirect_rows;
    size_t floats = tap_count() * group_in_;
    if (groups_ > 1)
      floats = std::max(floats, size_t(window_.stride_h) * size_t(window_.stride_w) * size_t(in_.c));
    const size_t rows = task_input_bytes / (floats * sizeof(float)) / block * block;
    return std::max(rows, block);
  }

  // Precondition: task < panel_tasks() (the group's panels in order, group by group).
  void compute(size_t chunk_index, size_t task) {
    const size_t panel = paired_ ? 2 * task : task;
    const size_t k = group_in_, pixel_floats = size_t(in_.c), taps = tap_count();
    const size_t stride = out_stride_ ? out_stride_ : size_t(out_.c);
    const size_t chunk = chunk_rows();
    const size_t first = chunk_index * chunk, last = std::min(pixels(), first + chunk);
    const size_t width = this->panel();
    const size_t group = narrow_ ? 0 : panel / group_panels_, in_group = narrow_ ? 0 : (panel % group_panels_) * width;
    // The panel's first output channel and its first group's first input channel.
    const size_t column = narrow_ ? panel * width : group * group_out_ + in_group;
    const size_t columns = std::min(width, group_out_ - in_group);
    const size_t offset = narrow_ ? column : group * group_in_;
    const float* w = packed_.get() + panel * taps * k * width;
    float* y = y_ + column;
    const float* bias = bias_.data() + panel * width;
    // Spans: a window row's taps as one run of kernel_w x C inputs (the packed weights' order).
    const size_t row_taps = dense_ ? 1 : spans_ ? size_t(window_.kernel_h) : taps;
    const size_t row_k = spans_ ? k * size_t(window_.kernel_w) : k;
    if (narrow_) {
      const bool four = group_in_ == 4;
      for_each_block(first, last, avx2_rows, [&](size_t row, size_t count) {
        if (dense_)
          narrow_dense_kernels[four][count - 1]({x_ + row * pixel_floats + offset, pixel_floats}, 1, w, bias,
                                                y + row * stride, stride, act_);
        else
          narrow_indirect_kernels[four][count - 1]({rows_.data() + row * row_taps, row_taps, offset}, row_taps, w,
                                                   bias, y + row * stride, stride, act_);
      });
      return;
    }
    if (!avx512_) {
      const bool wide = columns > avx2_panel_width / 2;
      for_each_block(first, last, avx2_rows, [&](size_t row, size_t count) {
        if (dense_)
          avx2_dense_kernels[wide][count - 1]({x_ + row * pixel_floats + offset, pixel_floats}, 1, k, w, bias,
                                              y + row * stride, stride, columns, act_);
        else
          avx2_indirect_kernels[wide][count - 1]({rows_.data() + row * row_taps, row_taps, offset}, row_taps, row_k, w,
                                                 bias, y + row * stride, stride, columns, act_);
      });
      return;
    }
    const __mmask16 mask0 = __mmask16(columns >= 16 ? 0xFFFF : (1u << columns) - 1);
    const __mmask16 mask1 = __mmask16(columns >= 32 ? 0xFFFF : columns <= 16 ? 0 : (1u << (columns - 16)) - 1);
    if (dense_) {
      for_each_block(first, last, dense_rows, [&](size_t row, size_t count) {
        dense_kernels[count - 1]({x_ + row * pixel_floats + offset, pixel_floats}, 1, k, w, bias, y + row * stride,
                                 stride, mask0, mask1, residual(row, column), epilogue_);
      });
      return;
    }
    if (paired_ && panel + 1 < panels_) {
      const size_t pair_columns = std::min(2 * width, group_out_ - in_group);
      __mmask16 masks[4];
      for (size_t v = 0; v < 4; ++v) {
        const size_t from = 16 * v, lanes = pair_columns > from ? std::min<size_t>(16, pair_columns - from) : 0;
        masks[v] = __mmask16(lanes >= 16 ? 0xFFFF : (1u << lanes) - 1);
      }
      for_each_block(first, last, pair_rows, [&](size_t row, size_t count) {
        pair_kernels[count - 1]({rows_.data() + row * row_taps, row_taps, offset}, row_taps, row_k, w, taps * k * width,
                                bias, y + row * stride, stride, masks, residual(row, column), epilogue_);
      });
      return;
    }
    for_each_block(first, last, indirect_rows, [&](size_t row, size_t count) {
      indirect_kernels[count - 1]({rows_.data() + row * row_taps, row_taps, offset}, row_taps, row_k, w, bias,
                                  y + row * stride, stride, mask0, mask1, residual(row, column), epilogue_);
    });
  }

  std::string name_;
  window_params window_;
  activation act_;
  tensor_shape in_, out_;
  size_t out_stride_;
  bool avx512_ = false;                          // AVX-512 kernels, else AVX2's
  size_t groups_ = 1, group_in_ = 0, group_out_ = 0;  // groups, and input and output channels per group
  size_t group_panels_ = 0;                      // panels per group (0 when narrow_)
  bool narrow_ = false;                          // groups of 2 or 4 channels side by side in 8-lane panels
  size_t panels_ = 0;                            // groups_ x group_panels_, or in.c / 8 when narrow_
  std::unique_ptr<float, free_deleter> packed_;  // [panel][tap][k][panel()], zero past a group's last channel
  std::vector<float> bias_;                      // panels x panel(), zero past a group's last channel
  std::vector<float> zeros_;                     // the input row of a tap over padding
  bool panel_major_ = false;                     // tasks panel by panel (large weights)
  bool spans_ = false;                           // window rows as spans of a zero-bordered copy
  bool paired_ = false;                          // spans on AVX-512, two panels per kernel call
  std::vector<float> padded_;                    // that copy: [n][h][pad.left + w + pad.right][c]
  bool dense_ = false;                           // a 1x1 window, stride 1, no padding: no indirection
  std::vector<const float*> rows_;               // [output pixel][tap or window row] -> input row
  const float* x_ = nullptr;
  float* y_ = nullptr;
  bool fused_ = false;               // an add fused into the layer: out = add's clamp(conv + residual)
  const float* residual_ = nullptr;  // its other operand, dense ([pixel][out_.c]); may be y_ itself
  epilogue epilogue_;
};

// See convolution_runs_on_native_gemm.
bool pays_off(const layer& l, const tensor_shape& input) {
  const size_t n = size_t(l.output_channels), panels = (n + panel_width - 1) / panel_width;
  const size_t products = size_t(l.window.kernel_h) * size_t(l.window.kernel_w) * size_t(input.c);
  return 4 * n >= 3 * panels * panel_width && products >= 24;
}

}  // namespace

bool convolution_runs_on_native_gemm(const layer& l, const tensor_shape& input) {
  const window_params& w = l.window;
  // Groups of one input channel (depth multipliers) stay XNNPACK's: it may take them as depthwise
  // convolutions, whose taps go column by column.
  if (!(l.kind == layer_kind::convolution && l.groups >= 1 && input.c % l.groups == 0 &&
        l.output_channels % l.groups == 0 && (l.groups == 1 || input.c / l.groups > 1) && w.kernel_h >= 1 &&
        w.kernel_w >= 1 &&
        w.stride_h >= 1 && w.stride_w >= 1 && w.dilation_h >= 1 && w.dilation_w >= 1 && w.pad.top >= 0 &&
        w.pad.left >= 0 && w.pad.bottom >= 0 && w.pad.right >= 0 && input.c > 0 && l.output_channels > 0) ||
      xnnpack_convolutions_forced())
    return false;
  // Other grouped convolutions on AVX2 only: there XNNPACK's GEMM takes each group out of order on
  // Zen 1 and computes a whole 16-channel tile for RegNet's 8 channels per group; on AVX-512 it sums
  // in order, and 32-channel panels would waste more.
  if (cpu_has_avx512f())
    return (l.groups == 1 && (native_convolutions_forced() || pays_off(l, input))) || narrow_groups(l, input);
  return cpu_has_avx2_fma();
}

bool fully_connected_runs_on_native_gemm(const layer& l, const tensor_shape& input) {
  return l.kind == layer_kind::fully_connected && input.h == 1 && input.w == 1 && input.c > 0 &&
         l.output_channels > 0 && !cpu_has_avx512f() && cpu_has_avx2_fma() && !xnnpack_convolutions_forced();
}

result<std::unique_ptr<layer_operator>> create_gemm_fully_connected_operator(const layer& l,
                                                                             const tensor_shape& input) {
  if (!fully_connected_runs_on_native_gemm(l, input))
    return status::error("fully connected layer '" + l.name + "': not a [N, 1, 1, C] input on an AVX2 CPU");
  layer pointwise = l;
  pointwise.kind = layer_kind::convolution;
  pointwise.window = window_params{};  // 1x1, stride 1, no dilation, no padding
  pointwise.groups = 1;
  pointwise.output_shape = {input.n, 1, 1, l.output_channels};
  return create_gemm_convolution_operator(pointwise, input, 0);
}

bool xnnpack_gemm_sums_in_order() {
  static const bool in_order = [] {
    if (!cpuinfo_initialize() || cpuinfo_has_x86_avx512f() || !cpuinfo_has_x86_fma3()) return true;
    const cpuinfo_uarch uarch = cpuinfo_get_core(0)->uarch;
    return uarch != cpuinfo_uarch_zen && uarch != cpuinfo_uarch_dhyana;
  }();
  return in_order;
}

bool gemm_convolution_takes_residual(const layer& l, const tensor_shape& input) {
  return l.groups == 1 && input.c > 1 && cpu_has_avx512f() && convolution_runs_on_native_gemm(l, input) &&
         !narrow_groups(l, input);
}

result<std::unique_ptr<layer_operator>> create_gemm_convolution_operator(const layer& l, const tensor_shape& input,
                                                                         size_t output_pixel_stride,
                                                                         const activation* fused_add) {
  if (!convolution_runs_on_native_gemm(l, input))
    return status::error("convolution layer '" + l.name +
                         "': not a convolution with a valid window and groups on an AVX-512 or AVX2 CPU");
  if (fused_add != nullptr && !gemm_convolution_takes_residual(l, input))
    return status::error("convolution layer '" + l.name + "': cannot take an add fused into it (" +
                         std::to_string(l.groups) + " groups, " + std::to_string(input.c) + " input channels)");
  const size_t k = size_t(input.c) / size_t(l.groups), n = size_t(l.output_channels);
  const size_t taps = size_t(l.window.kernel_h) * size_t(l.window.kernel_w);
  if (l.weights.size() != taps * k * n || (!l.bias.empty() && l.bias.size() != n))
    return status::error("convolution layer '" + l.name + "': weights hold " + std::to_string(l.weights.size()) +
                         " floats and bias " + std::to_string(l.bias.size()) + ", expected " +
                         std::to_string(taps * k * n) + " and " + std::to_string(n));
  const window_params& w = l.window;
  const tensor_shape expected{input.n,
                              window_output_size(input.h, w.kernel_h, w.stride_h, w.dilation_h, w.pad.top, w.pad.bottom, false),
                              window_output_size(input.w, w.kernel_w, w.stride_w, w.dilation_w, w.pad.left, w.pad.right, false),
                              l.output_channels};
  if (l.output_shape != expected || expected.h < 1 || expected.w < 1)
    return status::error("convolution layer '" + l.name + "': output shape " + l.output_shape.to_string() +
                         " does not follow from input " + input.to_string());
  return std::unique_ptr<layer_operator>(new gemm_convolution_operator(l, input, output_pixel_stride, fused_add));
}

}  // namespace d3
