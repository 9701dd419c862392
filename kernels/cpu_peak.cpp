#include "kernels/cpu_peak.hpp"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>

namespace d3 {

namespace {

using peak_clock = std::chrono::steady_clock;

double seconds_since(peak_clock::time_point start) {
  return std::chrono::duration<double>(peak_clock::now() - start).count();
}

// 12 independent accumulator chains hide the FMA latency (4 cycles) on two FMA pipes. The body is
// spelled out per instruction set so every intrinsic stays inside a function of that target.
#define D3_FMA_CHAINS(VEC, SET1, FMA, LANES)                                \
  VEC a = SET1(0.999999f), b = SET1(1e-7f);                                 \
  VEC acc[12];                                                              \
  for (VEC & v : acc) v = SET1(1.0f);                                       \
  long iterations = 0;                                                      \
  const auto start = peak_clock::now();                                     \
  double elapsed = 0;                                                       \
  do {                                                                      \
    for (int k = 0; k < 1000; ++k)                                          \
      for (VEC & v : acc) v = FMA(v, a, b);                                 \
    iterations += 1000;                                                     \
    elapsed = seconds_since(start);                                         \
  } while (elapsed < seconds);                                              \
  float lanes[LANES];                                                       \
  volatile float sink = 0;                                                  \
  for (VEC & v : acc) {                                                     \
    std::memcpy(lanes, &v, sizeof lanes);                                   \
    sink = sink + lanes[0];                                                 \
  }                                                                         \
  return double(iterations) * 12 * LANES * 2 / elapsed / 1e9;

__attribute__((target("avx512f"))) double peak_avx512(double seconds) {
  D3_FMA_CHAINS(__m512, _mm512_set1_ps, _mm512_fmadd_ps, 16)
}

__attribute__((target("avx2,fma"))) double peak_avx2(double seconds) {
  D3_FMA_CHAINS(__m256, _mm256_set1_ps, _mm256_fmadd_ps, 8)
}

}  // namespace

double measure_fma_peak_gflops(double seconds) {
  __builtin_cpu_init();
  double (*probe)(double) = nullptr;
  if (__builtin_cpu_supports("avx512f"))
    probe = peak_avx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    probe = peak_avx2;
  if (probe == nullptr) return 0;
  // The first tens of milliseconds run slow (clock ramp, wide-vector unit wake-up) and the machine
  // is shared: the peak is the best of many short windows.
  double best = 0;
  for (int window = 0; window < 10; ++window) best = std::max(best, probe(seconds / 10));
  return best;
}

}  // namespace d3
