// The shipped models (models/README.md): every file loads, the feature networks still reach the
// accuracy recorded in their metadata (>= 90%), the aesthetic probes give the documented 1–10
// scale on real images, and the base model samples recognisable classes.
#include "tests/support/test_support.h"
#include "tensor/safetensors.h"
#include "vggflow/data.h"
#include "vggflow/metrics.h"
#include "vggflow/model.h"
#include "vggflow/rewards.h"

namespace vgg::test {
namespace {

std::string models() { return flow::default_models_dir(); }

TEST(ShippedModels, FeatureNetworksReachNinetyPercent) {
  flow::ImageSet test = flow::load_fashion_mnist(false, "", 32);
  for (const char* kind : {"fa", "fb"}) {
    SCOPED_TRACE(kind);
    const std::string path = models() + "/" + kind + ".safetensors";
    auto net = flow::load_feature_net(path, kind);
    const double recorded = std::stod(load_safetensors(path).metadata.at("test_accuracy"));
    const double acc = flow::class_accuracy(*net, test.images, test.labels);
    EXPECT_GE(acc, 0.90);
    EXPECT_NEAR(acc, recorded, 1e-4);
  }
  EXPECT_TRUE(throws_error([] { flow::load_feature_net(models() + "/fa.safetensors", "fb"); }, {"fa.safetensors"}));
}

TEST(ShippedModels, AestheticProbesScoreRealImagesOnTheDocumentedScale) {
  flow::ImageSet test = flow::load_fashion_mnist(false, "", 32, 2000);
  flow::RewardPair rw = flow::make_rewards("aesthetic", models());
  NoGradGuard ng;
  Tensor q = flow::synthetic_quality(test.images, test.labels);
  for (auto* r : {rw.reward.get(), rw.gold.get()}) {
    Tensor v = (*r)(test.images);
    EXPECT_GT(ops::amin(v).item(), 0.0);
    EXPECT_LT(ops::amax(v).item(), 12.0);
    EXPECT_NEAR(ops::mean(v).item(), ops::mean(q).item(), 0.3);
    EXPECT_GT(flow::r_squared(v, q), 0.6);  // fit on the training set, checked on test images
  }
  EXPECT_TRUE(throws_error([] { flow::make_rewards("beauty", models()); }, {"unknown reward 'beauty'"}));
  EXPECT_TRUE(throws_error([] { flow::make_rewards("classifier:hat", models()); }, {"unknown class 'hat'"}));
}

TEST(ShippedModels, BaseModelLoadsAndFollowsItsPrompts) {
  flow::FlowModel base = flow::load_flow_model(models() + "/base");
  EXPECT_EQ(base.net->num_parameters(), 2277124);
  auto fb = flow::load_feature_net(models() + "/fb.safetensors", "fb");
  // 3 samples of each class prompt at the model's own settings: F_B recognises most of them
  Tensor imgs = flow::sample_images(base.velocity(), *base.prompts, flow::per_class_ids(3), base.sampling, 5);
  std::vector<int64_t> labels = flow::per_class_ids(3);
  EXPECT_GE(flow::class_accuracy(*fb, imgs, from_vector(labels, {30})), 0.6);
}

// Evaluation samples where the model lives: on the fake device (host memory under a device identity,
// the CPU's kernels; an op mixing devices fails as on a GPU) the trajectories stay there and the
// images equal the host's bit for bit.
TEST(ShippedModels, SamplingOnTheModelsDeviceGivesTheHostsImages) {
  flow::FlowModel host = flow::load_flow_model(models() + "/base");
  flow::FlowModel dev = flow::load_flow_model(models() + "/base");
  dev.net->to(Device::fake());
  const std::vector<int64_t> ids = {0, 3, 7, 9, 9};
  flow::SampleOptions so = host.sampling;
  so.steps = 3;
  Tensor a = flow::sample_images(host.velocity(), *host.prompts, ids, so, 5, 32, 2);
  Tensor b = flow::sample_images(dev.velocity(), *dev.prompts, ids, so, 5, 32, 2, Device::fake());
  EXPECT_TRUE(b.device().is_cpu());
  EXPECT_TRUE(all_close(a, b, 0, 0));
}

}  // namespace
}  // namespace vgg::test
