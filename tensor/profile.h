// The per-op profile: with VGG_PROFILE=1 in the environment (or profile::set_enabled(true)), every
// kernel call made through the registry (tensor/dispatch.h) is timed — CUDA events around GPU
// kernels (their GPU time, without launch gaps), the steady clock around CPU kernels — and counted
// with the bytes its contract says it moves. At exit the table is printed to stderr:
//   op (with its variant, binary:mul), device, dtype, calls, total ms, share of all kernel time, bytes moved, GB/s.
// Timing GPU work this way adds two event records per call; the numbers are kernel times, and the
// run's wall time grows a little.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"

namespace vgg::profile {

namespace detail {
extern bool g_enabled;
}
inline bool enabled() { return detail::g_enabled; }
void set_enabled(bool on);

struct Row {
  std::string op;
  DeviceType dev;
  DType dtype;
  int64_t calls = 0;
  double ms = 0;
  double bytes = 0;
};
// Harvests pending GPU timings (synchronises) and returns the rows, largest total first.
std::vector<Row> rows();
void reset();
// The table as text (empty when nothing was timed).
std::string table();

class Scope {
 public:
  Scope(const char* op, const char* label, Device dev, DType dtype, double bytes);  // label may be null
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  int slot_;
  bool gpu_;
  void* start_ = nullptr;  // CudaEvent* on the GPU
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace vgg::profile
