#include "vggflow/rewards.h"

#include <cmath>
#include <cstdlib>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/io.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "vggflow/data.h"
#include "tensor/error.h"

namespace vgg::flow {

Tensor unit_rows(const Tensor& e) {
  return ops::div(e, ops::sqrt(ops::add(ops::sum(ops::square(e), {1}, true), 1e-12)));
}

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

Tensor ClampedReward::operator()(const Tensor& x) const { return (*r_)(ops::clamp(x, -1.0, 1.0)); }
Tensor ClampedReward::score(const Tensor& x, const Tensor& ids) const { return r_->score(ops::clamp(x, -1.0, 1.0), ids); }

double out_of_range_fraction(const Tensor& x) {
  NoGradGuard ng;
  if (x.numel() == 0) return 0.0;
  // |x| <= 1 is false for NaN, so NaN counts as outside
  const Tensor a = ops::abs(ops::to(x, DType::F64));
  const Tensor inside = ops::to(ops::le(a, full(a.shape(), 1.0, opts(DType::F64, a.device()))), DType::F64);
  return 1.0 - ops::mean(inside).item();
}

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
  Tensor n = unit_rows(e);
  return ops::add(ops::squeeze(ops::matmul(n, ops::unsqueeze(ops::to(ops::to(w_, e.dtype()), e.device()), 1)), 1), b_);
}

// t-shirt/top, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot
const double kClassPreference[10] = {5.0, 3.0, 4.0, 6.0, 5.0, 7.0, 4.5, 6.0, 8.0, 6.5};

Tensor edge_sharpness(const Tensor& images) {
  check_images("edge_sharpness", images);
  Tensor u = ops::mul(ops::add(images, 1.0), 0.5);
  const int64_t h = u.size(2), w = u.size(3);
  Tensor dy = ops::sub(ops::narrow(u, 2, 1, h - 1), ops::narrow(u, 2, 0, h - 1));
  Tensor dx = ops::sub(ops::narrow(u, 3, 1, w - 1), ops::narrow(u, 3, 0, w - 1));
  return ops::add(ops::mean(ops::abs(dy), {1, 2, 3}), ops::mean(ops::abs(dx), {1, 2, 3}));
}

Tensor synthetic_quality(const Tensor& images, const Tensor& labels) {
  VGG_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), "synthetic_quality: ", describe(labels),
            " labels for ", describe(images));
  NoGradGuard ng;
  const std::vector<double> s = ops::to(edge_sharpness(images), DType::F64).to_vector(), c = labels.to_vector();
  double sum[10] = {}, sq[10] = {}, n[10] = {};
  for (size_t i = 0; i < s.size(); ++i) {
    const auto k = static_cast<int64_t>(c[i]);
    VGG_CHECK(k >= 0 && k < 10, "synthetic_quality: label ", k, " outside [0, 10)");
    sum[k] += s[i], sq[k] += s[i] * s[i], n[k] += 1;
  }
  std::vector<double> q(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const auto k = static_cast<size_t>(c[i]);
    VGG_CHECK(n[k] >= 2, "synthetic_quality: class ", k, " needs at least 2 images");
    const double mu = sum[k] / n[k], sd = std::sqrt(std::max(sq[k] / n[k] - mu * mu, 1e-24));
    q[i] = kClassPreference[k] + std::clamp((s[i] - mu) / sd, -2.5, 2.5);
  }
  return from_vector(q, {static_cast<int64_t>(q.size())}, opts(DType::F64));
}

std::shared_ptr<FeatureNet> load_feature_net(const std::string& path, const std::string& kind) {
  auto net = std::make_shared<FeatureNet>(kind);
  auto meta = nn::load_weights(path, *net);
  auto it = meta.find("kind");
  VGG_CHECK(it == meta.end() || it->second == kind, path, ": holds a '", it->second, "' network, expected '", kind, "'");
  return net;
}

std::shared_ptr<AestheticProbe> load_aesthetic_probe(const std::string& path, std::shared_ptr<FeatureNet> net) {
  SafetensorsFile f = load_safetensors(path, DType::F32);
  auto get = [&](const char* name) { return f.at(name); };
  auto it = f.metadata.find("net");
  VGG_CHECK(it == f.metadata.end() || it->second == net->kind(), path, ": probe was fit on '", it->second,
            "' embeddings, not '", net->kind(), "'");
  Tensor b = get("bias");
  VGG_CHECK(b.numel() == 1, path, ": probe bias must hold one value, got ", describe(b));
  return std::make_shared<AestheticProbe>(std::move(net), get("weight"), b.item());
}

void save_aesthetic_probe(const std::string& path, const AestheticProbe& probe,
                          const std::map<std::string, std::string>& metadata) {
  save_safetensors(path,
                   std::vector<std::pair<std::string, Tensor>>{
                       {"weight", ops::to(probe.weight(), DType::F32)},
                       {"bias", from_vector(std::vector<double>{probe.bias()}, {1}, opts(DType::F32))}},
                   metadata);
}

std::string default_models_dir() {
  if (const char* e = std::getenv("VGG_MODELS"); e && *e) return e;
  return VGG_SOURCE_DIR "/models";
}

RewardPair make_rewards(const std::string& spec, const std::string& models_dir) {
  const std::string dir = models_dir.empty() ? default_models_dir() : models_dir;
  RewardPair p;
  p.fb = load_feature_net(dir + "/fb.safetensors", "fb");
  if (spec == "brightness" || spec == "contrast" || spec == "symmetry") {
    p.reward = make_pixel_reward(spec);
    p.gold = make_pixel_reward(spec);
    return p;
  }
  if (spec == "aesthetic") {
    p.fa = load_feature_net(dir + "/fa.safetensors", "fa");
    p.reward = load_aesthetic_probe(dir + "/aesthetic_fa.safetensors", p.fa);
    p.gold = load_aesthetic_probe(dir + "/aesthetic_fb.safetensors", p.fb);
    return p;
  }
  if (spec == "classifier" || spec.rfind("classifier:", 0) == 0) {
    int64_t target = 8;
    if (spec.size() > 11) {
      const std::string c = spec.substr(11);
      const auto& names = fashion_mnist_classes();
      target = -1;
      for (size_t i = 0; i < names.size(); ++i)
        if (names[i] == c || std::to_string(i) == c) target = static_cast<int64_t>(i);
      VGG_CHECK(target >= 0, "reward '", spec, "': unknown class '", c, "' (a class name such as bag, or 0-9)");
    }
    p.fa = load_feature_net(dir + "/fa.safetensors", "fa");
    p.reward = std::make_shared<ClassifierReward>(p.fa, target);
    p.gold = std::make_shared<ClassifierReward>(p.fb, target);
    return p;
  }
  VGG_FAIL("unknown reward '", spec, "' (aesthetic, classifier[:CLASS], brightness, contrast or symmetry)");
}

}  // namespace vgg::flow
