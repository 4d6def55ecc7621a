// The fused LoRA linear on the GPU: nn::LoRALinear takes the fused op there (its node is
// "lora_linear"), and its output and the gradients of x, A and B match the CPU's unfused layer
// (f32 to rounding; bf16 within bf16's reach, at the 1536-wide shape with r = 8), and with
// set_fused(false) the GPU composes matmuls again. Skips without a GPU.
#include <cmath>

#include "autograd/engine.h"
#include "autograd/node.h"
#include "nn/lora.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

TEST(CudaLoRA, FusedLayerMatchesTheCpuLayer) {
  VGG_REQUIRE_CUDA();
  struct Size {
    int64_t m, d, r;
    DType dt;
    double tol;
  };
  for (const Size& s : {Size{37, 48, 4, DType::F32, 2e-5}, Size{8192, 1536, 8, DType::BF16, 3e-2}}) {
    SCOPED_TRACE(std::string(dtype_name(s.dt)) + " d=" + std::to_string(s.d));
    std::vector<Tensor> out[2];
    for (int dev = 0; dev < 2; ++dev) {
      const Device D = dev ? Device::cuda() : Device::cpu();
      const DType dt = dev ? s.dt : DType::F64;  // the reference in f64 on the CPU
      nn::Linear base(s.d, s.d, true, nn::LayerOptions{DType::F64});
      Generator g(3);
      nn::LoRALinear layer(base, s.r, 2.0 * s.r, &g);
      {
        NoGradGuard ng;
        copy_into(layer.weight, hashed("W", layer.weight.shape(), 1.0 / std::sqrt(static_cast<double>(s.d))));
        copy_into(layer.bias, hashed("b", layer.bias.shape(), 0.1));
        copy_into(layer.lora_A, hashed("A", layer.lora_A.shape(), 1.0 / std::sqrt(static_cast<double>(s.d))));
        copy_into(layer.lora_B, hashed("B", layer.lora_B.shape(), 0.05));  // B = 0 would hide A's gradient
      }
      layer.to(dt);
      layer.to(D);
      Tensor x = ops::to(ops::to(hashed("x", {s.m, s.d}), dt), D).detach().requires_grad_(true);
      Tensor y = layer.forward(x);
      if (dev) EXPECT_EQ(y.grad_fn()->name, "lora_linear") << "the GPU layer did not take the fused op";
      Tensor r = ops::to(ops::to(hashed("r", {s.m, s.d}), dt), D);
      backward(ops::sum(ops::mul(y, r)));
      for (const Tensor& t : {y.detach(), x.grad(), layer.lora_A.grad(), layer.lora_B.grad()})
        out[dev].push_back(ops::to(ops::to(t, Device::cpu()), DType::F64));
      if (dev) {
        layer.set_fused(false);
        EXPECT_NE(layer.forward(x).grad_fn()->name, "lora_linear");
      }
    }
    const char* what[] = {"output", "grad x", "grad A", "grad B"};
    for (int i = 0; i < 4; ++i) {
      const double sd = std::sqrt(ops::mean(ops::square(out[0][i])).item());
      const double err = ops::amax(ops::abs(ops::sub(out[1][i], out[0][i]))).item();
      EXPECT_LE(err, s.tol * (sd + 1)) << what[i];
    }
  }
}

}  // namespace
}  // namespace vgg::test
