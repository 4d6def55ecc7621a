// A caching allocator for device memory, independent of the device API (no CUDA header here):
// a DeviceMemory backend makes the raw allocations (cudaMalloc in kernels/cuda/allocator.cu, a
// fake in the tests); this class keeps freed blocks for reuse, counts statistics, and turns a
// failed allocation into one line that says how much was asked, how much the device has free and
// how much vggflow holds.
//
// Policy (simple and predictable; no block splitting yet):
//   * sizes round up to 512 B below 1 MiB and to 2 MiB multiples above, so similar requests share
//     blocks;
//   * a request takes the smallest cached block of at least its rounded size and at most twice it
//     (a bigger block stays cached for a bigger request), else a fresh raw allocation;
//   * when the backend runs out, every cached block goes back to it and the request is retried
//     once before the error;
//   * stream order: every block is used on the one default stream of its device, so a block freed
//     by a tensor is safe to hand out again at once (work on it was queued before any later use).
//     Multiple streams will tag blocks with their stream and record events before reuse.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "tensor/storage.h"

namespace vgg {

struct DeviceMemory {
  virtual ~DeviceMemory() = default;
  virtual void* raw_alloc(size_t nbytes) = 0;  // nullptr when the device is out of memory
  virtual void raw_free(void* p) = 0;
  virtual void mem_info(size_t* free_bytes, size_t* total_bytes) = 0;
  virtual std::string device_name() const = 0;  // "cuda:0"
};

struct AllocatorStats {
  size_t allocated_bytes = 0, peak_allocated_bytes = 0;  // held by live tensors (rounded sizes)
  size_t reserved_bytes = 0, peak_reserved_bytes = 0;    // obtained from the backend (live + cached)
  int64_t allocations = 0;      // requests served
  int64_t cache_hits = 0;       // ... of them from the cache
  int64_t raw_allocations = 0;  // backend allocations
  int64_t raw_frees = 0;        // backend frees (empty_cache, out-of-memory retries)
  int64_t oom_retries = 0;      // cache flushes forced by an out-of-memory backend
};

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(std::unique_ptr<DeviceMemory> mem);
  ~CachingAllocator() override;  // returns cached blocks (live ones belong to their tensors)
  void* allocate(size_t nbytes) override;
  void deallocate(void* p, size_t nbytes) override;

  void empty_cache();  // every cached block back to the backend
  AllocatorStats stats() const;
  void reset_peaks();  // peaks := current values
  static size_t round_size(size_t nbytes);

 private:
  void* take_cached(size_t rounded);
  void free_cached_locked();
  std::unique_ptr<DeviceMemory> mem_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> cached_;       // block size -> block
  std::unordered_map<void*, size_t> live_;    // block -> block size
  AllocatorStats st_;
};

// The statistics and cache of a device's caching allocator (throws for the CPU or an unavailable device).
AllocatorStats memory_stats(Device d);
void empty_cache(Device d);
void reset_peak_memory_stats(Device d);

// "1.50 GiB", "512 B" (binary units).
std::string format_bytes(size_t n);

}  // namespace vgg
