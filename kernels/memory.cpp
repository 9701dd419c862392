#include "kernels/memory.hpp"

#include <malloc.h>
#include <sys/mman.h>
#include <xnnpack.h>

#include <algorithm>
#include <cstdlib>

namespace d3 {

namespace {

constexpr size_t huge_page = size_t(2) << 20;

void* xnn_allocate(void*, size_t size) { return std::malloc(size); }
void* xnn_reallocate(void*, void* pointer, size_t size) { return std::realloc(pointer, size); }
void xnn_deallocate(void*, void* pointer) { std::free(pointer); }
void* xnn_aligned_allocate(void*, size_t alignment, size_t size) { return allocate_aligned(alignment, size); }
void xnn_aligned_deallocate(void*, void* pointer) { std::free(pointer); }

const xnn_allocator allocator = {nullptr,       xnn_allocate,         xnn_reallocate,
                                 xnn_deallocate, xnn_aligned_allocate, xnn_aligned_deallocate};

}  // namespace

void* allocate_aligned(size_t alignment, size_t size) {
  alignment = std::max<size_t>(alignment, 64);
  if (size >= huge_page) {
    const size_t rounded = (size + huge_page - 1) / huge_page * huge_page;
    void* p = std::aligned_alloc(huge_page, rounded);
    if (p != nullptr) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
    return p;
  }
  return std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
}

void retain_freed_memory() {
  // Setting either disables glibc's dynamic thresholds, which would otherwise grow them only after
  // the first mmap'd block of each size has been freed (and trim heaps at twice that).
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  // One arena for every thread: CAF runs a stage on whichever worker thread is free, and with an
  // arena per thread a bundle's buffers came from an arena that had never held one of that size,
  // faulted in afresh (measured: a DenseNet-121 scatter encoding ~0.8 MB took 0.3 ms of thread CPU
  // time on most requests and 3.2 ms on some). The freed memory retained above is then retained
  // for all of them; the allocations are per message, few enough for one lock.
  mallopt(M_ARENA_MAX, 1);
}

const xnn_allocator* xnnpack_allocator() { return &allocator; }

}  // namespace d3
