// CUDA runtime hooks: device discovery, synchronisation and events for the tensor layer. Compiled only when the CUDA
// toolkit is present; on a machine without a GPU it reports why no device is usable.
#include <cuda_runtime.h>

#include <string>

#include "tensor/device.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return std::string("CUDA error: ") + cudaGetErrorString(e);
  }
  return n == 0 ? "no CUDA device" : "";
}

void synchronize() {
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    cudaGetLastError();
    VGG_FAIL("CUDA error (a kernel failed or the device faulted): ", cudaGetErrorString(e));
  }
}

std::string device_name(int index) {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, index) != cudaSuccess) {
    cudaGetLastError();
    return "";
  }
  return p.name;
}

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();
  VGG_FAIL("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

void* event_create() {
  cudaEvent_t e = nullptr;
  check(cudaEventCreate(&e), "cudaEventCreate");
  return e;
}
void event_destroy(void* e) { cudaEventDestroy(static_cast<cudaEvent_t>(e)); }
void event_record(void* e) { check(cudaEventRecord(static_cast<cudaEvent_t>(e), 0), "cudaEventRecord"); }
double event_elapsed_ms(void* a, void* b) {
  check(cudaEventSynchronize(static_cast<cudaEvent_t>(b)), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(a), static_cast<cudaEvent_t>(b)), "cudaEventElapsedTime");
  return ms;
}

struct Registrar {
  Registrar() {
    set_cuda_runtime_hooks({&device_count, &unavailable_reason, &synchronize, &device_name, &event_create,
                            &event_destroy, &event_record, &event_elapsed_ms});
  }
} registrar;

}  // namespace
}  // namespace vgg::kernels::cuda
