// What the CPU offers, for kernels that choose a vector width at run time. Every such choice must
// compute the same bits on every path (see native_operators.cpp, gemm_convolution.hpp).
#pragma once

#include <cstdlib>
#include <cstring>

namespace d3 {

// AVX-512 Foundation, with the OS saving its registers (libgcc's check includes XCR0).
inline bool cpu_has_avx512f() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}

// AVX2 with FMA3 (the OS saving the YMM registers): XNNPACK's fma3 kernels, and d3's 256-bit ones.
inline bool cpu_has_avx2_fma() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

// D3_CONVOLUTION=xnnpack in the environment: the convolutions d3 runs natively only to be faster
// (not those XNNPACK lacks) go to XNNPACK, for measuring the two side by side and for tests that
// compare their bits. Read at each operator's creation.
inline bool xnnpack_convolutions_forced() {
  const char* v = std::getenv("D3_CONVOLUTION");
  return v != nullptr && std::strcmp(v, "xnnpack") == 0;
}

// D3_CONVOLUTION=native: the native kernels take every convolution they can compute, also where
// XNNPACK's would be faster (for tests that compare the two on every shape).
inline bool native_convolutions_forced() {
  const char* v = std::getenv("D3_CONVOLUTION");
  return v != nullptr && std::strcmp(v, "native") == 0;
}

}  // namespace d3
