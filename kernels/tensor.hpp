// Dense float32 tensors in NHWC layout. A 2-D [N, C] tensor is NHWC with H = W = 1.
// Files and users see NCHW (PyTorch's order); conversions live here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>

namespace d3 {

struct tensor_shape {
  int n = 1, h = 1, w = 1, c = 1;

  size_t elements() const { return size_t(n) * size_t(h) * size_t(w) * size_t(c); }
  size_t bytes() const { return elements() * sizeof(float); }
  bool operator==(const tensor_shape& o) const { return n == o.n && h == o.h && w == o.w && c == o.c; }
  bool operator!=(const tensor_shape& o) const { return !(*this == o); }
  // "1x64x56x56" in PyTorch's NCHW order, as users read shapes.
  std::string to_string() const;
};

inline std::ostream& operator<<(std::ostream& out, const tensor_shape& s) { return out << s.to_string(); }

// Owns a 64-byte aligned buffer with slack after the last element: XNNPACK kernels may read
// (never write) up to XNN_EXTRA_BYTES past the end of an input.
class tensor {
 public:
  tensor() = default;
  explicit tensor(tensor_shape shape);  // zero-filled
  tensor(const tensor& other);
  tensor& operator=(const tensor& other);
  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor&&) noexcept = default;

  const tensor_shape& shape() const { return shape_; }
  size_t elements() const { return shape_.elements(); }
  size_t bytes() const { return shape_.bytes(); }
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  bool empty() const { return data_ == nullptr; }

 private:
  // Returns the buffer to the block pool (kernels/block_pool.hpp); `bytes` is what it was
  // acquired with.
  // (No member initialiser: it would keep the deleter from counting as default-constructible
  // inside the incomplete class; unique_ptr value-initialises it.)
  struct free_deleter {
    size_t bytes;
    void operator()(float* p) const;
  };
  tensor_shape shape_{0, 0, 0, 0};
  std::unique_ptr<float[], free_deleter> data_;
};

// Layout conversions between NHWC storage and NCHW exchange order (files, PyTorch).
void nchw_to_nhwc(const float* nchw, const tensor_shape& shape, float* nhwc);
void nhwc_to_nchw(const float* nhwc, const tensor_shape& shape, float* nchw);

// Bitwise equality of shape and contents (the lossless check).
bool bitwise_equal(const tensor& a, const tensor& b);

}  // namespace d3
