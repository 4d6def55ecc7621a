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

// Training scores each image against its own prompt: score(x, ids) with a prompt table equals the
// reward with that row set as the text features, image by image; its gradient flows to x. The
// aesthetic reward ignores ids. Bad ids and tables are refused by name.
TEST(ClipRewards, ScoreUsesEachSamplesPromptRow) {
  const std::string tf = test::data_path("clip/text_features_tiny.safetensors");
  const flow::TextFeatures table = flow::load_text_features_table(tf);
  ASSERT_EQ(table.table.shape(), (Shape{3, 16}));
  EXPECT_TRUE(table.prompts.empty());  // the golden file carries no prompt texts
  Tensor one = image();
  Tensor x = ops::cat({one, ops::neg(one), ops::mul(one, 0.5), ops::clamp(ops::add(one, 0.3), -1.0, 1.0)}, 0);
  const Tensor ids = from_vector(std::vector<int64_t>{2, 0, 1, 2}, {4});
  for (auto kind : {flow::ClipRewardKind::HPS, flow::ClipRewardKind::PickScore}) {
    flow::ClipReward r(test::data_path(kind == flow::ClipRewardKind::HPS ? "clip/reward_hps_tiny.safetensors"
                                                                         : "clip/reward_pickscore_tiny.safetensors"),
                       kind, DType::F64);
    EXPECT_TRUE(r.uses_prompts());
    EXPECT_TRUE(throws_error([&] { r.score(x, ids); }, {"no prompt text features"}));
    r.set_prompt_features(table.table);
    Tensor xg = x.detach().requires_grad_(true);
    Tensor s = r.score(xg, ids);
    ASSERT_EQ(s.shape(), (Shape{4}));
    for (int64_t i = 0; i < 4; ++i) {
      r.set_text_features(flow::load_text_features(tf, static_cast<int64_t>(ids.at({i}))));
      EXPECT_NEAR(s.at({i}), r(ops::narrow(x, 0, i, 1)).item(), 1e-12) << i;
    }
    // a different prompt gives a different score (the rows are not all alike)
    EXPECT_NE(s.at({1}), r.score(ops::narrow(x, 0, 1, 1), from_vector(std::vector<int64_t>{1}, {1})).item());
    const double gn = ops::sum(ops::abs(grad({ops::sum(s)}, {xg})[0])).item();
    EXPECT_TRUE(std::isfinite(gn) && gn > 0);
    EXPECT_TRUE(throws_error([&] { r.score(x, from_vector(std::vector<int64_t>{0, 1, 3, 0}, {4})); },
                             {"prompt id 3", "3 prompts"}));
    EXPECT_TRUE(throws_error([&] { r.score(x, from_vector(std::vector<int64_t>{0, 1}, {2})); }, {"one prompt id per image (4)"}));
    EXPECT_TRUE(throws_error([&] { r.set_prompt_features(zeros({3, 5}, {DType::F64})); }, {"must be [N, 16]"}));
  }
  flow::ClipReward ae(test::data_path("clip/reward_aesthetic_tiny.safetensors"), flow::ClipRewardKind::Aesthetic, DType::F64);
  EXPECT_FALSE(ae.uses_prompts());
  EXPECT_TRUE(test::all_close(ae.score(x, ids), ae(x), 0, 0));
  // a bound reward is the prompt-free view the methods see
  flow::ClipReward pick(test::data_path("clip/reward_pickscore_tiny.safetensors"), flow::ClipRewardKind::PickScore, DType::F64);
  pick.set_prompt_features(table.table);
  EXPECT_TRUE(test::all_close(flow::PromptBoundReward(pick, ids)(x), pick.score(x, ids), 0, 0));
}
