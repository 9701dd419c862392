// What this process's kernels compute, as a digest of the output bits of a fixed set of layers.
//
// d3's outputs are bit-identical across nodes only where the nodes' kernels sum the same terms in
// the same order. Within one machine they do (d3's native loops compute XNNPACK's bits). Across
// machines they may not: XNNPACK (2022) picks its f32 GEMM by CPU, and on AMD Zen 1 (family 23)
// that is 4x16s4, whose sums go in another order per output lane than the 5x16 of other AVX2
// CPUs, the 7x16 of AVX-512 ones or d3's own GEMM (measured here: 15 of 16 convolution shapes
// differ in 1-21% of their values). Two processes with equal fingerprints computed the same bits
// for every layer below; a node whose fingerprint differs from the app's makes outputs that are
// not bit-identical to the app's own single-process run.
#pragma once

#include <string>

#include "base/status.hpp"

namespace d3 {

// "<isa>-<16 hex digits>", e.g. "avx2-5c0f...": the vector ISA d3's native kernels use and an FNV-1a
// digest of the outputs of seeded layers (convolutions through GEMM and IGEMM, a 3-channel stem,
// depthwise 3x3 and 5x5, a grouped 3x3, a fully connected layer, layer norm and GELU) on one
// thread. Computed once per process (a few ms), then cached. Error: an operator could not be
// created or run.
result<std::string> arithmetic_fingerprint();
// The same, computed again (with the environment's D3_CONVOLUTION and vector widths as they are).
result<std::string> compute_arithmetic_fingerprint();

}  // namespace d3
