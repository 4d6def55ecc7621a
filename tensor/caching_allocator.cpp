#include "tensor/caching_allocator.h"

#include <algorithm>
#include <cstdio>

#include "tensor/error.h"

namespace vgg {

namespace {
constexpr size_t kSmallQuantum = 512, kLargeQuantum = size_t{2} << 20, kSmallLimit = size_t{1} << 20;
}

std::string format_bytes(size_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) v /= 1024, ++u;
  char b[48];
  if (u == 0)
    std::snprintf(b, sizeof b, "%zu B", n);
  else
    std::snprintf(b, sizeof b, "%.2f %s", v, units[u]);
  return b;
}

size_t CachingAllocator::round_size(size_t n) {
  n = std::max<size_t>(n, 1);
  const size_t q = n < kSmallLimit ? kSmallQuantum : kLargeQuantum;
  VGG_CHECK(n <= SIZE_MAX - q, "device allocation of ", n, " bytes is too large");
  return (n + q - 1) / q * q;
}

CachingAllocator::CachingAllocator(std::unique_ptr<DeviceMemory> mem) : mem_(std::move(mem)) {
  VGG_CHECK(mem_ != nullptr, "CachingAllocator: no device memory backend");
}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

void* CachingAllocator::take_cached(size_t rounded) {
  auto it = cached_.lower_bound(rounded);
  if (it == cached_.end() || it->first > 2 * rounded) return nullptr;
  void* p = it->second;
  live_[p] = it->first;
  st_.allocated_bytes += it->first;
  cached_.erase(it);
  return p;
}

void CachingAllocator::free_cached_locked() {
  for (auto& [size, p] : cached_) {
    mem_->raw_free(p);
    st_.reserved_bytes -= size;
    ++st_.raw_frees;
  }
  cached_.clear();
}

void* CachingAllocator::allocate(size_t nbytes) {
  const size_t rounded = round_size(nbytes);
  std::lock_guard<std::mutex> lock(mu_);
  ++st_.allocations;
  void* p = take_cached(rounded);
  if (p) {
    ++st_.cache_hits;
  } else {
    p = mem_->raw_alloc(rounded);
    if (!p && !cached_.empty()) {
      ++st_.oom_retries;
      free_cached_locked();
      p = mem_->raw_alloc(rounded);
    }
    if (!p) {
      --st_.allocations;
      size_t free_b = 0, total_b = 0;
      mem_->mem_info(&free_b, &total_b);
      VGG_FAIL(mem_->device_name(), " out of memory: tried to allocate ", format_bytes(nbytes), " (", nbytes,
               " bytes); the device has ", format_bytes(free_b), " free of ", format_bytes(total_b), ", vggflow tensors hold ",
               format_bytes(st_.allocated_bytes), " and its cache ", format_bytes(st_.reserved_bytes - st_.allocated_bytes));
    }
    ++st_.raw_allocations;
    st_.reserved_bytes += rounded;
    st_.peak_reserved_bytes = std::max(st_.peak_reserved_bytes, st_.reserved_bytes);
    live_[p] = rounded;
    st_.allocated_bytes += rounded;
  }
  st_.peak_allocated_bytes = std::max(st_.peak_allocated_bytes, st_.allocated_bytes);
  return p;
}

void CachingAllocator::deallocate(void* p, size_t) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(p);
  VGG_CHECK(it != live_.end(), mem_->device_name(), ": freeing a block this allocator does not own");
  st_.allocated_bytes -= it->second;
  cached_.emplace(it->second, p);
  live_.erase(it);
}

void CachingAllocator::empty_cache() {
  std::lock_guard<std::mutex> lock(mu_);
  free_cached_locked();
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return st_;
}

void CachingAllocator::reset_peaks() {
  std::lock_guard<std::mutex> lock(mu_);
  st_.peak_allocated_bytes = st_.allocated_bytes;
  st_.peak_reserved_bytes = st_.reserved_bytes;
}

namespace {
CachingAllocator* caching_allocator(Device d) {
  VGG_CHECK(!d.is_cpu(), "memory statistics: the CPU has no caching allocator");
  auto* a = dynamic_cast<CachingAllocator*>(allocator_for(d));
  VGG_CHECK(a != nullptr, "memory statistics: ", d.str(), " has no caching allocator");
  return a;
}
}  // namespace

AllocatorStats memory_stats(Device d) { return caching_allocator(d)->stats(); }
void empty_cache(Device d) { caching_allocator(d)->empty_cache(); }
void reset_peak_memory_stats(Device d) { caching_allocator(d)->reset_peaks(); }

}  // namespace vgg
