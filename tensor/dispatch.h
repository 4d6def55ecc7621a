// The kernel registry: (op name, device type, dtype) -> function pointer.
// kernels/cpu and kernels/cuda register their implementations at load time;
// a missing entry throws a vgg::Error naming the op, device and dtype.
#pragma once
#include <string>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace vgg {

void register_kernel(const char* op, DeviceType dev, DType dtype, void* fn);
void* find_kernel(const char* op, DeviceType dev, DType dtype);  // nullptr when missing
[[noreturn]] void throw_missing_kernel(const char* op, DeviceType dev, DType dtype);

template <typename Fn>
Fn get_kernel(const char* op, Device dev, DType dtype) {
  void* f = find_kernel(op, dev.type, dtype);
  if (!f) throw_missing_kernel(op, dev.type, dtype);
  return reinterpret_cast<Fn>(f);
}

struct KernelRegistrar {
  KernelRegistrar(const char* op, DeviceType dev, DType dtype, void* fn) { register_kernel(op, dev, dtype, fn); }
};

}  // namespace vgg

#define VGG_CONCAT_INNER(a, b) a##b
#define VGG_CONCAT(a, b) VGG_CONCAT_INNER(a, b)
#define VGG_REGISTER_KERNEL(op, dev, dtype, fn)                                          \
  static ::vgg::KernelRegistrar VGG_CONCAT(vgg_kernel_registrar_, __COUNTER__)(         \
      op, ::vgg::DeviceType::dev, ::vgg::DType::dtype, reinterpret_cast<void*>(fn))
