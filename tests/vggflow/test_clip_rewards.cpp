// The paper's CLIP rewards (vggflow/clip_rewards.h) end to end against torch: a PNG through CLIP's
// transform, a tiny tower (transformers layout for the aesthetic predictor, open_clip layout for
// HPS and PickScore) and each head (tests/data/clip, tools/golden/clip.py); gradients; bad files.
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/support/test_support.h"
#include "vggflow/clip_rewards.h"
#include "vggflow/image.h"

using namespace vgg;
using test::throws_error;

namespace {
nlohmann::json expected() {
  std::ifstream in(test::data_path("clip/tiny_image_scores.json"));
  return nlohmann::json::parse(in);
}
Tensor image() { return ops::unsqueeze(ops::to(flow::read_png(test::data_path("clip/tiny_image.png")), DType::F64), 0); }
}  // namespace

TEST(ClipRewards, ScoresMatchTorchForEachReward) {
  const nlohmann::json want = expected();
  struct Case {
    const char* file;
    flow::ClipRewardKind kind;
    const char* key;
  } cases[] = {{"clip/reward_aesthetic_tiny.safetensors", flow::ClipRewardKind::Aesthetic, "aesthetic"},
               {"clip/reward_hps_tiny.safetensors", flow::ClipRewardKind::HPS, "hps_prompt1"},
               {"clip/reward_pickscore_tiny.safetensors", flow::ClipRewardKind::PickScore, "pickscore_prompt1"}};
  for (const auto& c : cases) {
    flow::ClipReward r(test::data_path(c.file), c.kind, DType::F64);
    if (c.kind != flow::ClipRewardKind::Aesthetic)
      r.set_text_features(flow::load_text_features(test::data_path("clip/text_features_tiny.safetensors"), 1));
    Tensor x = image().requires_grad_(true);
    Tensor s = r(x);
    ASSERT_EQ(s.shape(), (Shape{1}));
    const double w = want[c.key].get<double>();
    // the PNG's bytes reach the tower through read_png's f32 values: ~1e-7 relative
    EXPECT_NEAR(s.item(), w, 1e-6 * (1 + std::abs(w))) << c.key;
    auto g = grad({ops::sum(s)}, {x});
    const double gn = ops::sum(ops::abs(g[0])).item();
    EXPECT_TRUE(std::isfinite(gn) && gn > 0) << c.key;
  }
}

// Activation checkpointing of the tower: the reward and its image gradient are bit-identical.
TEST(ClipRewards, CheckpointingGivesTheSameGradient) {
  flow::ClipReward r(test::data_path("clip/reward_pickscore_tiny.safetensors"), flow::ClipRewardKind::PickScore, DType::F64);
  r.set_text_features(flow::load_text_features(test::data_path("clip/text_features_tiny.safetensors"), 0));
  auto run = [&](bool ck) {
    r.set_checkpointing(ck);
    Tensor x = image().requires_grad_(true);
    Tensor s = r(x);
    return std::pair{s.detach(), grad({ops::sum(s)}, {x})[0]};
  };
  auto [s0, g0] = run(false);
  auto [s1, g1] = run(true);
  EXPECT_TRUE(test::all_close(s0, s1, 0, 0));
  EXPECT_TRUE(test::all_close(g0, g1, 0, 0));
  EXPECT_GT(ops::sum(ops::abs(g0)).item(), 0);
}

TEST(ClipRewards, BadFilesAndInputsAreRefusedInOneLine) {
  const std::string a = test::data_path("clip/reward_aesthetic_tiny.safetensors");
  // a PickScore file read as the aesthetic reward: its logit_scale is not an aesthetic key
  EXPECT_TRUE(throws_error([] { flow::ClipReward(test::data_path("clip/reward_pickscore_tiny.safetensors"), flow::ClipRewardKind::Aesthetic); },
                           {"reward_pickscore_tiny.safetensors", "unexpected tensor 'logit_scale'"}));
  EXPECT_TRUE(throws_error([] { flow::ClipReward(test::data_path("clip/reward_hps_tiny.safetensors"), flow::ClipRewardKind::PickScore); },
                           {"PickScore needs a scalar 'logit_scale'"}));
  // a file with other tensors (the golden tower file carries its inputs) is refused by name
  EXPECT_TRUE(throws_error([] { flow::ClipReward(test::data_path("clip/tiny_vit_quick_gelu.safetensors"), flow::ClipRewardKind::Aesthetic); },
                           {"tiny_vit_quick_gelu.safetensors", "unexpected tensor 'expected.aesthetic'"}));
  flow::ClipReward hps(test::data_path("clip/reward_hps_tiny.safetensors"), flow::ClipRewardKind::HPS, DType::F64);
  EXPECT_TRUE(throws_error([&] { hps(image()); }, {"hps reward", "no text features"}));
  EXPECT_TRUE(throws_error([&] { hps.set_text_features(zeros({5}, {DType::F64})); }, {"text features must be [16]"}));
  EXPECT_TRUE(throws_error([] { flow::load_text_features(test::data_path("clip/text_features_tiny.safetensors"), 3); },
                           {"prompt index 3", "3 prompts"}));
  flow::ClipReward ae(a, flow::ClipRewardKind::Aesthetic, DType::F64);
  EXPECT_TRUE(throws_error([&] { ae(zeros({1, 1, 8, 8}, {DType::F64})); }, {"aesthetic reward", "[B, 3, H, W]"}));
  EXPECT_TRUE(throws_error([] { flow::parse_clip_reward("clipscore"); }, {"unknown CLIP reward 'clipscore'"}));
}
