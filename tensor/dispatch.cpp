#include "tensor/dispatch.h"

#include <array>
#include <map>
#include <mutex>

#include "tensor/error.h"

namespace vgg {

namespace {
using Slots = std::array<std::array<void*, kNumDTypes>, kNumDeviceTypes>;
std::map<std::string, Slots>& table() {
  static std::map<std::string, Slots> t;
  return t;
}
std::mutex& table_mutex() {
  static std::mutex m;
  return m;
}
}  // namespace

void register_kernel(const char* op, DeviceType dev, DType dtype, void* fn) {
  std::lock_guard<std::mutex> lock(table_mutex());
  auto it = table().find(op);
  if (it == table().end()) {
    Slots s{};
    it = table().emplace(op, s).first;
  }
  it->second[static_cast<int>(dev)][static_cast<int>(dtype)] = fn;
}

void* find_kernel(const char* op, DeviceType dev, DType dtype) {
  if (dev == DeviceType::Fake) dev = DeviceType::CPU;  // the fake device runs the CPU's kernels
  std::lock_guard<std::mutex> lock(table_mutex());
  auto it = table().find(op);
  if (it == table().end()) return nullptr;
  return it->second[static_cast<int>(dev)][static_cast<int>(dtype)];
}

void throw_missing_kernel(const char* op, DeviceType dev, DType dtype) {
  std::string devname = dev == DeviceType::CPU ? "CPU" : dev == DeviceType::CUDA ? "CUDA" : "fake-device (CPU)";
  std::string hint = (dev == DeviceType::CUDA && !cuda_built()) ? " (built without CUDA?)" : "";
  VGG_FAIL("op '", op, "' has no ", devname, " ", dtype_name(dtype), " kernel", hint);
}

}  // namespace vgg
