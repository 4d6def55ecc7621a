#include "vggflow/rewards.h"

#include "autograd/ops.h"
#include "tensor/error.h"

namespace vgg::flow {

Tensor flip_last(const Tensor& x) {
  const int64_t w = x.shape().back();
  std::vector<int64_t> idx(static_cast<size_t>(w));
  for (int64_t i = 0; i < w; ++i) idx[static_cast<size_t>(i)] = w - 1 - i;
  return ops::index_select(x, x.dim() - 1, from_vector(idx, {w}, opts(DType::I64, x.device())));
}

namespace {

void check_images(const char* name, const Tensor& x) {
  VGG_CHECK(x.dim() == 4 && x.size(0) > 0 && is_floating(x.dtype()), "reward ", name,
            ": images must be a floating [B, C, H, W] tensor, got ", describe(x));
}

class PixelReward : public Reward {
 public:
  explicit PixelReward(std::string kind) : kind_(std::move(kind)) {}
  std::string name() const override { return kind_; }
  Tensor operator()(const Tensor& x) const override {
    check_images(kind_.c_str(), x);
    Tensor u = ops::mul(ops::add(x, 1.0), 0.5);  // [0, 1] intensities
    if (kind_ == "brightness") return ops::mean(u, {1, 2, 3});
    if (kind_ == "contrast") {
      // sqrt(var + tiny): the tiny keeps the gradient finite on a constant image
      return ops::sqrt(ops::add(ops::var(u, {1, 2, 3}, /*correction=*/0), 1e-12));
    }
    return ops::mul(ops::mean(ops::square(ops::sub(x, flip_last(x))), {1, 2, 3}), -0.25);  // symmetry
  }

 private:
  std::string kind_;
};

}  // namespace

std::unique_ptr<Reward> make_pixel_reward(const std::string& name) {
  VGG_CHECK(name == "brightness" || name == "contrast" || name == "symmetry", "unknown pixel reward '", name,
            "' (brightness, contrast or symmetry)");
  return std::make_unique<PixelReward>(name);
}

ClassifierReward::ClassifierReward(std::shared_ptr<FeatureNet> net, int64_t target) : net_(std::move(net)), target_(target) {
  VGG_CHECK(net_ != nullptr, "classifier reward: no network");
  VGG_CHECK(target >= 0 && target < 10, "classifier reward: target class ", target, " is outside [0, 10)");
}

Tensor ClassifierReward::operator()(const Tensor& x) const {
  check_images("classifier", x);
  Tensor logp = ops::log_softmax(net_->logits(x), 1);
  return ops::squeeze(ops::narrow(logp, 1, target_, 1), 1);
}

AestheticProbe::AestheticProbe(std::shared_ptr<FeatureNet> net, Tensor w, double b)
    : net_(std::move(net)), w_(std::move(w)), b_(b) {
  VGG_CHECK(net_ != nullptr, "aesthetic reward: no network");
  VGG_CHECK(w_.dim() == 1 && w_.size(0) == net_->embedding_dim(), "aesthetic reward: probe weight ", describe(w_),
            " must be [", net_->embedding_dim(), "]");
}

Tensor AestheticProbe::operator()(const Tensor& x) const {
  check_images("aesthetic", x);
  Tensor e = net_->embed(x);
  Tensor n = ops::div(e, ops::sqrt(ops::add(ops::sum(ops::square(e), {1}, true), 1e-12)));
  return ops::add(ops::squeeze(ops::matmul(n, ops::unsqueeze(ops::to(w_, e.dtype()), 1)), 1), b_);
}

}  // namespace vgg::flow
