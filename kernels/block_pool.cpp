#include "kernels/block_pool.hpp"

#include <cstdlib>

#include "kernels/memory.hpp"

namespace d3 {

namespace {
constexpr size_t page = size_t(4) << 10;
constexpr size_t huge_page = size_t(2) << 20;
}  // namespace

block_pool& block_pool::instance() {
  // Never destroyed: tensors in static storage may be released after main returns.
  static block_pool* pool = new block_pool();
  return *pool;
}

size_t block_pool::size_class(size_t bytes) {
  if (bytes < min_pooled_bytes) return (bytes + 63) / 64 * 64;
  const size_t unit = bytes >= huge_page ? huge_page : page;
  return (bytes + unit - 1) / unit * unit;
}

void* block_pool::acquire(size_t bytes) {
  const size_t size = size_class(bytes);
  if (size >= min_pooled_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++acquisitions_;
    auto it = free_.find(size);
    if (it != free_.end()) {
      void* block = it->second;
      free_.erase(it);
      cached_ -= size;
      ++hits_;
      return block;
    }
  }
  return allocate_aligned(64, size);
}

void block_pool::release(void* block, size_t bytes) {
  if (block == nullptr) return;
  const size_t size = size_class(bytes);
  if (size >= min_pooled_bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + size <= capacity_) {
      free_.emplace(size, block);
      cached_ += size;
      return;
    }
  }
  std::free(block);
}

void block_pool::set_capacity(size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  capacity_ = bytes;
  // Largest blocks first: they free the most for one call and are the likeliest to be rare.
  while (cached_ > capacity_ && !free_.empty()) {
    auto last = std::prev(free_.end());
    cached_ -= last->first;
    std::free(last->second);
    free_.erase(last);
  }
}

size_t block_pool::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cached_;
}

size_t block_pool::hits() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return hits_;
}

size_t block_pool::pooled_acquisitions() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return acquisitions_;
}

}  // namespace d3
