#include "kernels/tensor.hpp"

#include "kernels/block_pool.hpp"

#include <cstdlib>
#include <cstring>
#include <new>

namespace d3 {

namespace {
constexpr size_t alignment = 64;
constexpr size_t slack_bytes = 64;  // >= XNN_EXTRA_BYTES (16)
}  // namespace

std::string tensor_shape::to_string() const {
  return std::to_string(n) + "x" + std::to_string(c) + "x" + std::to_string(h) + "x" + std::to_string(w);
}

void tensor::free_deleter::operator()(float* p) const { block_pool::instance().release(p, bytes); }

tensor::tensor(tensor_shape shape) : shape_(shape) {
  size_t bytes = (shape.bytes() + slack_bytes + alignment - 1) / alignment * alignment;
  void* p = block_pool::instance().acquire(bytes);
  if (p == nullptr) throw std::bad_alloc();
  std::memset(p, 0, bytes);
  data_ = std::unique_ptr<float[], free_deleter>(static_cast<float*>(p), free_deleter{bytes});
}

tensor::tensor(const tensor& other) : tensor(other.shape_) {
  if (other.data_) std::memcpy(data_.get(), other.data_.get(), other.bytes());
}

tensor& tensor::operator=(const tensor& other) {
  if (this != &other) *this = tensor(other);
  return *this;
}

void nchw_to_nhwc(const float* nchw, const tensor_shape& s, float* nhwc) {
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int h = 0; h < s.h; ++h)
        for (int w = 0; w < s.w; ++w)
          nhwc[((size_t(n) * s.h + h) * s.w + w) * s.c + c] = nchw[((size_t(n) * s.c + c) * s.h + h) * s.w + w];
}

void nhwc_to_nchw(const float* nhwc, const tensor_shape& s, float* nchw) {
  for (int n = 0; n < s.n; ++n)
    for (int c = 0; c < s.c; ++c)
      for (int h = 0; h < s.h; ++h)
        for (int w = 0; w < s.w; ++w)
          nchw[((size_t(n) * s.c + c) * s.h + h) * s.w + w] = nhwc[((size_t(n) * s.h + h) * s.w + w) * s.c + c];
}

bool bitwise_equal(const tensor& a, const tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.bytes()) == 0;
}

}  // namespace d3
