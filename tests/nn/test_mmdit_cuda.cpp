// The tiny SD3 and SD3.5-style MMDiTs forward and backward on the GPU against the CPU (f32 and
// f64): the output and every parameter gradient; a divergence names the first parameter, in
// registration order (the model's layer order), whose gradient differs. Skips without a GPU.
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
        auto r = all_close(ops::to(ops::to(pg[i].second.grad(), Device::cpu()), DType::F64),
                           ops::to(pc[i].second.grad(), DType::F64), tol, tol);
        ASSERT_TRUE(r) << "first diverging gradient: " << pc[i].first;
      }
    }
  }
}

}  // namespace
}  // namespace vgg::test
