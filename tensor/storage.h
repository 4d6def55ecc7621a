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

// The allocator for a device type; CPU's is built in (64-byte aligned), CUDA's is
// registered by the CUDA backend. Throws a clear error when the device is unavailable.
Allocator* allocator_for(Device d);
void register_allocator(DeviceType t, Allocator* a);

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
