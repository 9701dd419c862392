// Measures this core's float32 fused-multiply-add peak, the yardstick for kernel efficiency.
#pragma once

namespace d3 {

// GFLOP/s of one thread running independent FMA chains (AVX-512 when the CPU has it, else
// AVX2+FMA, else 0): the best of ten windows over about `seconds`. Counts 2 FLOP per lane per FMA.
double measure_fma_peak_gflops(double seconds = 0.5);

}  // namespace d3
