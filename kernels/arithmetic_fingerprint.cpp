#include "kernels/arithmetic_fingerprint.hpp"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "kernels/cpu_features.hpp"
#include "kernels/operators.hpp"
#include "kernels/tensor.hpp"

namespace d3 {

namespace {

// A fixed pseudo-random sequence (the fingerprint must not depend on the standard library).
struct lcg {
  uint64_t state;
  float uniform() {  // in [-1, 1)
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return float(int32_t(state >> 32)) / 2147483648.0f;
  }
};

// Weights at He scale, so activations stay at unit scale and no sum is all rounding noise.
std::vector<float> he_values(size_t count, size_t fan_in, lcg& r) {
  const float scale = std::sqrt(6.0f / float(fan_in));
  std::vector<float> v(count);
  for (float& x : v) x = r.uniform() * scale;
  return v;
}

layer convolution(const char* name, int kernel, int stride, int pad, int in_c, int out_c, int groups, lcg& r) {
  layer l;
  l.name = name;
  l.kind = layer_kind::convolution;
  l.window.kernel_h = l.window.kernel_w = kernel;
  l.window.stride_h = l.window.stride_w = stride;
  l.window.pad = {pad, pad, pad, pad};
  l.groups = groups;
  l.output_channels = out_c;
  const size_t fan_in = size_t(kernel) * size_t(kernel) * size_t(in_c / groups);
  l.weights = weight_blob::from_vector(he_values(size_t(out_c) * fan_in, fan_in, r));
  l.bias = weight_blob::from_vector(he_values(size_t(out_c), 16, r));
  return l;
}

uint64_t fnv1a(uint64_t h, const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < size; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// Runs `l` on `input` (one thread) and folds the output's bits into `digest`.
status fold_layer(layer l, const tensor& input, uint64_t& digest) {
  l.inputs = {0};  // one producer (which one does not matter outside a graph)
  D3_RETURN_IF_ERROR(infer_layer_shape(l, {input.shape()}, l.output_shape));
  auto op = create_layer_operator(l, {input.shape()});
  if (!op.is_ok()) return status::error("arithmetic fingerprint: " + op.message());
  tensor y(l.output_shape);
  D3_RETURN_IF_ERROR((*op)->setup({input.data()}, y.data(), nullptr));
  D3_RETURN_IF_ERROR((*op)->run(nullptr));
  digest = fnv1a(digest, y.data(), y.elements() * sizeof(float));
  return status::ok();
}

tensor random_input(tensor_shape shape, lcg& r) {
  tensor t(shape);
  for (size_t i = 0; i < t.elements(); ++i) t.data()[i] = r.uniform() * 1.7f;
  return t;
}

}  // namespace

result<std::string> compute_arithmetic_fingerprint() {
  D3_RETURN_IF_ERROR(initialize_compute());
  lcg r{0xD3F1};
  uint64_t digest = 14695981039346656037ull;
  // Channel counts off every vector width (tails), windows that go through the IGEMM with one
  // pointer per tap and as spans, pixel counts off every block size.
  const tensor image = random_input({1, 13, 11, 3}, r);
  const tensor map = random_input({1, 9, 7, 37}, r);
  const tensor wide = random_input({1, 6, 5, 70}, r);
  D3_RETURN_IF_ERROR(fold_layer(convolution("stem", 7, 2, 3, 3, 24, 1, r), image, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("pointwise", 1, 1, 0, 37, 40, 1, r), map, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("pointwise_wide", 1, 1, 0, 70, 64, 1, r), wide, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("conv3x3", 3, 1, 1, 37, 33, 1, r), map, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("conv3x3_s2", 3, 2, 1, 70, 48, 1, r), wide, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("depthwise3x3", 3, 1, 1, 37, 37, 37, r), map, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("depthwise5x5", 5, 2, 2, 70, 70, 70, r), wide, digest));
  D3_RETURN_IF_ERROR(fold_layer(convolution("grouped3x3", 3, 1, 1, 70, 70, 5, r), wide, digest));
  layer fc;
  fc.name = "fully_connected";
  fc.kind = layer_kind::fully_connected;
  fc.output_channels = 17;
  const tensor vector = random_input({1, 1, 1, 70}, r);
  fc.weights = weight_blob::from_vector(he_values(17 * 70, 70, r));
  fc.bias = weight_blob::from_vector(he_values(17, 16, r));
  D3_RETURN_IF_ERROR(fold_layer(fc, vector, digest));
  layer norm;
  norm.name = "layer_norm";
  norm.kind = layer_kind::layer_norm;
  norm.weights = weight_blob::from_vector(he_values(2 * 37, 1, r));  // gamma | beta
  D3_RETURN_IF_ERROR(fold_layer(norm, map, digest));
  layer gelu;
  gelu.name = "gelu";
  gelu.kind = layer_kind::gelu;
  D3_RETURN_IF_ERROR(fold_layer(gelu, map, digest));
  const char* isa = cpu_has_avx512f() ? "avx512" : cpu_has_avx2_fma() ? "avx2" : "sse";
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(digest));
  return std::string(isa) + "-" + hex;
}

result<std::string> arithmetic_fingerprint() {
  static std::once_flag once;
  static result<std::string> cached = status::error("arithmetic fingerprint: not computed");
  std::call_once(once, [] { cached = compute_arithmetic_fingerprint(); });
  return cached;
}

}  // namespace d3
