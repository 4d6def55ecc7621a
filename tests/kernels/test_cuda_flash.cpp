// The tensor-core flash-attention forward (kernels/cuda/flash_fwd.cu: bf16, head sizes 64 and 128)
// against the f64 reference with the flash-attention rule (DESIGN.md §4): its error must stay
// within twice the error of a naive bf16 implementation (scores, softmax and P·V each rounded to
// bf16, as eager bf16 code does), and nothing may be NaN. Sequence lengths are not multiples of the
// 64-row tiles, queries and keys differ in length, and one case has the MMDiT's joint length
// 4096 + 333. The backward that consumes the flash forward's log-sum-exp is checked too. Skips
// without a GPU.
#include <cmath>

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

TEST(CudaFlash, BackwardFromTheFlashForwardMatchesTheF64Reference) {
  VGG_REQUIRE_CUDA();
  for (int64_t d : {64, 128}) {
    SCOPED_TRACE("d=" + std::to_string(d));
    const double scale = 1.0 / std::sqrt(static_cast<double>(d));
    Tensor q0 = ops::to(test::rnd({2, 99, d}, 41), DType::BF16), k0 = ops::to(test::rnd({2, 140, d}, 42), DType::BF16);
    Tensor v0 = ops::to(test::rnd({2, 140, d}, 43), DType::BF16), w = test::rnd({2, 99, d}, 44);
    std::vector<Tensor> g[2];
    for (int dev = 0; dev < 2; ++dev) {
      const Device D = dev ? Device::cuda() : Device::cpu();
      const DType dt = dev ? DType::BF16 : DType::F64;
      Tensor q = ops::to(ops::to(q0, dt), D).detach().requires_grad_(true);
      Tensor k = ops::to(ops::to(k0, dt), D).detach().requires_grad_(true);
      Tensor v = ops::to(ops::to(v0, dt), D).detach().requires_grad_(true);
      Tensor o = ops::attention(q, k, v, scale);
      backward(ops::sum(ops::mul(ops::to(o, DType::F64), ops::to(w, D))));
      for (const Tensor& t : {q, k, v}) g[dev].push_back(ops::to(ops::to(t.grad(), Device::cpu()), DType::F64));
    }
    // bf16 gradients: a few bf16 units of the gradient's scale
    for (int i = 0; i < 3; ++i) {
      const double sd = std::sqrt(ops::mean(ops::square(g[0][i])).item());
      EXPECT_LE(max_abs_diff(g[1][i], g[0][i]), 0.05 * sd + 1e-3) << "gradient " << i;
    }
  }
}

}  // namespace
