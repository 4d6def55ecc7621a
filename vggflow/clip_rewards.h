// The paper's rewards on RGB images (SD3 pipeline): the LAION aesthetic predictor v2 (an MLP on
// CLIP ViT-L/14 image embeddings), HPSv2.1 (cosine of normalised ViT-H/14 image and prompt text
// features) and PickScore (exp(logit_scale) · that cosine). Images [B, 3, H, W] in [−1, 1] go
// through CLIP's input transform (nn::clip_preprocess: to [0, 1], shortest side to the tower's
// image size, centre crop, normalisation), all differentiable, so ∇ₓr comes from backward.
//
// A reward weights file (safetensors, converted by tools/convert_reward.py) holds the tower under
// transformers' names or open_clip's "visual.*" (mapped on load), its vision config as the
// metadata "config" (transformers' JSON), and per reward: "aesthetic.layers.{0,2,4,6,7}.*" or a
// scalar "logit_scale". Any other key is refused by name. Text features (HPS, PickScore) come
// precomputed: a safetensors tensor "text_features" [N, P], one row per prompt.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/clip.h"
#include "vggflow/rewards.h"

namespace vgg::flow {

enum class ClipRewardKind { Aesthetic, HPS, PickScore };
ClipRewardKind parse_clip_reward(const std::string& name);  // "aesthetic", "hps", "pickscore"

class ClipReward : public Reward {
 public:
  ClipReward(const std::string& weights_path, ClipRewardKind kind, DType dtype = DType::F32,
             Device device = Device::cpu());
  std::string name() const override;
  // x [B, 3, H, W] in [−1, 1] -> [B]; HPS and PickScore need text features set first
  Tensor operator()(const Tensor& x) const override;
  // [P] for every image, or [B, P] one per image (normalised here)
  void set_text_features(const Tensor& features);
  // Training: one row per prompt [N, P] (normalised here); score(x, ids) scores image i against
  // row ids[i] (the prompt table of the SD3 pipeline's prompt embeddings, in the same order).
  void set_prompt_features(const Tensor& table);
  Tensor score(const Tensor& x, const Tensor& ids) const override;
  bool uses_prompts() const override { return kind_ != ClipRewardKind::Aesthetic; }
  const nn::ClipVisionWithProjection& tower() const { return *tower_; }
  // Activation checkpointing of the tower's layers: ∇ₓr recomputes each layer instead of keeping
  // its activations (the decode → CLIP → reward chain at 1024²; nn/vae.h has the decoder's).
  void set_checkpointing(bool on) { tower_->vision_model->checkpointing = on; }

 private:
  ClipRewardKind kind_;
  std::shared_ptr<nn::ClipVisionWithProjection> tower_;
  std::shared_ptr<nn::AestheticMLP> head_;
  double logit_scale_exp_ = 1.0;
  Tensor text_, table_;
  Tensor normalised_text(const Tensor& t) const;                     // [P] or [B, P] -> [1 or B, P] on the tower
  Tensor embed(const Tensor& x) const;                               // images -> normalised or head-ready embedding
  Tensor against(const Tensor& x, const Tensor& text) const;         // the reward with these text rows
};

// Row `index` of a text-features file's "text_features" [N, P] (checked), as [P].
Tensor load_text_features(const std::string& path, int64_t index);

// A whole text-features file (tools/convert_reward.py --prompts): the table [N, P] and the prompt
// texts of its metadata "prompts" (empty when the file has none).
struct TextFeatures {
  Tensor table;
  std::vector<std::string> prompts;
};
TextFeatures load_text_features_table(const std::string& path);

}  // namespace vgg::flow
