// Rewards r(x) for images x [B, 1, 32, 32] in [−1, 1]: each returns [B] and is built from
// differentiable ops, so ∇ₓr comes from backward (docs/flow.md, "Rewards"). Larger is better.
//
//   brightness   mean of (x + 1)/2: the ink/light fraction, in [0, 1]. Hack: blank white
//                images or saturated blobs maximise it with no regard for the garment.
//   contrast     standard deviation of (x + 1)/2 over the pixels, in [0, 0.5]. Hack: hard
//                black/white patterns (binarised, checkerboard-like textures).
//   symmetry     −mean((x − flip_w(x))²)/4, in [−1, 0]: left-right mirror symmetry. Natural for
//                bags, trousers and shirts, unnatural for sandals and boots (class-dependent
//                tilt); hack: symmetric blobs or empty images (a blank image is perfectly symmetric).
//   classifier   log p_{F_A}(c* | x) for a target class c* (default "bag"). Hack: adversarial,
//                over-confident patterns that F_A but not an independent F_B calls c*.
//   aesthetic    w·F_A(x)/‖F_A(x)‖ + b, an affine probe on F_A's normalised embedding (the
//                LAION aesthetic predictor's functional form), fit by ridge regression to a
//                synthetic quality score and scaled to about 1–10 (vgg_train_aux --probe).
//                Hack: embeddings pushed along w beyond the data manifold; F_B disagrees.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tensor/tensor.h"
#include "vggflow/nets.h"

namespace vgg::flow {

class Reward {
 public:
  virtual ~Reward() = default;
  virtual std::string name() const = 0;
  // x [B, 1, H, W] -> r [B], differentiable w.r.t. x
  virtual Tensor operator()(const Tensor& x) const = 0;
  // Rewards of (image, prompt) pairs (HPSv2.1, PickScore) score sample i against prompt ids[i]
  // (ids [B], i64: the prompt ids a rollout drew); a prompt-free reward ignores ids.
  virtual Tensor score(const Tensor& x, const Tensor& ids) const {
    (void)ids;
    return (*this)(x);
  }
  virtual bool uses_prompts() const { return false; }
};

// A reward bound to one batch's prompts: (*this)(x) is reward.score(x, ids). The methods bind the
// reward to each rollout's prompt ids, as they bind the velocity fields to its conditioning, so
// every loss is written over one prompt-free Reward. Keeps a reference: `reward` must outlive it.
class PromptBoundReward final : public Reward {
 public:
  PromptBoundReward(const Reward& reward, Tensor ids) : r_(reward), ids_(std::move(ids)) {}
  std::string name() const override { return r_.name(); }
  Tensor operator()(const Tensor& x) const override { return r_.score(x, ids_); }

 private:
  const Reward& r_;
  Tensor ids_;
};

// r(clamp(x, −1, 1)): the reward of the image a sample is saved and evaluated as. Training rewards
// see it by default (vgg_train --reward-clamp), as the official VGG-Flow code's decoder clamps its
// pixels to [0, 1] before the reward; ∇ₓ is zero for pixels outside the range (the clamp's
// derivative), so a method cannot gain reward by pushing pixels past it. Keeps the reward.
class ClampedReward final : public Reward {
 public:
  explicit ClampedReward(std::shared_ptr<const Reward> r) : r_(std::move(r)) {}
  std::string name() const override { return r_->name(); }
  Tensor operator()(const Tensor& x) const override;
  Tensor score(const Tensor& x, const Tensor& ids) const override;
  bool uses_prompts() const override { return r_->uses_prompts(); }

 private:
  std::shared_ptr<const Reward> r_;
};
// The fraction of x's elements outside [−1, 1] (NaN counts as outside), no graph.
double out_of_range_fraction(const Tensor& x);

// Pixel rewards: "brightness", "contrast", "symmetry".
std::unique_ptr<Reward> make_pixel_reward(const std::string& name);

// log p_net(target | x)
class ClassifierReward : public Reward {
 public:
  ClassifierReward(std::shared_ptr<FeatureNet> net, int64_t target_class);
  std::string name() const override { return "classifier"; }
  Tensor operator()(const Tensor& x) const override;

 private:
  std::shared_ptr<FeatureNet> net_;
  int64_t target_;
};

// w·e/‖e‖ + b with e = net.embed(x).
class AestheticProbe : public Reward {
 public:
  AestheticProbe(std::shared_ptr<FeatureNet> net, Tensor w, double b);
  std::string name() const override { return "aesthetic"; }
  Tensor operator()(const Tensor& x) const override;
  const Tensor& weight() const { return w_; }
  double bias() const { return b_; }

 private:
  std::shared_ptr<FeatureNet> net_;
  Tensor w_;
  double b_;
};

// The synthetic "quality" score the aesthetic probes are fit to (docs/flow.md, "Rewards"): a
// fixed preference per class plus a within-class sharpness term,
//   q(x, c) = pref[c] + clamp((s(x) − μ_c)/σ_c, −2.5, 2.5),
// where s(x) = mean |finite-difference gradient| of the intensities (edge sharpness) and μ_c, σ_c
// are its mean and standard deviation over the class-c images of the set passed in (the training
// set when fitting). pref = kClassPreference (bag 8 … trouser 3); q lies in about [0.5, 10.5].
extern const double kClassPreference[10];
Tensor edge_sharpness(const Tensor& images);                             // [B] (differentiable)
Tensor synthetic_quality(const Tensor& images, const Tensor& labels);    // [B] f64, no graph

// Loads an aesthetic probe file (tensors "weight" [E] and "bias" [1], metadata "net") for `net`.
std::shared_ptr<AestheticProbe> load_aesthetic_probe(const std::string& path, std::shared_ptr<FeatureNet> net);
void save_aesthetic_probe(const std::string& path, const AestheticProbe& probe,
                          const std::map<std::string, std::string>& metadata);

// A training reward and its "gold" counterpart for evaluation (docs/flow.md, "Metrics"):
//   aesthetic        the F_A probe; gold: the F_B probe fit to the same score
//   classifier[:c]   log p_{F_A}(c | x), c a class name or index (default bag); gold: log p_{F_B}
//   brightness, contrast, symmetry   pixel functions; gold: the same function
// The networks and probes are read from models_dir (fa.safetensors, fb.safetensors,
// aesthetic_fa.safetensors, aesthetic_fb.safetensors).
struct RewardPair {
  std::shared_ptr<Reward> reward, gold;
  std::shared_ptr<FeatureNet> fa, fb;  // fb always loaded (metrics use it); fa when the reward needs it
};
RewardPair make_rewards(const std::string& spec, const std::string& models_dir);
// Loads a feature network file written by vgg_train_aux (its "kind" metadata must match).
std::shared_ptr<FeatureNet> load_feature_net(const std::string& path, const std::string& kind);
// The shipped models folder: $VGG_MODELS when set, else the source tree's models/.
std::string default_models_dir();

// Each row of e [B, E] divided by its L2 norm (the probe's e/‖e‖; differentiable).
Tensor unit_rows(const Tensor& e);

// Horizontal mirror of [..., W] along the last dim (differentiable).
Tensor flip_last(const Tensor& x);

}  // namespace vgg::flow
