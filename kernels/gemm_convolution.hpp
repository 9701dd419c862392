// Convolutions with one group as a native AVX-512 GEMM over an indirection buffer (each output
// pixel's window as pointers to input pixels, a zero row for taps over padding): the 1x1 token
// layers of ViT, ConvNeXt's pointwise MLPs, the 3x3 and 1x1 layers of ResNet, DenseNet,
// GoogLeNet. XNNPACK (2022)'s AVX-512 kernels are 7 pixels x 16 channels, one vector per pixel,
// which spends as many loads as FMAs; these are 12 x 32 (24 accumulators, 14 loads per 24 FMAs;
// 8 x 32 through the indirection buffer, one window row per pointer for the stems). Measured on
// this machine's Zen 4, one thread, warm caches: 177-234 GFLOP/s against XNNPACK's 146-187 on the
// layer shapes of vit_b_32, convnext_tiny, densenet121 and resnet18.
//
// Bit-identical to XNNPACK's convolution (where xnnpack_gemm_sums_in_order()): every output value starts from its bias and adds
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

// Whether XNNPACK's f32 GEMM and IGEMM on this CPU sum each output's terms in order (bias, then
// one FMA per term: its 7x16 AVX-512 and 5x16 FMA3 kernels). On AMD Zen 1 and Hygon Dhyana it
// picks 4x16s4 instead (XNNPACK 2022's init), whose sums go through each block of four terms in a
// rotated order that depends on the output lane: other bits than every other CPU's.
bool xnnpack_gemm_sums_in_order();

// True for a convolution with one group on a CPU with AVX-512F where the GEMM pays off: its output
// channels fill at least 3/4 of the 32-channel panels (lanes past the last channel compute
// nothing; XNNPACK's 16-channel tiles waste less) and each output sums at least 24 products
// (below, XNNPACK's smaller tiles win). Measured on MNASNet's 1x1 layers, one thread: 32 -> 16
// channels at 112x112 0.128 ms native, 0.093 XNNPACK; 16 -> 48 0.159 and 0.133; 72 -> 40 at 28x28
// 0.034 and 0.030; 48 -> 24 at 56x56 0.044 and 0.055. The choice changes no bit (both compute
// XNNPACK's). On AVX2 with FMA3 (no AVX-512): every convolution with one group, on 6 x 16 blocks
// (measured on this machine's Zen CPU: resnet18's stem 2.7x and its 3x3 layers ~1.15x faster than
// XNNPACK's 4x16s4, and the sums in order, so such a node computes the bits of every other CPU
// rather than XNNPACK's Zen-only ones), and there also grouped ones with more than one input
// channel per group, each group on its own panels (RegNet's 8 channels per group fill half a
// panel, where XNNPACK computes a whole 16-channel tile). D3_CONVOLUTION=xnnpack makes it false
// (for measuring the two side by side), D3_CONVOLUTION=native true wherever the GEMM can run.
bool convolution_runs_on_native_gemm(const layer& l, const tensor_shape& input);

// Whether create_gemm_convolution_operator can fuse an add into `l` (AVX-512, one group, and the
// layer create_layer_operator would put on the GEMM).
bool gemm_convolution_takes_residual(const layer& l, const tensor_shape& input);

// Precondition: convolution_runs_on_native_gemm(l, input). `output_pixel_stride` as in
// operator_options (0: dense). Packs the weights once, in panels of 32 output channels.
// `fused_add` (precondition: gemm_convolution_takes_residual): the operator also computes the add
// that is the layer's only reader, with the add's clamp: setup() takes the add's other operand as
// a second input (dense, of the output's shape; it may be the output buffer itself), and each
// output is clamp_add(clamp_conv(sum) + residual), the bits of the two layers apart.
result<std::unique_ptr<layer_operator>> create_gemm_convolution_operator(const layer& l, const tensor_shape& input,
                                                                         size_t output_pixel_stride,
                                                                         const activation* fused_add = nullptr);

// A fully connected layer ([N, 1, 1, in] -> [N, 1, 1, out]) as the 1x1 convolution it is (its [out][in]
// weights are OHWI with one tap), on the GEMM, on AVX2 CPUs without AVX-512: there XNNPACK's fully
// connected operator runs its GEMM too, which on Zen 1 sums out of order and, measured on this
// machine's Zen CPU with two threads, wrote wrong values past the first 16 outputs (operators_test
// fully_connected_cases: 45 of 70 outputs). D3_CONVOLUTION=xnnpack makes it false.
bool fully_connected_runs_on_native_gemm(const layer& l, const tensor_shape& input);
// Precondition: fully_connected_runs_on_native_gemm(l, input).
result<std::unique_ptr<layer_operator>> create_gemm_fully_connected_operator(const layer& l, const tensor_shape& input);

}  // namespace d3
