// The fake device (tensor/device.h): host memory and the CPU's kernels under a device identity of
// their own. It must behave as a device, not as the CPU: operands on it and on the CPU do not mix,
// its data reaches the host only by copies, and a whole model moved onto it computes exactly what
// the CPU computes (the same kernels), so every device move in the model code is exercised.
#include <cstring>

#include "autograd/engine.h"
#include "nn/lora.h"
#include "nn/mmdit.h"
#include "nn/optim.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

bool same_bits(const Tensor& a, const Tensor& b) {
  Tensor x = contiguous_raw(to_device_raw(a, Device::cpu())), y = contiguous_raw(to_device_raw(b, Device::cpu()));
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(x.numel()) * itemsize(x.dtype())) == 0;
}

TEST(FakeDevice, IsADeviceOfItsOwn) {
  EXPECT_EQ(Device::parse("fake"), Device::fake());
  EXPECT_EQ(Device::fake().str(), "fake");
  Tensor a = ops::to(rnd({3, 4}, 1), Device::fake()), b = rnd({3, 4}, 2);
  EXPECT_EQ(a.device(), Device::fake());
  EXPECT_TRUE(throws_error([&] { ops::add(a, b); }, {"add", "fake", "cpu"}));
  EXPECT_DOUBLE_EQ(ops::sum(a).item(), ops::sum(rnd({3, 4}, 1)).item());  // item() copies to the host
  EXPECT_TRUE(same_bits(ops::exp(a), ops::exp(rnd({3, 4}, 1))));
}

TEST(FakeDevice, MMDiTWithLoRAForwardBackwardAndAdamWGiveTheCpuBits) {
  std::shared_ptr<nn::MMDiT> m[2];
  Tensor out[2];
  std::vector<Tensor> after[2];
  for (int dev = 0; dev < 2; ++dev) {
    const Device D = dev ? Device::fake() : Device::cpu();
    m[dev] = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F32});
    fill_hashed_parameters(*m[dev]);
    nn::attach_lora(*m[dev], {});
    for (auto& [name, p] : m[dev]->adapter_parameters()) {
      NoGradGuard ng;
      copy_into(p, ops::to(hashed(name, p.shape(), 0.05), DType::F32));
    }
    m[dev]->to(D);
    Tensor x = ops::to(ops::to(hashed("x", {2, 1, 12, 20}), DType::F32), D);
    Tensor t = ops::to(from_vector(std::vector<double>{700.0, 20.0}, {2}, opts(DType::F32)), D);
    Tensor c = ops::to(ops::to(hashed("c", {2, 5, 64}), DType::F32), D);
    Tensor y = ops::to(ops::to(hashed("y", {2, 64}), DType::F32), D);
    out[dev] = m[dev]->forward(x, t, c, y);
    backward(ops::sum(ops::square(out[dev])));
    nn::ParamGroup g;
    for (auto& [n, p] : m[dev]->named_parameters(true)) g.params.push_back(p);
    g.max_grad_norm = 1.0;
    nn::AdamW opt({g});
    opt.step();
    for (auto& p : g.params) {
      EXPECT_EQ(p.device(), D);
      after[dev].push_back(p);
    }
  }
  EXPECT_EQ(out[1].device(), Device::fake());
  EXPECT_TRUE(same_bits(out[1], out[0]));
  ASSERT_EQ(after[0].size(), after[1].size());
  for (size_t i = 0; i < after[0].size(); ++i) EXPECT_TRUE(same_bits(after[1][i], after[0][i])) << "parameter " << i;
}

}  // namespace
}  // namespace vgg::test
