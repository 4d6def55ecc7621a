// The device-independent caching allocator (tensor/caching_allocator.h) over a fake device with a
// fixed capacity: rounding, reuse from the cache, statistics, the out-of-memory retry and message.
#include <set>

#include "tensor/caching_allocator.h"
#include "tests/support/test_support.h"

using namespace vgg;

namespace {

// A device of `capacity` bytes; hands out distinct fake addresses and records every call.
struct FakeMemory final : DeviceMemory {
  size_t capacity, used = 0;
  int allocs = 0, frees = 0;
  std::map<void*, size_t> live;
  uintptr_t next = 0x1000;
  explicit FakeMemory(size_t cap) : capacity(cap) {}
  void* raw_alloc(size_t n) override {
    if (used + n > capacity) return nullptr;
    void* p = reinterpret_cast<void*>(next);
    next += n + 4096;
    live[p] = n, used += n, ++allocs;
    return p;
  }
  void raw_free(void* p) override {
    used -= live.at(p);
    live.erase(p);
    ++frees;
  }
  void mem_info(size_t* f, size_t* t) override { *f = capacity - used, *t = capacity; }
  std::string device_name() const override { return "fake:0"; }
};

constexpr size_t MiB = size_t{1} << 20;

}  // namespace

TEST(CachingAllocator, RoundsSizes) {
  EXPECT_EQ(CachingAllocator::round_size(0), 512u);
  EXPECT_EQ(CachingAllocator::round_size(1), 512u);
  EXPECT_EQ(CachingAllocator::round_size(513), 1024u);
  EXPECT_EQ(CachingAllocator::round_size(MiB - 1), MiB);
  EXPECT_EQ(CachingAllocator::round_size(MiB), 2 * MiB);
  EXPECT_EQ(CachingAllocator::round_size(5 * MiB + 1), 6 * MiB);
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3 * MiB / 2), "1.50 MiB");
}

TEST(CachingAllocator, ReusesFreedBlocksAndCountsEverything) {
  auto fake = std::make_unique<FakeMemory>(64 * MiB);
  FakeMemory* m = fake.get();
  CachingAllocator a(std::move(fake));
  void* p = a.allocate(1000);
  void* q = a.allocate(3 * MiB);
  EXPECT_NE(p, q);
  AllocatorStats s = a.stats();
  EXPECT_EQ(s.allocated_bytes, 1024 + 4 * MiB);
  EXPECT_EQ(s.reserved_bytes, s.allocated_bytes);
  EXPECT_EQ(s.raw_allocations, 2);
  a.deallocate(p, 1000);
  EXPECT_EQ(a.stats().allocated_bytes, 4 * MiB);
  EXPECT_EQ(a.stats().reserved_bytes, 1024 + 4 * MiB);  // cached, not returned
  EXPECT_EQ(a.allocate(700), p);                         // same rounded size: the cached block
  EXPECT_EQ(a.stats().cache_hits, 1);
  a.deallocate(q, 3 * MiB);
  void* r = a.allocate(MiB + 10);  // 2 MiB rounded: the 4 MiB block is at most twice that
  EXPECT_EQ(r, q);
  a.deallocate(r, MiB + 10);
  void* t = a.allocate(1000 * 1000);  // 1 MiB-ish rounds to 1000448 B; 4 MiB is more than twice: a new block
  EXPECT_NE(t, q);
  s = a.stats();
  EXPECT_EQ(s.allocations, 5);
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.raw_allocations, 3);
  EXPECT_EQ(s.peak_allocated_bytes, 1024 + 4 * MiB);
  EXPECT_EQ(m->allocs, 3);
  a.reset_peaks();
  EXPECT_EQ(a.stats().peak_allocated_bytes, a.stats().allocated_bytes);
  a.empty_cache();  // the cached 4 MiB block goes back; live blocks stay
  EXPECT_EQ(m->frees, 1);
  EXPECT_EQ(a.stats().reserved_bytes, a.stats().allocated_bytes);
  EXPECT_TRUE(test::throws_error([&] { a.deallocate(reinterpret_cast<void*>(0x42), 8); }, {"fake:0", "does not own"}));
}

TEST(CachingAllocator, OutOfMemoryFlushesTheCacheThenSaysWhatWasAskedAndWhatIsFree) {
  auto fake = std::make_unique<FakeMemory>(10 * MiB);
  FakeMemory* m = fake.get();
  CachingAllocator a(std::move(fake));
  void* p = a.allocate(6 * MiB);
  a.deallocate(p, 6 * MiB);  // cached: 6 MiB reserved, none in use
  void* q = a.allocate(8 * MiB);  // does not fit beside the cached block: flush, retry
  EXPECT_NE(q, nullptr);
  EXPECT_EQ(a.stats().oom_retries, 1);
  EXPECT_EQ(m->frees, 1);
  const AllocatorStats before = a.stats();
  EXPECT_TRUE(test::throws_error([&] { a.allocate(5 * MiB); },
                                 {"fake:0 out of memory", "tried to allocate 5.00 MiB (5242880 bytes)", "2.00 MiB free of 10.00 MiB",
                                  "tensors hold 8.00 MiB", "cache 0 B"}));
  EXPECT_EQ(a.stats().allocations, before.allocations);  // the failed request is not counted
  a.deallocate(q, 8 * MiB);
}
