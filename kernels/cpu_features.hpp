// What the CPU offers, for kernels that choose a vector width at run time. Every such choice must
// compute the same bits on every path (see native_operators.cpp, pointwise_gemm.hpp).
#pragma once

namespace d3 {

// AVX-512 Foundation, with the OS saving its registers (libgcc's check includes XCR0).
inline bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

}  // namespace d3
