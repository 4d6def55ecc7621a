#include "tensor/dispatch.h"

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "tensor/error.h"

namespace vgg {

namespace {
// registration-time bookkeeping only (the lookups on the hot path are the tags' own tables)
std::mutex& reg_mutex() {
  static std::mutex m;
  return m;
}
std::vector<KernelEntry>& entries() {
  static std::vector<KernelEntry> e;
  return e;
}
std::map<std::string, void* (*)(DeviceType, DType)>& by_name() {
  static std::map<std::string, void* (*)(DeviceType, DType)> m;
  return m;
}
}  // namespace

void note_registration(const char* op, DeviceType dev, DType dtype) {
  std::lock_guard<std::mutex> lock(reg_mutex());
  entries().push_back({op, dev, dtype});
}

void register_kernel_name(const char* op, void* (*lookup)(DeviceType, DType)) {
  std::lock_guard<std::mutex> lock(reg_mutex());
  by_name()[op] = lookup;
}

const std::vector<KernelEntry>& registered_kernels() { return entries(); }

void* find_kernel(const char* op, DeviceType dev, DType dtype) {
  std::lock_guard<std::mutex> lock(reg_mutex());
  auto it = by_name().find(op);
  return it == by_name().end() ? nullptr : it->second(dev, dtype);
}

void throw_missing_kernel(const char* op, DeviceType dev, DType dtype) {
  std::string devname = dev == DeviceType::CPU ? "CPU" : dev == DeviceType::CUDA ? "CUDA" : "fake-device (CPU)";
  std::string hint = (dev == DeviceType::CUDA && !cuda_built()) ? " (built without CUDA?)" : "";
  VGG_FAIL("op '", op, "' has no ", devname, " ", dtype_name(dtype), " kernel", hint);
}

}  // namespace vgg
