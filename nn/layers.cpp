#include "nn/layers.h"

#include <cmath>

#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::nn {

// ---- initialisers ------------------------------------------------------------------------
namespace {
void assign(Tensor& t, const Tensor& values) {
  NoGradGuard ng;
  copy_into(t, cast_raw(values, t.dtype()));
  t.bump_version();
}
Generator* gen_or_default(Generator* g) { return g ? g : &default_generator(); }
}  // namespace

void zeros_(Tensor& t) { constant_(t, 0.0); }
void ones_(Tensor& t) { constant_(t, 1.0); }
void constant_(Tensor& t, double v) {
  NoGradGuard ng;
  fill_(t, v);
}

void normal_(Tensor& t, double mean, double std, Generator* g) {
  Tensor r = randn(t.shape(), opts(DType::F64, t.device()), gen_or_default(g));
  NoGradGuard ng;
  assign(t, ops::add(ops::mul(r, std), mean));
}

void uniform_(Tensor& t, double lo, double hi, Generator* g) {
  assign(t, uniform(t.shape(), lo, hi, opts(DType::F64, t.device()), gen_or_default(g)));
}

std::pair<int64_t, int64_t> fans(const Tensor& w) {
  VGG_CHECK(w.dim() >= 2, "fans: a weight needs at least 2 dims, got ", shape_str(w.shape()));
  int64_t rf = 1;
  for (int64_t d = 2; d < w.dim(); ++d) rf *= w.size(d);
  return {w.size(1) * rf, w.size(0) * rf};
}

void xavier_uniform_(Tensor& t, double gain, Generator* g) {
  auto [fi, fo] = fans(t);
  double b = gain * std::sqrt(6.0 / static_cast<double>(fi + fo));
  uniform_(t, -b, b, g);
}

void xavier_normal_(Tensor& t, double gain, Generator* g) {
  auto [fi, fo] = fans(t);
  normal_(t, 0.0, gain * std::sqrt(2.0 / static_cast<double>(fi + fo)), g);
}

void kaiming_uniform_(Tensor& t, double a, Generator* g) {
  auto [fi, fo] = fans(t);
  double b = std::sqrt(6.0 / ((1.0 + a * a) * static_cast<double>(fi)));
  uniform_(t, -b, b, g);
}

void kaiming_normal_(Tensor& t, double a, Generator* g) {
  auto [fi, fo] = fans(t);
  normal_(t, 0.0, std::sqrt(2.0 / ((1.0 + a * a) * static_cast<double>(fi))), g);
}

// ---- layers -------------------------------------------------------------------------------
Tensor new_parameter(const Shape& shape, const LayerOptions& o) {
  Tensor t = o.deferred ? placeholder(shape, o.dtype) : empty(shape, o.dtype, o.device);
  t.requires_grad_(true);
  return t;
}

Linear::Linear(int64_t in, int64_t out, bool with_bias, LayerOptions o) : in_(in), out_(out) {
  VGG_CHECK(in > 0 && out > 0, "Linear: sizes must be positive, got in ", in, ", out ", out);
  weight = new_parameter({out, in}, o);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = new_parameter({out}, o);
    register_parameter("bias", bias);
  }
  if (!o.deferred) reset_parameters(o.gen);
}

void Linear::reset_parameters(Generator* gen) {
  kaiming_uniform_(weight, std::sqrt(5.0), gen);
  if (bias.defined()) {
    double b = 1.0 / std::sqrt(static_cast<double>(in_));
    uniform_(bias, -b, b, gen);
  }
}

Linear::Linear(const Tensor& w, const Tensor& b) : weight(w), bias(b) {
  VGG_CHECK(w.defined() && w.dim() == 2, "Linear: weight must be 2-D [out, in], got ",
            w.defined() ? shape_str(w.shape()) : "undefined");
  out_ = w.size(0), in_ = w.size(1);
  VGG_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == out_), "Linear: bias ", b.defined() ? describe(b) : "",
            " does not match weight ", describe(w));
  register_parameter("weight", weight);
  if (bias.defined()) register_parameter("bias", bias);
}

Tensor Linear::base_forward(const Tensor& x) const {
  VGG_CHECK(x.dim() >= 1 && x.shape().back() == in_, "Linear(", in_, " -> ", out_, "): input ", describe(x),
            " must end in ", in_);
  const Tensor w = compute(weight);
  VGG_CHECK(x.dtype() == w.dtype(), "Linear(", in_, " -> ", out_, "): input is ", dtype_name(x.dtype()),
            " but the layer computes in ", dtype_name(w.dtype()));
  return ops::linear(x, w, bias.defined() ? compute(bias) : Tensor());
}

Tensor Linear::forward(const Tensor& x) { return base_forward(x); }

LayerNorm::LayerNorm(int64_t d, double e, bool affine, LayerOptions o) : dim(d), eps(e) {
  if (affine) {
    weight = new_parameter({d}, o);
    bias = new_parameter({d}, o);
    register_parameter("weight", weight);
    register_parameter("bias", bias);
    if (!o.deferred) reset_parameters(o.gen);
  }
}

void LayerNorm::reset_parameters(Generator*) {
  if (weight.defined()) ones_(weight);
  if (bias.defined()) zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) const { return ops::layer_norm(x, {dim}, compute(weight), compute(bias), eps); }

RMSNorm::RMSNorm(int64_t d, double e, bool affine, LayerOptions o) : dim(d), eps(e) {
  if (affine) {
    weight = new_parameter({d}, o);
    register_parameter("weight", weight);
    if (!o.deferred) reset_parameters(o.gen);
  }
}

void RMSNorm::reset_parameters(Generator*) {
  if (weight.defined()) ones_(weight);
}

Tensor RMSNorm::forward(const Tensor& x) const { return ops::rms_norm(x, {dim}, compute(weight), eps); }

GELUProj::GELUProj(int64_t in, int64_t out, LayerOptions o) : proj(std::make_shared<Linear>(in, out, true, o)) {
  register_module("proj", proj);
}

FeedForward::FeedForward(int64_t dim, int64_t mult, LayerOptions o)
    : net0(std::make_shared<GELUProj>(dim, dim * mult, o)), net2(std::make_shared<Linear>(dim * mult, dim, true, o)) {
  register_module("net.0", net0);
  register_module("net.2", net2);
}

Embedding::Embedding(int64_t num, int64_t d, LayerOptions o) {
  VGG_CHECK(num > 0 && d > 0, "Embedding: sizes must be positive, got ", num, " x ", d);
  weight = new_parameter({num, d}, o);
  register_parameter("weight", weight);
  if (!o.deferred) reset_parameters(o.gen);
}

void Embedding::reset_parameters(Generator* gen) { normal_(weight, 0.0, 1.0, gen); }

Conv2d::Conv2d(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, bool with_bias, LayerOptions o)
    : stride(s), padding(p) {
  VGG_CHECK(in > 0 && out > 0 && k > 0 && s > 0 && p >= 0, "Conv2d: bad geometry in ", in, ", out ", out,
            ", kernel ", k, ", stride ", s, ", padding ", p);
  weight = new_parameter({out, in, k, k}, o);
  register_parameter("weight", weight);
  if (with_bias) {
    bias = new_parameter({out}, o);
    register_parameter("bias", bias);
  }
  if (!o.deferred) reset_parameters(o.gen);
}

void Conv2d::reset_parameters(Generator* gen) {
  kaiming_uniform_(weight, std::sqrt(5.0), gen);
  if (bias.defined()) {
    double b = 1.0 / std::sqrt(static_cast<double>(fans(weight).first));
    uniform_(bias, -b, b, gen);
  }
}

Tensor Conv2d::forward(const Tensor& x) const {
  return ops::conv2d(x, compute(weight), compute(bias), ops::Conv2dOptions{stride, stride, padding, padding});
}

}  // namespace vgg::nn
