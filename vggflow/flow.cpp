#include "vggflow/flow.h"

#include <cmath>

#include "autograd/ops.h"
#include "tensor/error.h"
#include "vggflow/schedule.h"

namespace vgg::flow {

namespace {
// σ [B] -> [B, 1, 1, …] matching x's rank and dtype
Tensor per_sample(const Tensor& sigma, const Tensor& x, const char* what) {
  VGG_CHECK(sigma.dim() == 1 && x.dim() >= 1 && sigma.size(0) == x.size(0), what, ": sigma must be [B] for x ",
            describe(x), ", got ", describe(sigma));
  Shape s(static_cast<size_t>(x.dim()), 1);
  s[0] = x.size(0);
  return ops::reshape(ops::to(sigma, x.dtype()), s);
}
}  // namespace

Tensor noise_sample(const Tensor& x0, const Tensor& eps, const Tensor& sigma) {
  VGG_CHECK(x0.shape() == eps.shape(), "noise_sample: x0 ", describe(x0), " and noise ", describe(eps),
            " must have the same shape");
  Tensor s = per_sample(sigma, x0, "noise_sample");
  return ops::add(ops::mul(ops::add(ops::neg(s), 1.0), x0), ops::mul(s, eps));
}

Tensor velocity_target(const Tensor& x0, const Tensor& eps) { return ops::sub(eps, x0); }

Tensor predict_x0(const Tensor& x, const Tensor& sigma, const Tensor& u) {
  return ops::sub(x, ops::mul(per_sample(sigma, x, "predict_x0"), u));
}

Tensor predict_noise(const Tensor& x, const Tensor& sigma, const Tensor& u) {
  return ops::add(x, ops::mul(ops::add(ops::neg(per_sample(sigma, x, "predict_noise")), 1.0), u));
}

Tensor paper_velocity(const Tensor& u) { return ops::neg(u); }

Tensor sample_training_sigmas(int64_t batch, const TimestepSampling& ts, Generator& gen) {
  VGG_CHECK(batch > 0, "sample_training_sigmas: batch must be positive, got ", batch);
  std::vector<double> table = training_sigmas(ts.shift);  // descending: table[i] = shift((1000 − i)/1000)
  const int64_t n = static_cast<int64_t>(table.size());
  std::vector<double> u(static_cast<size_t>(batch));
  if (ts.scheme == "logit_normal") {
    Tensor z = randn({batch}, opts(DType::F64), &gen);
    for (int64_t i = 0; i < batch; ++i)
      u[static_cast<size_t>(i)] = 1.0 / (1.0 + std::exp(-(ts.logit_mean + ts.logit_std * z.at({i}))));
  } else if (ts.scheme == "uniform" || ts.scheme == "mode") {
    Tensor r = rand({batch}, opts(DType::F64), &gen);
    for (int64_t i = 0; i < batch; ++i) {
      double v = r.at({i});
      if (ts.scheme == "mode") v = 1.0 - v - ts.mode_scale * (std::cos(M_PI * v / 2.0) * std::cos(M_PI * v / 2.0) - 1.0 + v);
      u[static_cast<size_t>(i)] = v;
    }
  } else {
    VGG_FAIL("sample_training_sigmas: unknown scheme '", ts.scheme, "' (logit_normal, uniform or mode)");
  }
  // diffusers: indices = (u · num_train_timesteps).long(); sigma = sigmas[indices] (descending table)
  std::vector<float> s(static_cast<size_t>(batch));
  for (int64_t i = 0; i < batch; ++i) {
    int64_t idx = static_cast<int64_t>(u[static_cast<size_t>(i)] * static_cast<double>(n));
    idx = std::min<int64_t>(std::max<int64_t>(idx, 0), n - 1);
    s[static_cast<size_t>(i)] = static_cast<float>(table[static_cast<size_t>(idx)]);
  }
  return from_vector(s, {batch}, opts(DType::F32));
}

Tensor sample_euler(const VelocityFn& f, const Tensor& noise, const Conditioning& cond, const Conditioning& uncond,
                    const SampleOptions& o, Trajectory* traj) {
  VGG_CHECK(o.steps > 0, "sample_euler: steps must be positive, got ", o.steps);
  VGG_CHECK(std::isfinite(o.guidance), "sample_euler: guidance must be finite, got ", o.guidance);
  VGG_CHECK(noise.dim() >= 1 && noise.size(0) > 0, "sample_euler: noise must be [B, ...], got ", describe(noise));
  const bool cfg = o.guidance != 1.0;
  VGG_CHECK(!cfg || (uncond.context.defined() && uncond.pooled.defined()),
            "sample_euler: guidance ", o.guidance, " needs the unconditional conditioning");
  const int64_t B = noise.size(0);
  InferenceSchedule sched = inference_schedule(o.steps, o.shift);
  const DType work = noise.dtype() == DType::F64 ? DType::F64 : DType::F32;
  Tensor x = ops::to(noise, work);
  Conditioning both;
  if (cfg) both = {ops::cat({uncond.context, cond.context}, 0), ops::cat({uncond.pooled, cond.pooled}, 0)};
  if (traj) {
    *traj = Trajectory{};
    traj->latents.push_back(x);
    traj->sigmas.assign(sched.sigmas.begin(), sched.sigmas.end());
    traj->timesteps.assign(sched.timesteps.begin(), sched.timesteps.end());
  }
  for (int64_t i = 0; i < o.steps; ++i) {
    const float tau = sched.timesteps[static_cast<size_t>(i)];
    Tensor u;
    if (cfg) {
      Tensor xx = ops::cat({x, x}, 0);
      Tensor out = ops::to(f(ops::to(xx, noise.dtype()), full({2 * B}, tau, opts(DType::F32)), both), work);
      Tensor uu = ops::narrow(out, 0, 0, B), uc = ops::narrow(out, 0, B, B);
      u = ops::add(uu, ops::mul(ops::sub(uc, uu), o.guidance));
    } else {
      u = ops::to(f(ops::to(x, noise.dtype()), full({B}, tau, opts(DType::F32)), cond), work);
    }
    VGG_CHECK(u.shape() == x.shape(), "sample_euler: the model returned ", describe(u), " for latents ", describe(x));
    // σ_next − σ in f32, as diffusers' scheduler forms it
    const float dt = sched.sigmas[static_cast<size_t>(i + 1)] - sched.sigmas[static_cast<size_t>(i)];
    x = ops::add(x, ops::mul(u, dt));
    if (traj) traj->latents.push_back(x);
  }
  return ops::to(x, noise.dtype());
}

}  // namespace vgg::flow
