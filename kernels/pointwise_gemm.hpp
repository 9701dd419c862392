// 1x1 convolutions (stride 1, no padding, one group) as a native AVX-512 GEMM: the token layers of
// ViT, ConvNeXt's pointwise MLPs, DenseNet's bottlenecks, MobileNet's pointwise layers.
// XNNPACK (2022)'s AVX-512 GEMM kernel is 7 rows x 16 columns, one vector per row, which spends as
// many loads as FMAs; this one is 12 x 32 (24 accumulators, 14 loads per 24 FMAs). Measured on
// this machine's Zen 4 (warm caches): 177-225 GFLOP/s against XNNPACK's 146-185 on the shapes of
// vit_b_32, convnext_tiny and densenet121.
//
// Bit-identical to XNNPACK's convolution: every output value starts from its bias and adds
// input[k] * weight[k] with one FMA per k in increasing k, then clamps max-then-min, exactly as
// XNNPACK's f32 GEMM kernels do on AVX2 and AVX-512. So a node with this kernel and one without it
// compute the same bits, and a tile computes exactly the values of the whole tensor.
#pragma once

#include <memory>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/operators.hpp"

namespace d3 {

// True for a 1x1 convolution with stride 1, no padding and one group, on a CPU with AVX-512F,
// unless the environment sets D3_POINTWISE=xnnpack (for measuring the two side by side).
bool pointwise_runs_natively(const layer& l, const tensor_shape& input);

// Precondition: pointwise_runs_natively(l, input). `output_pixel_stride` as in operator_options
// (0: dense). Packs the weights once, in panels of 32 output channels.
result<std::unique_ptr<layer_operator>> create_pointwise_operator(const layer& l, const tensor_shape& input,
                                                                  size_t output_pixel_stride);

}  // namespace d3
