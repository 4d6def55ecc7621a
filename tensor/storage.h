// Storage: a reference-counted byte buffer owned by an allocator of one device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

#include "tensor/device.h"

namespace vgg {

struct Allocator {
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
};

// The allocator of a device; CPU's is built in (64-byte aligned), CUDA's (one caching allocator
// per GPU, tensor/caching_allocator.h) is registered by the CUDA backend as a getter by device
// index. Throws a clear error when the device is unavailable.
Allocator* allocator_for(Device d);
using DeviceAllocatorGetter = Allocator* (*)(int index);
void register_allocator(DeviceType t, DeviceAllocatorGetter get);

// Raw byte copies between a host buffer and a device buffer (or two device buffers), installed by
// the device backend: kind 0 host->device, 1 device->host, 2 device->device; synchronous with
// respect to the host. Throws when no backend is linked in.
using DeviceCopyFn = void (*)(void* dst, const void* src, size_t nbytes, int kind, int device_index);
void register_device_copy(DeviceType t, DeviceCopyFn fn);
void device_copy_bytes(void* dst, Device dst_dev, const void* src, Device src_dev, size_t nbytes);

// Host (and fake-device) tensor memory: bytes held by live storages (rounded to 64) and the peak
// since start or the last reset; kernels' own scratch buffers are not counted.
struct HostMemoryStats {
  size_t allocated_bytes = 0, peak_allocated_bytes = 0;
};
HostMemoryStats host_memory_stats();
void reset_host_peak_memory();

struct Storage {
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data = nullptr;
  size_t nbytes = 0;
  Device device;
  Allocator* allocator = nullptr;
  int64_t version = 0;  // bumped by every in-place write, checked by autograd
};

}  // namespace vgg
