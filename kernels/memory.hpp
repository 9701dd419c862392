// Memory for tensors and packed weights. Large blocks are aligned to 2 MB and advised as
// transparent huge pages (this kernel only grants them on request: THP = madvise): the hardware
// prefetchers stop at every 4 KB page boundary, and streaming a fully connected layer's weights
// from DRAM, or a feature map through the cache, then stalls at each one. Measured side by side
// (d3-run, 1 thread): mobilenet_v2 8.55 -> 7.1 ms, VGG-16's fully connected layers 19.6 -> 17.4 ms.
#pragma once

#include <cstddef>

struct xnn_allocator;

namespace d3 {

// Aligned to max(alignment, 64); huge-page advised when `size` >= 2 MB. Released with free().
void* allocate_aligned(size_t alignment, size_t size);

// Process-wide malloc policy for programs that run inferences repeatedly (d3-node, the apps):
// freed memory stays in the process instead of going back to the kernel (mmap threshold at
// glibc's maximum, 32 MB; heaps trimmed only beyond 1 GB). Why: message buffers of every request
// (encoded bundles, CAF's serialisation buffers) have the same sizes each time, and memory fresh
// from the kernel costs a page fault per page, ~25 us each on paravirtualised guests. The cost:
// a process keeps its peak heap. All threads share one arena, so what one thread freed serves the
// next thread's message of that size. Call once, early in main, before threads start.
void retain_freed_memory();

// The allocator XNNPACK is initialised with (packed weights, workspaces).
const xnn_allocator* xnnpack_allocator();

}  // namespace d3
