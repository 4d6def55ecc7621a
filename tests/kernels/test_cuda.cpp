// CUDA runtime and device memory. Without a usable GPU every test skips with the CUDA error string;
// with one: the device is reported, tensors move to the GPU and back bit-identically (every dtype,
// non-contiguous and broadcast host sources, more than one staging chunk), the caching allocator
// reuses blocks and counts them, an impossible allocation fails with one line saying how much was
// asked and how much is free, and an unsupported shape (attention with head size 300) is refused in one line.
#include "autograd/ops.h"
#include "tensor/caching_allocator.h"
#include "tests/support/test_support.h"

using namespace vgg;

TEST(CudaRuntime, ReportsDevicesOrSkips) {
  VGG_REQUIRE_CUDA();
  EXPECT_TRUE(cuda_built());
  EXPECT_GT(cuda_device_count(), 0);
  EXPECT_EQ(cuda_unavailable_reason(), "");
  EXPECT_TRUE(test::throws_error([] { zeros({4}, {DType::F32, Device::cuda(cuda_device_count())}); }, {"is not available"}));
}

TEST(CudaMemory, RoundTripsEveryDtypeBitExactly) {
  VGG_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64, DType::BF16, DType::I64, DType::I32}) {
    SCOPED_TRACE(dtype_name(dt));
    Tensor h = ops::to(ops::mul(test::rnd({3, 5, 7}, 1), 100.0), dt);
    Tensor d = ops::to(h, Device::cuda());
    EXPECT_TRUE(d.device().is_cuda());
    Tensor back = ops::to(d, Device::cpu());
    EXPECT_TRUE(test::all_close(ops::to(back, DType::F64), ops::to(h, DType::F64), 0, 0));
  }
}

TEST(CudaMemory, StridedAndBroadcastHostSourcesAndLargeCopies) {
  VGG_REQUIRE_CUDA();
  Tensor h = test::rnd({64, 48}, 2);
  Tensor t = ops::transpose(h, 0, 1);  // non-contiguous host view
  Tensor back = ops::to(ops::to(t, Device::cuda()), Device::cpu());
  EXPECT_TRUE(test::all_close(back, ops::contiguous(t), 0, 0));
  Tensor z = zeros({5, 3}, {DType::F32, Device::cuda()});  // a broadcast scalar fill from the host
  EXPECT_TRUE(test::all_close(ops::to(z, Device::cpu()), zeros({5, 3}), 0, 0));
  // 24 MiB of f32: three chunks of the 8 MiB staging buffer, the last one partial
  Tensor big = test::rnd({6 * 1024 * 1024 + 123}, 3, DType::F32);
  EXPECT_TRUE(test::all_close(ops::to(ops::to(big, Device::cuda()), Device::cpu()), big, 0, 0));
}

TEST(CudaMemory, CachingAllocatorReusesBlocksAndReportsOutOfMemory) {
  VGG_REQUIRE_CUDA();
  const Device d = Device::cuda();
  empty_cache(d);
  reset_peak_memory_stats(d);
  const AllocatorStats s0 = memory_stats(d);
  {
    Tensor a = empty({1 << 20}, DType::F32, d);  // 4 MiB
    EXPECT_GE(memory_stats(d).allocated_bytes, s0.allocated_bytes + (size_t{4} << 20));
  }
  const AllocatorStats s1 = memory_stats(d);
  { Tensor b = empty({1 << 20}, DType::F32, d); }
  const AllocatorStats s2 = memory_stats(d);
  EXPECT_EQ(s2.raw_allocations, s1.raw_allocations);  // the second 4 MiB came from the cache
  EXPECT_EQ(s2.cache_hits, s1.cache_hits + 1);
  EXPECT_GE(s2.peak_allocated_bytes, s0.allocated_bytes + (size_t{4} << 20));
  EXPECT_TRUE(test::throws_error([&] { empty({int64_t{1} << 48}, DType::F32, d); },
                                 {"cuda:0 out of memory", "tried to allocate 1.00 PiB", "free of"}));
  Tensor after = ops::to(ops::to(test::rnd({8}, 4), d), Device::cpu());  // the device still works
  EXPECT_TRUE(test::all_close(after, test::rnd({8}, 4), 0, 0));
}

TEST(CudaMemory, UnsupportedShapesAreRefusedClearly) {
  VGG_REQUIRE_CUDA();
  Tensor a = ops::to(test::rnd({4}, 5, DType::F32), Device::cuda());
  Tensor q = ops::to(test::rnd({1, 2, 8, 300}, 6, DType::F32), Device::cuda());
  EXPECT_TRUE(test::throws_error([&] { ops::attention(q, q, q, 0.25); }, {"attention (CUDA): head sizes up to 256"}));
}

// The same Philox counters give the same numbers on the GPU as on the CPU: uniform and randint
// bit for bit, normal draws to the last bits of the device's log/sin/cos.
TEST(CudaRng, SameNumbersAsTheCpu) {
  VGG_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64, DType::BF16}) {
    SCOPED_TRACE(dtype_name(dt));
    Generator g1(42, 7), g2(42, 7);
    Tensor cu = rand({1001}, {dt, Device::cpu()}, &g1), gu = rand({1001}, {dt, Device::cuda()}, &g2);
    EXPECT_TRUE(test::all_close(ops::to(ops::to(gu, Device::cpu()), DType::F64), ops::to(cu, DType::F64), 0, 0));
    Tensor cn = randn({1001}, {dt, Device::cpu()}, &g1), gn = randn({1001}, {dt, Device::cuda()}, &g2);
    EXPECT_TRUE(test::all_close(ops::to(ops::to(gn, Device::cpu()), DType::F64), ops::to(cn, DType::F64), 1e-14,
                                dt == DType::F64 ? 1e-14 : dt == DType::F32 ? 1.2e-7 : 8e-3));
  }
  Generator g1(5), g2(5);
  Tensor ci = randint(-3, 11, {999}, {DType::I64}, &g1), gi = randint(-3, 11, {999}, {DType::I64, Device::cuda()}, &g2);
  EXPECT_EQ(ops::to(gi, Device::cpu()).to_vector(), ci.to_vector());
}

TEST(CudaMemory, CpuOnlyErrorsWithoutTheBackend) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a GPU is present";
  EXPECT_TRUE(test::throws_error([] { zeros({4}, {DType::F32, Device::cuda(0)}); }, {"cuda:0", "is not available"}));
  EXPECT_TRUE(test::throws_error([] { CudaEvent e; }, {"CudaEvent: no usable GPU"}));
}

// Events time the work queued between them: five 2048³ GEMMs take longer than five 256³ ones,
// and both times are positive.
TEST(CudaRuntime, EventsTimeTheQueuedWork) {
  VGG_REQUIRE_CUDA();
  NoGradGuard ng;
  auto time_gemm = [](int64_t n) {
    Tensor a = ops::to(test::rnd({n, n}, 1, DType::F32), Device::cuda()), b = ops::to(test::rnd({n, n}, 2, DType::F32), Device::cuda());
    ops::matmul(a, b);  // warm-up
    cuda_synchronize();
    CudaEvent s, e;
    s.record();
    for (int i = 0; i < 5; ++i) ops::matmul(a, b);
    e.record();
    return CudaEvent::elapsed_ms(s, e);
  };
  const double small = time_gemm(256), big = time_gemm(2048);
  EXPECT_GT(small, 0);
  EXPECT_GT(big, small);
}
