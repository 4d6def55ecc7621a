// Device abstraction: CPU always; CUDA:n when the CUDA backend is built and a GPU is present; and
// "fake", host memory and the CPU's kernels under a device identity of their own, so that the code
// that moves models and data between devices (and every check that operands share a device) can
// be tested on any machine: a tensor on "fake" mixes with a CPU tensor no more than a GPU one would,
// and reaches the host only through the device-copy path.
#pragma once
#include <string>

namespace vgg {

enum class DeviceType : uint8_t { CPU = 0, CUDA = 1, Fake = 2 };
constexpr int kNumDeviceTypes = 3;

struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  static Device cpu() { return {DeviceType::CPU, 0}; }
  static Device cuda(int i = 0) { return {DeviceType::CUDA, i}; }
  static Device fake() { return {DeviceType::Fake, 0}; }
  bool is_cpu() const { return type == DeviceType::CPU; }
  bool is_cuda() const { return type == DeviceType::CUDA; }
  bool operator==(const Device& o) const { return type == o.type && index == o.index; }
  bool operator!=(const Device& o) const { return !(*this == o); }
  std::string str() const;
  static Device parse(const std::string& s);  // "cpu", "cuda", "cuda:1", "fake"
};

const char* device_type_name(DeviceType t);

// True when the CUDA backend was compiled in (it registers itself at load time).
bool cuda_built();
// Number of usable GPUs; 0 when not built or when no driver/device is present.
int cuda_device_count();
// Why CUDA is unavailable (empty when a device is usable).
std::string cuda_unavailable_reason();

// Waits until all work queued on the GPU has finished (no-op without CUDA); throws with the CUDA
// error string if a kernel failed. For timing and tests; copies to the host synchronise anyway.
void cuda_synchronize();
// The GPU's name ("NVIDIA H100 80GB HBM3"), empty without one.
std::string cuda_device_name(int index = 0);

// A CUDA event on the current GPU, recorded on the stream every kernel is queued on (the legacy
// default stream: the engine is single-stream, which is what lets the caching allocator hand a
// freed block to the next request at once). For timing GPU work without host overheads:
//   CudaEvent a, b; a.record(); ...queue work...; b.record(); double ms = CudaEvent::elapsed_ms(a, b);
// elapsed_ms waits for b. Creating one without a usable GPU throws with the reason.
class CudaEvent {
 public:
  CudaEvent();
  ~CudaEvent();
  CudaEvent(const CudaEvent&) = delete;
  CudaEvent& operator=(const CudaEvent&) = delete;
  void record();
  static double elapsed_ms(const CudaEvent& start, const CudaEvent& end);

 private:
  void* e_ = nullptr;
  bool recorded_ = false;
};

// Hooks the CUDA backend installs when it is linked in.
struct CudaRuntimeHooks {
  int (*device_count)() = nullptr;
  std::string (*unavailable_reason)() = nullptr;
  void (*synchronize)() = nullptr;
  std::string (*device_name)(int) = nullptr;
  void* (*event_create)() = nullptr;
  void (*event_destroy)(void*) = nullptr;
  void (*event_record)(void*) = nullptr;
  double (*event_elapsed_ms)(void*, void*) = nullptr;
};
void set_cuda_runtime_hooks(const CudaRuntimeHooks& h);

}  // namespace vgg
