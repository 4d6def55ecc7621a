// Mixed precision on the CPU: f32 master weights, bf16 compute (Module::set_compute_dtype). The
// tiny MMDiT with LoRA adapters runs forward and backward in bf16; its output comes back in f32
// and stays within bf16's reach of the f32 model, every gradient lands on the f32 parameters,
// finite and pointing where the f32 gradient points, and AdamW updates the masters.
#include <algorithm>
#include <cmath>
#include <iostream>

#include "autograd/engine.h"
#include "nn/lora.h"
#include "nn/mmdit.h"
#include "nn/optim.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace vgg::test {
namespace {

double cosine(const Tensor& a, const Tensor& b) {
  Tensor a64 = ops::to(a, DType::F64), b64 = ops::to(b, DType::F64);
  const double ab = ops::sum(ops::mul(a64, b64)).item(), aa = ops::sum(ops::square(a64)).item(),
               bb = ops::sum(ops::square(b64)).item();
  return ab / std::sqrt(aa * bb);
}

TEST(MixedPrecision, Bf16ComputeWithF32MasterWeightsTracksTheF32Model) {
  std::shared_ptr<nn::MMDiT> m[2];
  Tensor out[2];
  for (int k = 0; k < 2; ++k) {
    m[k] = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F32});
    fill_hashed_parameters(*m[k]);
    nn::LoRAConfig lc;
    lc.rank = 4;
    nn::attach_lora(*m[k], lc);
    for (auto& [name, p] : m[k]->adapter_parameters()) {  // non-zero B so that A gets a gradient too
      NoGradGuard ng;
      copy_into(p, ops::to(hashed(name, p.shape(), 0.05), DType::F32));
    }
    if (k == 1) m[k]->set_compute_dtype(DType::BF16);
    Tensor x = ops::to(hashed("x", {2, 1, 12, 20}), DType::F32);
    Tensor t = from_vector(std::vector<double>{700.0, 20.0}, {2}, opts(DType::F32));
    Tensor c = ops::to(hashed("c", {2, 5, 64}), DType::F32), y = ops::to(hashed("y", {2, 64}), DType::F32);
    out[k] = m[k]->forward(x, t, c, y);
    backward(ops::sum(ops::square(out[k])));
  }
  ASSERT_EQ(out[1].dtype(), DType::F32);
  const double sd = std::sqrt(ops::mean(ops::square(ops::to(out[0], DType::F64))).item());
  const double err = ops::amax(ops::abs(ops::sub(ops::to(out[1], DType::F64), ops::to(out[0], DType::F64)))).item();
  std::cout << "[ bf16 vs f32 ] output max |delta| / std = " << err / sd << "\n";
  EXPECT_LT(err / sd, 0.1) << "bf16 output strays from the f32 model";
  EXPECT_GT(err / sd, 1e-4) << "the bf16 model did not compute in bf16";
  auto p32 = m[0]->named_parameters(true), pbf = m[1]->named_parameters(true);
  ASSERT_EQ(p32.size(), pbf.size());
  int adapters = 0;
  double min_cos = 1;
  for (size_t i = 0; i < p32.size(); ++i) {
    const Tensor& g = pbf[i].second.grad();
    ASSERT_EQ(g.defined(), p32[i].second.grad().defined()) << pbf[i].first;  // unused: the last block's text path
    if (!g.defined()) continue;
    EXPECT_EQ(g.dtype(), DType::F32) << pbf[i].first;
    EXPECT_TRUE(std::isfinite(ops::sum(ops::square(ops::to(g, DType::F64))).item())) << pbf[i].first;
    if (pbf[i].first.find("lora_") != std::string::npos) {
      ++adapters;
      const double c = cosine(g, p32[i].second.grad());
      min_cos = std::min(min_cos, c);
      EXPECT_GT(c, 0.95) << pbf[i].first;
    }
  }
  EXPECT_GT(adapters, 0);
  std::cout << "[ bf16 vs f32 ] " << adapters << " adapter gradients, smallest cosine " << min_cos << "\n";
  // the optimizer updates the f32 masters
  nn::ParamGroup g;
  for (auto& [n, p] : pbf) g.params.push_back(p);
  nn::AdamW opt({g});
  Tensor before = clone_raw(pbf[0].second);
  auto st = opt.step();
  EXPECT_FALSE(st.nonfinite);
  EXPECT_EQ(pbf[0].second.dtype(), DType::F32);
  EXPECT_FALSE(all_close(pbf[0].second, before, 0, 0)) << "the master weight did not move";
}

TEST(MixedPrecision, RejectsANonFloatingComputeDtype) {
  auto m = std::make_shared<nn::MMDiT>(nn::MMDiTConfig::named("tiny"), nn::LayerOptions{DType::F32});
  EXPECT_TRUE(throws_error([&] { m->set_compute_dtype(DType::I32); }, {"set_compute_dtype: the compute dtype must be floating"}));
}

}  // namespace
}  // namespace vgg::test
