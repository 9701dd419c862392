// Convolutions with one group as a native AVX-512 GEMM over an indirection buffer (each output
// pixel's window as pointers to input pixels, a zero row for taps over padding): the 1x1 token
// layers of ViT, ConvNeXt's pointwise MLPs, the 3x3 and 1x1 layers of ResNet, DenseNet,
// GoogLeNet. XNNPACK (2022)'s AVX-512 kernels are 7 pixels x 16 channels, one vector per pixel,
// which spends as many loads as FMAs; these are 12 x 32 (24 accumulators, 14 loads per 24 FMAs;
// 8 x 32 through the indirection buffer, one window row per pointer for the stems). Measured on
// this machine's Zen 4, one thread, warm caches: 177-234 GFLOP/s against XNNPACK's 146-187 on the
// layer shapes of vit_b_32, convnext_tiny, densenet121 and resnet18.
//
// Bit-identical to XNNPACK's convolution: every output value starts from its bias and adds
// input * weight with one FMA per term, taps row by row, input channels in order within a tap
// (over padding: a zero input, as XNNPACK's zero buffer), then clamps max-then-min, exactly as
// XNNPACK's f32 GEMM and IGEMM kernels do on AVX2 and AVX-512. So a node with these kernels and one
// without compute the same bits, and a tile computes exactly the values of the whole tensor.
#pragma once

#include <memory>

#include "base/status.hpp"
#include "kernels/graph.hpp"
#include "kernels/operators.hpp"

namespace d3 {

// True for a convolution with one group on a CPU with AVX-512F, unless the environment sets
// D3_CONVOLUTION=xnnpack (for measuring the two side by side).
bool convolution_runs_on_native_gemm(const layer& l, const tensor_shape& input);

// Precondition: convolution_runs_on_native_gemm(l, input). `output_pixel_stride` as in
// operator_options (0: dense). Packs the weights once, in panels of 32 output channels.
result<std::unique_ptr<layer_operator>> create_gemm_convolution_operator(const layer& l, const tensor_shape& input,
                                                                         size_t output_pixel_stride);

}  // namespace d3
