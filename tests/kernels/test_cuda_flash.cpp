// The tensor-core flash-attention forward (kernels/cuda/flash_fwd.cu: bf16, head sizes 64 and 128)
// against the f64 reference with the flash-attention rule (DESIGN.md §4): its error must stay
// within twice the error of a naive bf16 implementation (scores, softmax and P·V each rounded to
// bf16, as eager bf16 code does), and nothing may be NaN. Sequence lengths are not multiples of the
// 64-row tiles, queries and keys differ in length, and one case has the MMDiT's joint length
// 4096 + 333. The flash backward (fed by the forward's log-sum-exp) is checked against f64 and for
// determinism (two runs, the same bits). Skips without a GPU.
#include <cmath>
#include <cstring>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tests/support/test_support.h"

using namespace vgg;

namespace {

double max_abs_diff(const Tensor& a, const Tensor& b) {
  return ops::amax(ops::abs(ops::sub(ops::to(a, DType::F64), ops::to(b, DType::F64)))).item();
}

struct FlashShape {
  int64_t bh, sq, sk, d;
};

TEST(CudaFlash, ForwardMeetsTheFlashAttentionErrorRule) {
  VGG_REQUIRE_CUDA();
  const FlashShape shapes[] = {{3, 130, 130, 64}, {2, 77, 333, 128}, {4, 1, 65, 64}, {2, 4429, 4429, 64}};
  for (const auto& s : shapes) {
    SCOPED_TRACE("bh=" + std::to_string(s.bh) + " sq=" + std::to_string(s.sq) + " sk=" + std::to_string(s.sk) +
                 " d=" + std::to_string(s.d));
    const double scale = 1.0 / std::sqrt(static_cast<double>(s.d));
    NoGradGuard ng;
    Tensor q = ops::to(test::rnd({s.bh, s.sq, s.d}, 31), DType::BF16), k = ops::to(test::rnd({s.bh, s.sk, s.d}, 32), DType::BF16);
    Tensor v = ops::to(test::rnd({s.bh, s.sk, s.d}, 33), DType::BF16);
    // f64 reference on the bf16 inputs, and the naive bf16 computation, on the CPU
    Tensor ref = ops::attention(ops::to(q, DType::F64), ops::to(k, DType::F64), ops::to(v, DType::F64), scale);
    Tensor sc = ops::mul(ops::matmul(q, ops::transpose(k, 1, 2)), scale);
    Tensor naive = ops::matmul(ops::softmax(sc, -1), v);
    const double naive_err = max_abs_diff(naive, ref);
    Tensor flash = ops::to(ops::attention(ops::to(q, Device::cuda()), ops::to(k, Device::cuda()),
                                          ops::to(v, Device::cuda()), scale),
                           Device::cpu());
    ASSERT_EQ(flash.dtype(), DType::BF16);
    const double flash_err = max_abs_diff(flash, ref);
    std::cout << "[ flash bf16 ] bh " << s.bh << " sq " << s.sq << " sk " << s.sk << " d " << s.d
              << ": max error " << flash_err << " (naive bf16 " << naive_err << ")\n";
    EXPECT_TRUE(std::isfinite(flash_err));
    EXPECT_LE(flash_err, 2 * naive_err);
  }
}

TEST(CudaFlash, BackwardMeetsTheFlashAttentionErrorRule) {
  VGG_REQUIRE_CUDA();
  for (int64_t d : {64, 128}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    Tensor q0 = ops::to(test::rnd({2, 99, d}, 41), DType::BF16), k0 = ops::to(test::rnd({2, 140, d}, 42), DType::BF16);
    Tensor v0 = ops::to(test::rnd({2, 140, d}, 43), DType::BF16), go0 = ops::to(test::rnd({2, 99, d}, 44), DType::BF16);
    // 0: f64 reference; 1: naive bf16 composition on the CPU; 2: the flash kernels on the GPU
    std::vector<Tensor> g[3];
    for (int run = 0; run < 3; ++run) {
      const Device D = run == 2 ? Device::cuda() : Device::cpu();
      const DType dt = run == 0 ? DType::F64 : DType::BF16;
      Tensor q = ops::to(ops::to(q0, dt), D).detach().requires_grad_(true);
      Tensor k = ops::to(ops::to(k0, dt), D).detach().requires_grad_(true);
      Tensor v = ops::to(ops::to(v0, dt), D).detach().requires_grad_(true);
      Tensor o = ops::attention(q, k, v, scale, run == 1 ? ops::AttentionImpl::Naive : ops::AttentionImpl::Tiled);
      auto gr = grad({o}, {q, k, v}, {ops::to(ops::to(go0, dt), D)});
      for (const Tensor& t : gr) g[run].push_back(ops::to(ops::to(t, Device::cpu()), DType::F64));
    }
    const char* what[] = {"dq", "dk", "dv"};
    for (int i = 0; i < 3; ++i) {
      const double naive_err = max_abs_diff(g[1][i], g[0][i]), flash_err = max_abs_diff(g[2][i], g[0][i]);
      std::cout << "[ flash bf16 backward ] d " << d << " " << what[i] << ": max error " << flash_err << " (naive bf16 "
                << naive_err << ")\n";
      EXPECT_TRUE(std::isfinite(flash_err)) << what[i];
      EXPECT_LE(flash_err, 2 * naive_err) << what[i];
    }
  }
}

// The backward has no atomics: two runs give the same bits, at a shape with many key and query
// tiles (the MMDiT's joint length, both head sizes).
TEST(CudaFlash, BackwardIsDeterministic) {
  VGG_REQUIRE_CUDA();
  for (int64_t d : {64, 128}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    Tensor q0 = ops::to(ops::to(test::rnd({2, 4429, d}, 51), DType::BF16), Device::cuda());
    Tensor k0 = ops::to(ops::to(test::rnd({2, 4429, d}, 52), DType::BF16), Device::cuda());
    Tensor v0 = ops::to(ops::to(test::rnd({2, 4429, d}, 53), DType::BF16), Device::cuda());
    Tensor go = ops::to(ops::to(test::rnd({2, 4429, d}, 54), DType::BF16), Device::cuda());
    std::vector<Tensor> runs[2];
    for (int r = 0; r < 2; ++r) {
      Tensor q = q0.detach().requires_grad_(true), k = k0.detach().requires_grad_(true), v = v0.detach().requires_grad_(true);
      auto g = grad({ops::attention(q, k, v, 0.125)}, {q, k, v}, {go});
      for (auto& t : g) runs[r].push_back(ops::to(t, Device::cpu()));
    }
    for (int i = 0; i < 3; ++i) {
      const size_t bytes = static_cast<size_t>(runs[0][i].numel()) * 2;
      EXPECT_EQ(std::memcmp(runs[0][i].data_ptr(), runs[1][i].data_ptr(), bytes), 0) << "gradient " << i;
    }
  }
}

}  // namespace
