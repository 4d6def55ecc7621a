// AdamW on the GPU against the CPU: the multi-tensor kernels must give the CPU's bits when the
// clip factor is the same (no clipping), and agree to rounding with clipping (the GPU blocks its
// sum of squares differently). Sizes cross the kernel's launch limits: more than 24 tensors, a
// tensor of more than 256 chunks of 65536 elements, empty and odd-sized tensors. Skips without a GPU.
#include <cstring>

#include "nn/optim.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

std::vector<Shape> optim_shapes() {
  std::vector<Shape> s = {{256 * 65536 + 7}, {3, 5}, {0}, {1}, {65536}, {65537}, {17, 33}};
  for (int i = 0; i < 24; ++i) s.push_back({i + 1, 3});
  return s;
}


void run_steps(DType dt, Device dev, double max_norm, int steps, std::vector<Tensor>& out, std::vector<double>& norms) {
  const auto shapes = optim_shapes();
  std::vector<Tensor> params;
  for (size_t i = 0; i < shapes.size(); ++i) {
    Tensor p = ops::to(hashed("p" + std::to_string(i), shapes[i], 1, 0, dt), dev).detach();
    p.requires_grad_(true);
    params.push_back(p);
  }
  nn::ParamGroup g;
  g.params = params;
  g.lr = 1e-2;
  g.weight_decay = 0.1;
  g.max_grad_norm = max_norm;
  nn::AdamW opt({g});
  for (int s = 0; s < steps; ++s) {
    for (size_t i = 0; i < params.size(); ++i)
      params[i].set_grad(ops::to(hashed("g" + std::to_string(i) + "_" + std::to_string(s), shapes[i], 1, 0, dt), dev));
    auto st = opt.step();
    ASSERT_FALSE(st.nonfinite) << st.error;
    norms.push_back(st.groups[0].grad_norm);
  }
  for (auto& p : params) out.push_back(ops::to(p.detach(), Device::cpu()));
  for (size_t i = 0; i < params.size(); ++i) out.push_back(ops::to(opt.exp_avg_sq(0, i), Device::cpu()));
}

TEST(CudaAdamW, StepGivesTheCpuBitsWithoutClipping) {
  VGG_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::F64}) {
    SCOPED_TRACE(dtype_name(dt));
    std::vector<Tensor> cpu, gpu;
    std::vector<double> ncpu, ngpu;
    run_steps(dt, Device::cpu(), 0, 3, cpu, ncpu);
    run_steps(dt, Device::cuda(), 0, 3, gpu, ngpu);
    ASSERT_EQ(cpu.size(), gpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      ASSERT_EQ(cpu[i].shape(), gpu[i].shape());
      const size_t bytes = static_cast<size_t>(cpu[i].numel()) * itemsize(dt);
      ASSERT_EQ(std::memcmp(cpu[i].data_ptr(), gpu[i].data_ptr(), bytes), 0) << "tensor " << i << " differs";
    }
    for (size_t s = 0; s < ncpu.size(); ++s) EXPECT_NEAR(ngpu[s], ncpu[s], 1e-12 * ncpu[s]) << "norm of step " << s;
  }
}

TEST(CudaAdamW, ClippedStepMatchesTheCpuToRounding) {
  VGG_REQUIRE_CUDA();
  std::vector<Tensor> cpu, gpu;
  std::vector<double> ncpu, ngpu;
  run_steps(DType::F32, Device::cpu(), 1.0, 2, cpu, ncpu);
  run_steps(DType::F32, Device::cuda(), 1.0, 2, gpu, ngpu);
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_TRUE(all_close(ops::to(gpu[i], DType::F64), ops::to(cpu[i], DType::F64), 1e-5, 1e-6)) << "tensor " << i;
}

TEST(CudaAdamW, StateDictIsOnTheCpuAndRestoresOnTheGpu) {
  VGG_REQUIRE_CUDA();
  Tensor p = ops::to(hashed("p", {4, 5}, 1, 0, DType::F32), Device::cuda()).detach();
  p.requires_grad_(true);
  nn::ParamGroup g;
  g.params = {p};
  nn::AdamW opt({g});
  p.set_grad(ops::to(hashed("g", {4, 5}, 1, 0, DType::F32), Device::cuda()));
  opt.step();
  auto sd = opt.state_dict();
  for (auto& [k, t] : sd) EXPECT_TRUE(t.device().is_cpu()) << k;
  Tensor q = ops::to(hashed("p", {4, 5}, 1, 0, DType::F32), Device::cuda()).detach();
  q.requires_grad_(true);
  nn::ParamGroup h;
  h.params = {q};
  nn::AdamW opt2({h});
  opt2.load_state_dict(sd);
  EXPECT_TRUE(opt2.exp_avg(0, 0).device().is_cuda());
  EXPECT_TRUE(all_close(ops::to(opt2.exp_avg(0, 0), Device::cpu()), ops::to(opt.exp_avg(0, 0), Device::cpu()), 0, 0));
  EXPECT_EQ(opt2.step_count(0, 0), 1);
}

}  // namespace
}  // namespace vgg::test
