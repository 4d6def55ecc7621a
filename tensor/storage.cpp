#include "tensor/storage.h"

#include <cstdlib>
#include <new>

#include "tensor/error.h"

namespace vgg {

namespace {
struct CpuAllocator final : Allocator {
  void* allocate(size_t nbytes) override {
    size_t n = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, n);
    VGG_CHECK(p != nullptr, "out of host memory: could not allocate ", nbytes, " bytes");
    return p;
  }
  void deallocate(void* p, size_t) override { std::free(p); }
};

Allocator*& slot(DeviceType t) {
  static Allocator* table[kNumDeviceTypes] = {nullptr, nullptr};
  return table[static_cast<int>(t)];
}
}  // namespace

void register_allocator(DeviceType t, Allocator* a) { slot(t) = a; }

Allocator* allocator_for(Device d) {
  if (d.is_cpu()) {
    static CpuAllocator cpu;
    return &cpu;
  }
  Allocator* a = slot(d.type);
  VGG_CHECK(a != nullptr, "device ", d.str(), " is not available: ",
            cuda_built() ? "the CUDA tensor backend is not implemented yet" : "vggflow was built without CUDA");
  VGG_CHECK(d.index < cuda_device_count(), "device ", d.str(), " is not available: ", cuda_unavailable_reason());
  return a;
}

Storage::Storage(size_t n, Device dev) : nbytes(n), device(dev), allocator(allocator_for(dev)) {
  data = allocator->allocate(n);
}

Storage::~Storage() {
  if (data) allocator->deallocate(data, nbytes);
}

}  // namespace vgg
