// Recycles the large aligned blocks tensors live in.
//
// Why: every request allocates the same tensor sizes again (layer outputs, tiles, decoded
// inputs), and memory fresh from the kernel costs a page fault per 4 KB page on first touch.
// glibc returns large blocks to the kernel on free (mmap'd chunks, trimmed heaps), so without
// recycling each request faults its whole working set in again. On the paravirtualised guests
// this project is measured on a fault costs ~25 us (a 3 MB tensor: ~20 ms); perf put 35% of a
// device node's time in tensor::tensor, most of it in page faults.
//
// Invariants: a cached block was allocated by allocate_aligned with exactly its size class's
// bytes and is owned by the pool alone; the cached bytes never exceed the capacity (a release
// beyond it frees the block). Thread-safe (one mutex: a lookup per tensor is cheap next to the
// work on it).
#pragma once

#include <cstddef>
#include <map>
#include <mutex>

namespace d3 {

class block_pool {
 public:
  // Blocks below this size are malloc's business (its bins recycle them without faults).
  static constexpr size_t min_pooled_bytes = size_t(64) << 10;

  static block_pool& instance();

  // A block of at least `bytes`, 64-byte aligned (huge-page aligned from 2 MB, as
  // allocate_aligned), contents unspecified; nullptr when out of memory. `bytes` must be passed
  // again to release().
  void* acquire(size_t bytes);
  // Takes back a block acquire(bytes) returned (nullptr: nothing).
  void release(void* block, size_t bytes);

  // The most bytes kept cached; lowering it frees cached blocks beyond it. Default 256 MB.
  void set_capacity(size_t bytes);
  size_t cached_bytes() const;
  // Acquisitions a cached block served, and all pooled acquisitions (sizes >= min_pooled_bytes).
  size_t hits() const;
  size_t pooled_acquisitions() const;

  // The bytes a block for `bytes` really has (its size class).
  static size_t size_class(size_t bytes);

 private:
  block_pool() = default;

  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;  // size class -> cached blocks
  size_t cached_ = 0, capacity_ = size_t(256) << 20;
  size_t hits_ = 0, acquisitions_ = 0;
};

}  // namespace d3
