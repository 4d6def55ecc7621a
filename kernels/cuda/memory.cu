// CUDA device memory for the tensor layer: one caching allocator per GPU
// (tensor/caching_allocator.h) over cudaMalloc/cudaFree, and host <-> device byte copies through
// a page-locked staging buffer. Everything runs on the legacy default stream, so a copy is ordered
// after the kernels queued before it and the host sees its result when the call returns.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tensor/caching_allocator.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clear a sticky error so the next call reports its own
  VGG_FAIL("CUDA error in ", what, ": ", cudaGetErrorString(e));
}

// Makes device i current for the scope.
struct DeviceScope {
  int prev = 0;
  explicit DeviceScope(int i) {
    check(cudaGetDevice(&prev), "cudaGetDevice");
    if (prev != i) check(cudaSetDevice(i), "cudaSetDevice");
  }
  ~DeviceScope() { cudaSetDevice(prev); }
};

class CudaMemory final : public DeviceMemory {
 public:
  explicit CudaMemory(int index) : index_(index) {}
  void* raw_alloc(size_t n) override {
    DeviceScope s(index_);
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, n);
    if (e == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      return nullptr;
    }
    check(e, "cudaMalloc");
    return p;
  }
  void raw_free(void* p) override {
    DeviceScope s(index_);
    check(cudaFree(p), "cudaFree");
  }
  void mem_info(size_t* free_b, size_t* total_b) override {
    DeviceScope s(index_);
    if (cudaMemGetInfo(free_b, total_b) != cudaSuccess) {
      cudaGetLastError();
      *free_b = *total_b = 0;
    }
  }
  std::string device_name() const override { return "cuda:" + std::to_string(index_); }

 private:
  int index_;
};

// One allocator per device, created on first use and never destroyed (the CUDA runtime may be
// gone when static destructors run).
Allocator* allocator_of(int index) {
  static std::mutex mu;
  static auto* table = new std::vector<std::unique_ptr<CachingAllocator>>();
  std::lock_guard<std::mutex> lock(mu);
  if (table->size() <= static_cast<size_t>(index)) table->resize(static_cast<size_t>(index) + 1);
  auto& a = (*table)[static_cast<size_t>(index)];
  if (!a) a = std::make_unique<CachingAllocator>(std::make_unique<CudaMemory>(index));
  return a.get();
}

// kind: 0 host->device, 1 device->host, 2 device->device. Host buffers are pageable, so bytes go
// through one 8 MiB page-locked buffer in chunks (what the driver would do, without its extra copy
// into its own staging area).
void copy_bytes(void* dst, const void* src, size_t n, int kind, int index) {
  DeviceScope s(index);
  if (kind == 2) {
    check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "cudaMemcpy device->device");
    return;
  }
  constexpr size_t kChunk = size_t{8} << 20;
  static std::mutex mu;
  static void* pinned = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (!pinned) check(cudaMallocHost(&pinned, kChunk), "cudaMallocHost (staging buffer)");
  for (size_t off = 0; off < n; off += kChunk) {
    const size_t c = std::min(kChunk, n - off);
    if (kind == 0) {
      std::memcpy(pinned, static_cast<const char*>(src) + off, c);
      check(cudaMemcpy(static_cast<char*>(dst) + off, pinned, c, cudaMemcpyHostToDevice), "cudaMemcpy host->device");
    } else {
      check(cudaMemcpy(pinned, static_cast<const char*>(src) + off, c, cudaMemcpyDeviceToHost), "cudaMemcpy device->host");
      std::memcpy(static_cast<char*>(dst) + off, pinned, c);
    }
  }
}

struct Registrar {
  Registrar() {
    register_allocator(DeviceType::CUDA, &allocator_of);
    register_device_copy(DeviceType::CUDA, &copy_bytes);
  }
} registrar;

}  // namespace
}  // namespace vgg::kernels::cuda
