// Depthwise convolutions of up to 25 taps (MobileNet's, MNASNet's and EfficientNet's 3x3 and 5x5)
// as a native loop: four output pixels by two channel vectors at a time, so eight independent sums
// hide the FMA latency and each weight vector loads once for four pixels (1.25 loads per FMA;
// XNNPACK (2022)'s kernels compute one pixel at a time, 2 loads per FMA). AVX-512 (16 lanes) where
// the CPU has it, else AVX2 with FMA3 (8 lanes). Measured on a Zen 4, one thread: MNASNet's 17
// depthwise layers 1.43 ms on XNNPACK, 1.05 ms here (docs/results.md, "SiLU in one pass, a native
// depthwise loop"); on a Zen 1 EPYC (AVX2), MNASNet's 3x3 and 5x5 layers of 32 to 1152 channels
// 1.2-1.45x faster than XNNPACK's (alone, warm caches, alternating runs).
//
// Bit-identical to XNNPACK's depthwise convolution: every output value starts from its bias and
// adds input * weight with one FMA per tap, then clamps max-then-min. The taps go in XNNPACK's
// order: column by column, row by row within a column, for the windows its depthwise kernels take
// (3, 4, 9, 25 taps), row by row for the others (its IGEMM); a tap over padding reads zeros (its
// zero buffer). So a node with this loop and one without compute the same bits, and a tile
// computes exactly the values of the whole tensor.
#pragma once

#include <memory>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/operators.hpp"

namespace d3 {

// True for a depthwise convolution (one input and one output channel per group) of at most 25 taps
// on a CPU with AVX-512F or AVX2 and FMA3, unless the environment sets D3_CONVOLUTION=xnnpack or it
// is a per-channel affine (channel_affine_runs_natively: 1x1, stride 1, no padding).
bool depthwise_runs_on_native_fma(const layer& l, const tensor_shape& input);

// Precondition: depthwise_runs_on_native_fma(l, input). `output_pixel_stride` as in
// operator_options (0: dense).
result<std::unique_ptr<layer_operator>> create_fma_depthwise_operator(const layer& l, const tensor_shape& input,
                                                                      size_t output_pixel_stride);

}  // namespace d3
