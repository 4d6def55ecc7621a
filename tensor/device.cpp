#include "tensor/device.h"

#include "tensor/error.h"

namespace vgg {

namespace {
CudaRuntimeHooks& hooks() {
  static CudaRuntimeHooks h;
  return h;
}
}  // namespace

const char* device_type_name(DeviceType t) {
  return t == DeviceType::CPU ? "cpu" : t == DeviceType::CUDA ? "cuda" : "fake";
}

std::string Device::str() const {
  if (type == DeviceType::CPU) return "cpu";
  if (type == DeviceType::Fake) return "fake";
  return "cuda:" + std::to_string(index);
}

Device Device::parse(const std::string& s) {
  if (s == "cpu") return cpu();
  if (s == "cuda") return cuda(0);
  if (s == "fake") return fake();
  if (s.rfind("cuda:", 0) == 0) {
    try {
      size_t used = 0;
      int i = std::stoi(s.substr(5), &used);
      if (used == s.size() - 5 && i >= 0) return cuda(i);
    } catch (...) {
    }
  }
  VGG_FAIL("invalid device '", s, "' (expected cpu, cuda, cuda:N or fake)");
}

void set_cuda_runtime_hooks(const CudaRuntimeHooks& h) { hooks() = h; }
bool cuda_built() { return hooks().device_count != nullptr; }
int cuda_device_count() { return hooks().device_count ? hooks().device_count() : 0; }
std::string cuda_unavailable_reason() {
  if (!hooks().device_count) return "vggflow was built without CUDA";
  if (hooks().device_count() > 0) return "";
  return hooks().unavailable_reason ? hooks().unavailable_reason() : "no CUDA device";
}

void cuda_synchronize() {
  if (hooks().synchronize && cuda_device_count() > 0) hooks().synchronize();
}
std::string cuda_device_name(int index) {
  return hooks().device_name && index < cuda_device_count() ? hooks().device_name(index) : "";
}

CudaEvent::CudaEvent() {
  VGG_CHECK(hooks().event_create && cuda_device_count() > 0, "CudaEvent: no usable GPU (", cuda_unavailable_reason(), ")");
  e_ = hooks().event_create();
}
CudaEvent::~CudaEvent() {
  if (e_ && hooks().event_destroy) hooks().event_destroy(e_);
}
void CudaEvent::record() {
  hooks().event_record(e_);
  recorded_ = true;
}
double CudaEvent::elapsed_ms(const CudaEvent& start, const CudaEvent& end) {
  VGG_CHECK(start.recorded_ && end.recorded_, "CudaEvent::elapsed_ms: both events must be recorded first");
  return hooks().event_elapsed_ms(start.e_, end.e_);
}

}  // namespace vgg
