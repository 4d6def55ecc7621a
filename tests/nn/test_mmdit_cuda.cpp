// The tiny SD3 and SD3.5-style MMDiTs forward and backward on the GPU against the CPU (f32 and
// f64): the output and every parameter gradient; a divergence names the first parameter, in
// registration order (the model's layer order), whose gradient differs. Skips without a GPU.
#include <cmath>

#include "autograd/engine.h"
#include "nn/mmdit.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

TEST(CudaMMDiT, ForwardAndBackwardMatchTheCpuParameterByParameter) {
  VGG_REQUIRE_CUDA();
  for (const char* name : {"tiny", "tiny-sd35m"}) {
    for (DType dt : {DType::F64, DType::F32}) {
      SCOPED_TRACE(std::string(name) + " " + dtype_name(dt));
      std::shared_ptr<nn::MMDiT> m[2];
      Tensor out[2];
      for (int dev = 0; dev < 2; ++dev) {
        m[dev] = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named(name), nn::LayerOptions{dt});
        fill_hashed_parameters(*m[dev]);
        const Device D = dev ? Device::cuda() : Device::cpu();
        if (dev) m[dev]->to(D);
        Tensor x = ops::to(hashed("x", {2, 1, 12, 20}, 1, 0, dt), D);
        Tensor t = ops::to(from_vector(std::vector<double>{700.0, 20.0}, {2}, opts(dt)), D);
        Tensor c = ops::to(hashed("c", {2, 5, 64}, 1, 0, dt), D), y = ops::to(hashed("y", {2, 64}, 1, 0, dt), D);
        out[dev] = m[dev]->forward(x, t, c, y);
        backward(ops::sum(ops::square(out[dev])));
      }
      const double tol = dt == DType::F64 ? 1e-10 : 2e-4;
      ASSERT_TRUE(all_close(ops::to(ops::to(out[1], Device::cpu()), DType::F64), ops::to(out[0], DType::F64), tol, tol))
          << "the output already differs";
      auto pc = m[0]->named_parameters(), pg = m[1]->named_parameters();
      ASSERT_EQ(pc.size(), pg.size());
      for (size_t i = 0; i < pc.size(); ++i) {
        ASSERT_TRUE(pg[i].second.device().is_cuda()) << pg[i].first;
        const Tensor &gc = pc[i].second.grad(), &gg = pg[i].second.grad();
        ASSERT_EQ(gg.defined(), gc.defined()) << "gradient defined on the " << (gc.defined() ? "CPU" : "GPU")
                                              << " only: " << pc[i].first;
        if (!gc.defined()) {  // unused on both: the last block's text queries, whose output is discarded
          const std::string last = "transformer_blocks." + std::to_string(nn::MMDiTConfig::named(name).num_layers - 1);
          EXPECT_TRUE(pc[i].first.rfind(last + ".attn.add_q_proj.", 0) == 0 ||
                      pc[i].first.rfind(last + ".attn.norm_added_q.", 0) == 0)
              << "no gradient for " << pc[i].first;
          continue;
        }
        auto r = all_close(ops::to(ops::to(gg, Device::cpu()), DType::F64), ops::to(gc, DType::F64), tol, tol);
        ASSERT_TRUE(r) << "first diverging gradient: " << pc[i].first;
      }
    }
  }
}

// Mixed precision on the GPU: f32 master weights, bf16 compute (cuBLASLt bf16 GEMMs, bf16
// kernels), against the f32 model on the CPU: the output within bf16's reach, f32 gradients.
TEST(CudaMMDiT, Bf16ComputeTracksTheF32CpuModel) {
  VGG_REQUIRE_CUDA();
  std::shared_ptr<nn::MMDiT> m[2];
  Tensor out[2];
  for (int dev = 0; dev < 2; ++dev) {
    m[dev] = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F32});
    fill_hashed_parameters(*m[dev]);
    const Device D = dev ? Device::cuda() : Device::cpu();
    if (dev) m[dev]->to(D), m[dev]->set_compute_dtype(DType::BF16);
    Tensor x = ops::to(hashed("x", {2, 1, 12, 20}, 1, 0, DType::F32), D);
    Tensor t = ops::to(from_vector(std::vector<double>{700.0, 20.0}, {2}, opts(DType::F32)), D);
    Tensor c = ops::to(hashed("c", {2, 5, 64}, 1, 0, DType::F32), D), y = ops::to(hashed("y", {2, 64}, 1, 0, DType::F32), D);
    out[dev] = m[dev]->forward(x, t, c, y);
    backward(ops::sum(ops::square(out[dev])));
  }
  ASSERT_EQ(out[1].dtype(), DType::F32);
  Tensor o0 = ops::to(out[0], DType::F64), o1 = ops::to(ops::to(out[1], Device::cpu()), DType::F64);
  const double sd = std::sqrt(ops::mean(ops::square(o0)).item());
  EXPECT_LT(ops::amax(ops::abs(ops::sub(o1, o0))).item() / sd, 0.1);
  for (auto& [name, p] : m[1]->named_parameters())
    if (p.grad().defined()) {
      EXPECT_EQ(p.grad().dtype(), DType::F32) << name;
      EXPECT_TRUE(std::isfinite(ops::sum(ops::square(ops::to(ops::to(p.grad(), Device::cpu()), DType::F64))).item())) << name;
    }
}

}  // namespace
}  // namespace vgg::test
