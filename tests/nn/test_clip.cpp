// CLIP vision towers and the aesthetic head (nn/clip.h) against transformers 4.38 on tiny random
// configs in f64 (tests/data/clip, written by tools/golden/clip.py): image embeddings and their pixel
// gradient, quick_gelu and gelu towers, the open_clip key layout, the aesthetic MLP through the
// whole chain, the config and key checks, and the CLIP input transform.
#include "autograd/engine.h"
#include "nn/clip.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/support/test_support.h"

using namespace vgg;
using nn::NamedTensors;
using test::all_close;
using test::throws_error;

namespace {

NamedTensors with_prefix(const SafetensorsFile& f, const std::string& prefix, bool strip) {
  NamedTensors w;
  for (const auto& [name, t] : f.tensors)
    if (name.rfind(prefix, 0) == 0) w.emplace_back(strip ? name.substr(prefix.size()) : name, t);
  return w;
}
NamedTensors tower_weights(const SafetensorsFile& f) {
  NamedTensors w;
  for (const auto& [name, t] : f.tensors)
    if (name.rfind("vision_model.", 0) == 0 || name.rfind("visual_projection.", 0) == 0) w.emplace_back(name, t);
  return w;
}

}  // namespace

TEST(Clip, VisionTowerMatchesTransformersInF64) {
  SafetensorsFile f = load_safetensors(test::data_path("clip/tiny_vit_quick_gelu.safetensors"));
  nn::ClipVisionConfig cfg = nn::ClipVisionConfig::from_json(f.metadata.at("config"));
  EXPECT_EQ(cfg.hidden_act, "quick_gelu");
  nn::ClipVisionWithProjection m(cfg, {DType::F64});
  m.load_state_dict(tower_weights(f));  // strict
  Tensor px = f.at("input.pixels").detach().requires_grad_(true);
  Tensor e = m.forward(px);
  EXPECT_TRUE(all_close(e, f.at("expected.embeds"), 1e-10, 1e-10));
  auto g = grad({e}, {px}, {f.at("input.gout")});
  EXPECT_TRUE(all_close(g[0], f.at("expected.grad_pixels"), 1e-10, 1e-10));
  // f32 within its precision
  nn::ClipVisionWithProjection m32(cfg);
  m32.load_state_dict(tower_weights(f));
  Tensor e32 = ops::to(m32.forward(ops::to(f.at("input.pixels"), DType::F32)), DType::F64);
  EXPECT_TRUE(all_close(e32, f.at("expected.embeds"), 1e-5 * ops::amax(ops::abs(f.at("expected.embeds"))).item(), 1e-5));
}

TEST(Clip, AestheticHeadThroughTheTowerMatchesTorch) {
  SafetensorsFile f = load_safetensors(test::data_path("clip/tiny_vit_quick_gelu.safetensors"));
  nn::ClipVisionConfig cfg = nn::ClipVisionConfig::from_json(f.metadata.at("config"));
  nn::ClipVisionWithProjection m(cfg, {DType::F64});
  m.load_state_dict(tower_weights(f));
  nn::AestheticMLP head(16, {32, 16, 8, 4}, {DType::F64});
  head.load_state_dict(with_prefix(f, "aesthetic.", true));  // "layers.0, 2, 4, 6, 7"
  Tensor px = f.at("input.pixels").detach().requires_grad_(true);
  Tensor s = head.forward(m.forward(px));
  EXPECT_TRUE(all_close(s, f.at("expected.aesthetic"), 1e-10, 1e-10));
  auto g = grad({ops::sum(s)}, {px});
  EXPECT_TRUE(all_close(g[0], f.at("expected.grad_pixels_aesthetic"), 1e-10, 1e-10));
  // the real head's names and sizes: 768 -> 1024 -> 128 -> 64 -> 16 -> 1
  nn::AestheticMLP real;
  std::vector<std::string> names;
  for (const auto& [n, t] : real.state_dict()) names.push_back(n + " " + shape_str(t.shape()));
  EXPECT_EQ(names, (std::vector<std::string>{"layers.0.weight [1024, 768]", "layers.0.bias [1024]", "layers.2.weight [128, 1024]",
                                             "layers.2.bias [128]", "layers.4.weight [64, 128]", "layers.4.bias [64]",
                                             "layers.6.weight [16, 64]", "layers.6.bias [16]", "layers.7.weight [1, 16]",
                                             "layers.7.bias [1]"}));
}

TEST(Clip, OpenClipLayoutLoadsIntoTheSameTower) {
  SafetensorsFile f = load_safetensors(test::data_path("clip/tiny_vit_gelu_open_clip.safetensors"));
  nn::ClipVisionConfig cfg = nn::ClipVisionConfig::from_json(f.metadata.at("config"));
  EXPECT_EQ(cfg.hidden_act, "gelu");
  nn::ClipVisionWithProjection m(cfg, {DType::F64});
  NamedTensors sd;
  for (const auto& [n, t] : f.tensors)
    if (n.rfind("input.", 0) != 0 && n.rfind("expected.", 0) != 0) sd.emplace_back(n, t);
  m.load_state_dict(nn::open_clip_visual_to_transformers(sd));  // text keys and logit_scale skipped
  EXPECT_TRUE(all_close(m.forward(f.at("input.pixels")), f.at("expected.embeds"), 1e-10, 1e-10));
  NamedTensors bad = sd;
  bad.emplace_back("visual.transformer.resblocks.0.attn.bogus", sd[0].second);
  EXPECT_TRUE(throws_error([&] { nn::open_clip_visual_to_transformers(bad); }, {"unknown visual key", "attn.bogus"}));
  EXPECT_TRUE(throws_error([&] { nn::open_clip_visual_to_transformers({{"logit_scale", sd[0].second}}); }, {"no 'visual.*' keys"}));
}

TEST(Clip, ConfigsKeysAndInputsAreChecked) {
  EXPECT_TRUE(throws_error([] { nn::ClipVisionConfig::from_json(R"({"hidden_size": 30, "num_attention_heads": 4})"); },
                           {"CLIP vision config", "hidden_size 30"}));
  EXPECT_TRUE(throws_error([] { nn::ClipVisionConfig::from_json(R"({"hidden_act": "relu"})"); }, {"hidden_act", "relu"}));
  // a CLIPConfig's vision_config is read
  auto c = nn::ClipVisionConfig::from_json(R"({"vision_config": {"hidden_size": 1280, "num_hidden_layers": 32,
      "intermediate_size": 5120, "projection_dim": 1024, "hidden_act": "gelu"}, "text_config": {}})");
  EXPECT_EQ(c.hidden_size, 1280);
  nn::LayerOptions deferred;
  deferred.deferred = true;
  // the published towers' sizes (transformers' CLIPVisionModelWithProjection)
  EXPECT_EQ(nn::ClipVisionWithProjection(nn::ClipVisionConfig::vit_l14(), deferred).num_parameters(), 303966208);
  EXPECT_EQ(nn::ClipVisionWithProjection(nn::ClipVisionConfig::vit_h14(), deferred).num_parameters(), 632076800);
  SafetensorsFile f = load_safetensors(test::data_path("clip/tiny_vit_quick_gelu.safetensors"));
  nn::ClipVisionWithProjection m(nn::ClipVisionConfig::from_json(f.metadata.at("config")), {DType::F64});
  NamedTensors w = tower_weights(f);
  w.erase(w.begin());
  EXPECT_TRUE(throws_error([&] { m.load_state_dict(w); }, {tower_weights(f)[0].first.c_str()}));
  EXPECT_TRUE(throws_error([&] { m.forward(zeros({1, 3, 32, 32}, {DType::F64})); }, {"CLIP vision tower", "[B, 3, 28, 28]"}));
}

// The input transform: shortest side to 224 (bicubic, anti-aliased), centre crop, CLIP's statistics.
TEST(Clip, PreprocessResizesCropsAndNormalises) {
  Tensor img = full({2, 3, 300, 400}, 0.5, {DType::F64});
  Tensor x = nn::clip_preprocess(img);
  ASSERT_EQ(x.shape(), (Shape{2, 3, 224, 224}));
  // a constant image stays constant through resizing: (0.5 − mean) / std per channel
  const double want[3] = {(0.5 - 0.48145466) / 0.26862954, (0.5 - 0.4578275) / 0.26130258, (0.5 - 0.40821073) / 0.27577711};
  for (int c = 0; c < 3; ++c)
    EXPECT_TRUE(all_close(ops::narrow(x, 1, c, 1), full({2, 1, 224, 224}, want[c], {DType::F64}), 1e-12, 0)) << c;
  // differentiable back to the pixels
  Tensor p = test::rnd({1, 3, 230, 250}, 3).requires_grad_(true);
  auto g = grad({ops::sum(nn::clip_preprocess(p))}, {p});
  EXPECT_GT(ops::sum(ops::abs(g[0])).item(), 0.0);
  EXPECT_TRUE(throws_error([] { nn::clip_preprocess(zeros({1, 1, 8, 8})); }, {"clip_preprocess", "[B, 3, H, W]"}));
}
