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
#include <memory>
#include <string>
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
};

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

// Horizontal mirror of [..., W] along the last dim (differentiable).
Tensor flip_last(const Tensor& x);

}  // namespace vgg::flow
