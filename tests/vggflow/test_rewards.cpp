// Rewards: f64 gradchecks of every reward, values on hand-made images, per-class behaviour on the
// real test set, and the feature networks' shapes.
#include <cmath>

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "tests/support/test_support.h"
#include "vggflow/data.h"
#include "vggflow/rewards.h"

namespace vgg::test {
namespace {

TEST(GradcheckRewards, PixelRewards) {
  for (const char* name : {"brightness", "contrast", "symmetry"}) {
    auto r = flow::make_pixel_reward(name);
    auto f = [&](const std::vector<Tensor>& in) { return (*r)(in[0]); };
    SCOPED_TRACE(name);
    EXPECT_GRADCHECK(gradcheck(f, {ops::tanh(rnd({2, 1, 5, 6}, 7)).requires_grad_(true)}));
  }
}

TEST(GradcheckRewards, NetworkRewards) {
  for (const char* kind : {"fa", "fb"}) {
    Generator g(3);
    auto net = std::make_shared<flow::FeatureNet>(kind, nn::LayerOptions{DType::F64, Device::cpu(), &g});
    flow::ClassifierReward cls(net, 8);
    flow::AestheticProbe aes(net, rnd({net->embedding_dim()}, 4), 5.0);
    Tensor x = ops::tanh(rnd({1, 1, 32, 32}, 5)).requires_grad_(true);
    SCOPED_TRACE(kind);
    EXPECT_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return cls(in[0]); }, {x}));
    EXPECT_GRADCHECK(gradcheck([&](const std::vector<Tensor>& in) { return aes(in[0]); }, {x}));
  }
}

// The clamped training reward: r(clamp(x, −1, 1)), no gradient through pixels outside the range;
// the out-of-range fraction counts NaN as outside.
TEST(Rewards, ClampedRewardSeesTheSavedImage) {
  std::shared_ptr<const flow::Reward> r(flow::make_pixel_reward("contrast").release());
  flow::ClampedReward c(r);
  Tensor x = from_vector(std::vector<double>{-1.5, -0.5, 0.25, 0.5, 1.0, 2.0, 0.0, -0.75}, {1, 1, 2, 4}, opts(DType::F64));
  Tensor xc = from_vector(std::vector<double>{-1.0, -0.5, 0.25, 0.5, 1.0, 1.0, 0.0, -0.75}, {1, 1, 2, 4}, opts(DType::F64));
  EXPECT_EQ(c(x).item(), (*r)(xc).item());
  EXPECT_NE(c(x).item(), (*r)(x).item());
  EXPECT_EQ(c.name(), "contrast");
  Tensor xi = x.detach().requires_grad_(true), xci = xc.detach().requires_grad_(true);
  backward(c(xi));
  backward((*r)(xci));
  const std::vector<double> g = xi.grad().to_vector(), gc = xci.grad().to_vector(), v = x.to_vector();
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::abs(v[i]) > 1)
      EXPECT_EQ(g[i], 0.0) << i;  // a pixel past the range gets no push
    else
      EXPECT_EQ(g[i], gc[i]) << i;
  }
  EXPECT_DOUBLE_EQ(flow::out_of_range_fraction(x), 2.0 / 8);
  Tensor n = from_vector(std::vector<double>{0.0, std::nan(""), 1.0, -1.0}, {4}, opts(DType::F64));
  EXPECT_DOUBLE_EQ(flow::out_of_range_fraction(n), 1.0 / 4);
}

TEST(Rewards, ValuesOnKnownImages) {
  Tensor white = ones({1, 1, 4, 4}), black = full({1, 1, 4, 4}, -1.0);
  auto br = flow::make_pixel_reward("brightness"), co = flow::make_pixel_reward("contrast"),
       sy = flow::make_pixel_reward("symmetry");
  EXPECT_DOUBLE_EQ((*br)(white).item(), 1.0);
  EXPECT_DOUBLE_EQ((*br)(black).item(), 0.0);
  EXPECT_NEAR((*co)(white).item(), 0.0, 1e-6);
  // half black, half white (left/right): std 0.5, fully anti-symmetric: −mean(2²)/4 = −1
  Tensor half = ops::cat({full({1, 1, 4, 2}, -1.0), ones({1, 1, 4, 2})}, 3);
  EXPECT_NEAR((*co)(half).item(), 0.5, 1e-6);
  EXPECT_NEAR((*sy)(half).item(), -1.0, 1e-6);
  EXPECT_NEAR((*sy)(white).item(), 0.0, 1e-12);
  EXPECT_TRUE(throws_error([] { flow::make_pixel_reward("sharpness"); }, {"unknown pixel reward 'sharpness'"}));
  EXPECT_TRUE(throws_error([&] { (*br)(ones({4, 4})); }, {"reward brightness", "[B, C, H, W]"}));
  EXPECT_TRUE(all_close(flow::flip_last(from_vector(std::vector<double>{1, 2, 3}, {1, 3}, opts(DType::F64))),
                        from_vector(std::vector<double>{3, 2, 1}, {1, 3}, opts(DType::F64)), 0, 0));
}

TEST(Rewards, RealImagesDifferByClassAsDocumented) {
  flow::ImageSet test = flow::load_fashion_mnist(false, "", 32);
  auto br = flow::make_pixel_reward("brightness"), sy = flow::make_pixel_reward("symmetry");
  NoGradGuard ng;
  Tensor b = (*br)(test.images), s = (*sy)(test.images);
  std::vector<double> bsum(10), ssum(10), n(10);
  std::vector<double> bv = b.to_vector(), sv = s.to_vector(), lv = test.labels.to_vector();
  for (size_t i = 0; i < lv.size(); ++i) {
    auto c = static_cast<size_t>(lv[i]);
    bsum[c] += bv[i], ssum[c] += sv[i], n[c] += 1;
  }
  auto mean = [&](const std::vector<double>& v, int c) { return v[static_cast<size_t>(c)] / n[static_cast<size_t>(c)]; };
  // pullovers and coats carry more ink than sandals and trousers
  EXPECT_GT(mean(bsum, 2), mean(bsum, 5));
  EXPECT_GT(mean(bsum, 4), mean(bsum, 1));
  // trousers, bags and dresses are more mirror-symmetric than sandals, sneakers and ankle boots
  for (int sym : {1, 3, 8})
    for (int asym : {5, 7, 9}) EXPECT_GT(mean(ssum, sym), mean(ssum, asym)) << sym << " vs " << asym;
  for (int c = 0; c < 10; ++c)
    std::printf("[ reward ] class %d %-12s brightness %.3f  symmetry %.4f\n", c,
                flow::fashion_mnist_classes()[static_cast<size_t>(c)].c_str(), mean(bsum, c), mean(ssum, c));
}

TEST(FeatureNets, ShapesAndErrors) {
  flow::FeatureNet fa("fa"), fb("fb");
  Tensor x = zeros({3, 1, 32, 32});
  EXPECT_EQ(fa.embed(x).shape(), (Shape{3, 128}));
  EXPECT_EQ(fb.embed(x).shape(), (Shape{3, 96}));
  EXPECT_EQ(fa.logits(x).shape(), (Shape{3, 10}));
  EXPECT_TRUE(throws_error([&] { fa.embed(zeros({3, 1, 28, 28})); }, {"[B, 1, 32, 32]"}));
  EXPECT_TRUE(throws_error([] { flow::FeatureNet("fc"); }, {"unknown kind 'fc'"}));
}

}  // namespace
}  // namespace vgg::test
