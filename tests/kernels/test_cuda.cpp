// CUDA gate: without a usable GPU these tests skip with the CUDA error string; with one they
// check that the backend reports the device and that device tensors are refused clearly
// until the CUDA tensor backend lands.
#include "tests/support/test_support.h"

using namespace vgg;

TEST(CudaRuntime, ReportsDevicesOrSkips) {
  VGG_REQUIRE_CUDA();
  EXPECT_TRUE(cuda_built());
  EXPECT_GT(cuda_device_count(), 0);
  EXPECT_EQ(cuda_unavailable_reason(), "");
  // CUDA tensors are not implemented yet: allocation must fail with a clear message
  EXPECT_TRUE(test::throws_error([] { zeros({4}, {DType::F32, Device::cuda(0)}); }, {"cuda:0", "not implemented"}));
}
