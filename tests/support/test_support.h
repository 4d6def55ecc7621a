// Shared test helpers: seeded random inputs, closeness assertions, non-contiguous copies,
// test-data paths and the CUDA skip gate.
#pragma once
#include <gtest/gtest.h>

#include <string>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"

namespace vgg::test {

// N(0, 1) values (or U[lo, hi) with uniform_in) from a fixed seed.
Tensor rnd(const Shape& shape, uint64_t seed, DType dtype = DType::F64);
Tensor rnd_uniform(const Shape& shape, double lo, double hi, uint64_t seed, DType dtype = DType::F64);

// The same values in a non-contiguous layout (every other element of a larger buffer).
Tensor noncontig(const Tensor& t);

// max |a - ref| <= atol + rtol * |ref| elementwise; shapes must match. Returns a failure
// message naming the worst element.
::testing::AssertionResult all_close(const Tensor& a, const Tensor& ref, double atol, double rtol);

// Runs fn and checks it throws vgg::Error whose message contains every fragment.
template <typename F>
::testing::AssertionResult throws_error(F&& fn, std::initializer_list<const char*> fragments) {
  try {
    fn();
  } catch (const vgg::Error& e) {
    std::string msg = e.what();
    for (const char* f : fragments)
      if (msg.find(f) == std::string::npos)
        return ::testing::AssertionFailure() << "message '" << msg << "' lacks '" << f << "'";
    return ::testing::AssertionSuccess();
  } catch (const std::exception& e) {
    return ::testing::AssertionFailure() << "threw a non-vgg exception: " << e.what();
  }
  return ::testing::AssertionFailure() << "did not throw";
}

std::string data_path(const std::string& relative);  // under tests/data

// Σ |grad| over the tensors' gradients (an undefined gradient counts 0).
double grad_abs_sum(const std::vector<Tensor>& params);

// Skips the current test (with the CUDA error string) when no GPU is usable.
#define VGG_REQUIRE_CUDA()                                                              \
  do {                                                                                  \
    if (::vgg::cuda_device_count() == 0) GTEST_SKIP() << ::vgg::cuda_unavailable_reason(); \
  } while (0)

}  // namespace vgg::test

#define EXPECT_GRADCHECK(result)                             \
  do {                                                       \
    auto _r = (result);                                      \
    EXPECT_TRUE(_r.ok) << _r.message;                        \
    EXPECT_GT(_r.entries, 0) << "gradcheck compared nothing"; \
  } while (0)
