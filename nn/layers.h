// Basic layers with diffusers/PyTorch parameter names and layouts, and the initialisers.
//   Linear       weight [out, in], bias [out]          y = x·Wᵀ + b
//   LayerNorm    weight/bias [D] when affine            over the last dim, biased variance
//   RMSNorm      weight [D] when affine                 x / sqrt(mean(x²) + eps) ⊙ g
//   GELU         the tanh approximation by default (PyTorch approximate="tanh")
//   FeedForward  net.0.proj (D→mult·D), GELU(tanh), net.2 (mult·D→D): diffusers' FeedForward
//   Embedding    weight [V, D]
//   Conv2d       weight [O, C, kh, kw], bias [O]
// Every layer takes a Generator for its default initialisation (PyTorch's defaults: Linear
// and Conv2d kaiming_uniform(a=√5) weights and U(±1/√fan_in) biases; Embedding N(0, 1)).
#pragma once
#include "autograd/ops.h"
#include "nn/module.h"
#include "tensor/random.h"

namespace vgg::nn {

// ---- initialisers (in place, no graph; bump the version) ------------------------------
void zeros_(Tensor& t);
void ones_(Tensor& t);
void constant_(Tensor& t, double v);
void normal_(Tensor& t, double mean, double std, Generator* g = nullptr);
void uniform_(Tensor& t, double lo, double hi, Generator* g = nullptr);
// fan_in / fan_out of a weight [out, in, ...]: in·receptive field / out·receptive field.
std::pair<int64_t, int64_t> fans(const Tensor& weight);
void xavier_uniform_(Tensor& t, double gain = 1.0, Generator* g = nullptr);
void xavier_normal_(Tensor& t, double gain = 1.0, Generator* g = nullptr);
// Kaiming uniform with leaky-relu slope a over fan_in: bound = √(6 / ((1 + a²)·fan_in)).
void kaiming_uniform_(Tensor& t, double a = 0.0, Generator* g = nullptr);
void kaiming_normal_(Tensor& t, double a = 0.0, Generator* g = nullptr);

struct LayerOptions {
  DType dtype = DType::F32;
  Device device = Device::cpu();
  Generator* gen = nullptr;  // default generator when null
  bool deferred = false;     // placeholders now, memory and init at Module::materialize()
};

// A parameter of the layer options' dtype/device (a placeholder when deferred), requires_grad.
Tensor new_parameter(const Shape& shape, const LayerOptions& o);


class Linear : public Module {
 public:
  Linear(int64_t in, int64_t out, bool bias = true, LayerOptions o = {});
  // Wraps existing tensors (shared, not copied): weight [out, in], bias [out] or undefined.
  Linear(const Tensor& weight, const Tensor& bias);
  std::string type_name() const override { return "Linear"; }
  virtual Tensor forward(const Tensor& x);
  void reset_parameters(Generator* gen) override;
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }
  Tensor weight, bias;

 protected:
  Tensor base_forward(const Tensor& x) const;
  int64_t in_, out_;
};

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true, LayerOptions o = {});
  std::string type_name() const override { return "LayerNorm"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  int64_t dim;
  double eps;
};

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps = 1e-6, bool affine = true, LayerOptions o = {});
  std::string type_name() const override { return "RMSNorm"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& x) const;
  Tensor weight;
  int64_t dim;
  double eps;
};

class GELU : public Module {
 public:
  explicit GELU(bool tanh_approximation = true) : tanh_(tanh_approximation) {}
  std::string type_name() const override { return "GELU"; }
  Tensor forward(const Tensor& x) const { return ops::gelu(x, tanh_); }

 private:
  bool tanh_;
};

// diffusers GELU module: a Linear ("proj") followed by the activation.
class GELUProj : public Module {
 public:
  GELUProj(int64_t in, int64_t out, LayerOptions o = {});
  std::string type_name() const override { return "GELUProj"; }
  Tensor forward(const Tensor& x) { return ops::gelu(proj->forward(x), true); }
  std::shared_ptr<Linear> proj;
};

class FeedForward : public Module {
 public:
  FeedForward(int64_t dim, int64_t mult = 4, LayerOptions o = {});
  std::string type_name() const override { return "FeedForward"; }
  Tensor forward(const Tensor& x) { return net2->forward(net0->forward(x)); }
  std::shared_ptr<GELUProj> net0;  // "net.0"
  std::shared_ptr<Linear> net2;    // "net.2"
};

class Embedding : public Module {
 public:
  Embedding(int64_t num, int64_t dim, LayerOptions o = {});
  std::string type_name() const override { return "Embedding"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& index) const { return ops::embedding(weight, index); }
  Tensor weight;
};

class Conv2d : public Module {
 public:
  Conv2d(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, bool bias = true,
         LayerOptions o = {});
  std::string type_name() const override { return "Conv2d"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  int64_t stride, padding;
};

}  // namespace vgg::nn
