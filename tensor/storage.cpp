#include "tensor/storage.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>
#include <new>

#include "tensor/error.h"

namespace vgg {

namespace {
std::atomic<size_t> g_host_bytes{0}, g_host_peak{0};

struct CpuAllocator final : Allocator {
  static size_t rounded(size_t nbytes) { return (std::max<size_t>(nbytes, 1) + 63) / 64 * 64; }
  void* allocate(size_t nbytes) override {
    const size_t n = rounded(nbytes);
    void* p = std::aligned_alloc(64, n);
    VGG_CHECK(p != nullptr, "out of host memory: could not allocate ", nbytes, " bytes");
    const size_t now = g_host_bytes.fetch_add(n) + n;
    for (size_t peak = g_host_peak.load(); now > peak && !g_host_peak.compare_exchange_weak(peak, now);) {
    }
    return p;
  }
  void deallocate(void* p, size_t nbytes) override {
    std::free(p);
    g_host_bytes.fetch_sub(rounded(nbytes));
  }
};

DeviceAllocatorGetter& slot(DeviceType t) {
  static DeviceAllocatorGetter table[kNumDeviceTypes] = {nullptr, nullptr, nullptr};
  return table[static_cast<int>(t)];
}
// the fake device's memory is host memory; its copies are memcpy
void fake_copy(void* dst, const void* src, size_t nbytes, int, int) { std::memcpy(dst, src, nbytes); }
DeviceCopyFn& copy_slot(DeviceType t) {
  static DeviceCopyFn table[kNumDeviceTypes] = {nullptr, nullptr, &fake_copy};
  return table[static_cast<int>(t)];
}
}  // namespace

void register_allocator(DeviceType t, DeviceAllocatorGetter get) { slot(t) = get; }
void register_device_copy(DeviceType t, DeviceCopyFn fn) { copy_slot(t) = fn; }

Allocator* allocator_for(Device d) {
  static CpuAllocator cpu;
  if (d.is_cpu() || d.type == DeviceType::Fake) return &cpu;
  DeviceAllocatorGetter get = slot(d.type);
  VGG_CHECK(get != nullptr, "device ", d.str(), " is not available: ",
            cuda_built() ? "the CUDA tensor backend registered no allocator" : "vggflow was built without CUDA");
  VGG_CHECK(d.index >= 0 && d.index < cuda_device_count(), "device ", d.str(), " is not available: ",
            cuda_device_count() > 0 ? "there are " + std::to_string(cuda_device_count()) + " CUDA devices"
                                    : cuda_unavailable_reason());
  return get(d.index);
}

void device_copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes) {
  VGG_CHECK(!(dst_dev.is_cpu() && src_dev.is_cpu()), "device_copy_bytes: both sides are on the host");
  VGG_CHECK(dst_dev.is_cpu() || src_dev.is_cpu() || dst_dev == src_dev, "copy: ", src_dev.str(), " -> ", dst_dev.str(),
            " (between two GPUs) is not supported");
  const Device dev = dst_dev.is_cpu() ? src_dev : dst_dev;
  DeviceCopyFn fn = copy_slot(dev.type);
  VGG_CHECK(fn != nullptr, "copy to or from ", dev.str(), ": no device backend is linked in");
  if (nbytes == 0) return;
  fn(dst, src, nbytes, src_dev.is_cpu() ? 0 : dst_dev.is_cpu() ? 1 : 2, dev.index);
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev), allocator(allocator_for(dev)) {
  data = allocator->allocate(n);
}

Storage::~Storage() {
  if (data) allocator->deallocate(data, nbytes);
}

HostMemoryStats host_memory_stats() { return {g_host_bytes.load(), g_host_peak.load()}; }
void reset_host_peak_memory() { g_host_peak.store(g_host_bytes.load()); }

}  // namespace vgg
