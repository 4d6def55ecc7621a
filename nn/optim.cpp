// AdamW, LR schedules and EMA (contracts in nn/optim.h). AdamW's arithmetic runs in the
// multi-tensor kernels of kernels/optim.h (CPU and CUDA, same bits); the EMA loop is written so
// that each element sees the reference's roundings (contraction is turned off for this file).
#include "nn/optim.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>
#include <numbers>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "kernels/optim.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::nn {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which loops stay single-threaded
// One (device, dtype) bucket of tensors for the multi-tensor kernels.
struct BucketKey {
  DeviceType type;
  int index;
  DType dtype;
  auto operator<=>(const BucketKey&) const = default;
};
BucketKey bucket_of(const Tensor& t) { return {t.device().type, t.device().index, t.dtype()}; }
Device device_of(const BucketKey& k) { return Device{k.type, k.index}; }

// A CPU copy (the snapshot a state dict holds).
Tensor host_copy(const Tensor& t) { return t.device().is_cpu() ? clone_raw(t) : to_device_raw(t, Device::cpu()); }

void check_hyper(const ParamGroup& g, const char* who) {
  auto finite = [&](double v, const char* what) {
    VGG_CHECK(std::isfinite(v), who, ": group '", g.name, "': ", what, " is ", v, " (must be finite)");
  };
  finite(g.lr, "lr");
  finite(g.beta1, "beta1");
  finite(g.beta2, "beta2");
  finite(g.eps, "eps");
  finite(g.weight_decay, "weight_decay");
  finite(g.max_grad_norm, "max_grad_norm");
  VGG_CHECK(g.lr >= 0, who, ": group '", g.name, "': lr ", g.lr, " is negative");
  VGG_CHECK(g.beta1 >= 0 && g.beta1 < 1, who, ": group '", g.name, "': beta1 ", g.beta1, " is not in [0, 1)");
  VGG_CHECK(g.beta2 >= 0 && g.beta2 < 1, who, ": group '", g.name, "': beta2 ", g.beta2, " is not in [0, 1)");
  VGG_CHECK(g.eps >= 0, who, ": group '", g.name, "': eps ", g.eps, " is negative");
  VGG_CHECK(g.weight_decay >= 0, who, ": group '", g.name, "': weight_decay ", g.weight_decay, " is negative");
  VGG_CHECK(g.max_grad_norm >= 0, who, ": group '", g.name, "': max_grad_norm ", g.max_grad_norm,
            " is negative (0 disables clipping)");
}

// Fills empty names with indices and checks they are non-empty and unique.
std::vector<std::string> resolve_names(std::vector<std::string> names, size_t count, const std::string& where,
                                       const char* who) {
  if (names.empty())
    for (size_t i = 0; i < count; ++i) names.push_back(std::to_string(i));
  VGG_CHECK(names.size() == count, who, ": ", where, "has ", count, " parameters but ", names.size(), " names");
  std::set<std::string> seen;
  for (const auto& n : names) {
    VGG_CHECK(!n.empty(), who, ": ", where, "has an empty parameter name");
    VGG_CHECK(seen.insert(n).second, who, ": ", where, "has the parameter name '", n, "' twice");
  }
  return names;
}

// Expected entries of a state dict and the checks that match them against one.
struct Expect {
  enum Kind { Array, Integer, Real };
  std::string key;
  Kind kind;
  DType dtype = DType::F64;  // Array
  Shape shape = {};          // Array
  std::string owner = {};    // Array: what the shape belongs to, for messages
};

std::string key_list_error(const std::vector<std::string>& keys, const char* what) {
  std::string s = std::string(what) + " key '" + keys.front() + "'";
  if (keys.size() > 1) s += " (and " + std::to_string(keys.size() - 1) + " more)";
  return s;
}

// Returns the tensors for `ex` in order after checking names, dtypes and shapes.
std::vector<Tensor> match_state(const char* who, const NamedTensors& sd, const std::vector<Expect>& ex) {
  std::map<std::string, Tensor> by_name;
  for (const auto& [k, t] : sd) VGG_CHECK(by_name.emplace(k, t).second, who, ": key '", k, "' appears twice");
  std::vector<std::string> missing, unexpected;
  std::set<std::string> wanted;
  for (const auto& e : ex) {
    wanted.insert(e.key);
    if (!by_name.count(e.key)) missing.push_back(e.key);
  }
  for (const auto& [k, t] : sd)
    if (!wanted.count(k)) unexpected.push_back(k);
  VGG_CHECK(missing.empty(), who, ": ", key_list_error(missing, "missing"));
  VGG_CHECK(unexpected.empty(), who, ": ", key_list_error(unexpected, "unexpected"));
  std::vector<Tensor> out;
  for (const auto& e : ex) {
    const Tensor& t = by_name.at(e.key);
    VGG_CHECK(t.defined(), who, ": key '", e.key, "' holds an undefined tensor");
    switch (e.kind) {
      case Expect::Array:
        VGG_CHECK(t.dtype() == e.dtype, who, ": key '", e.key, "' is ", dtype_name(t.dtype()), ", expected ",
                  dtype_name(e.dtype));
        VGG_CHECK(t.shape() == e.shape, who, ": key '", e.key, "' has shape ", shape_str(t.shape()), " but ", e.owner,
                  " has ", shape_str(e.shape));
        break;
      case Expect::Integer:
        VGG_CHECK(is_integral(t.dtype()) && t.numel() == 1, who, ": key '", e.key, "' must hold one integer, got ",
                  describe(t));
        VGG_CHECK(t.item() >= 0, who, ": key '", e.key, "' is negative (", t.item(), ")");
        break;
      case Expect::Real:
        VGG_CHECK(is_floating(t.dtype()) && t.numel() == 1, who, ": key '", e.key,
                  "' must hold one floating-point number, got ", describe(t));
        break;
    }
    out.push_back(t);
  }
  return out;
}

Tensor f64_scalar(double v) { return scalar_tensor(v, {DType::F64}); }
Tensor i64_scalar(int64_t v) { return from_vector(std::vector<int64_t>{v}, Shape{}); }

const char* kHyperNames[] = {"lr", "base_lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm"};

}  // namespace

// ---- AdamW ---------------------------------------------------------------------------------

AdamW::AdamW(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  VGG_CHECK(!groups_.empty(), "AdamW: no parameter groups");
  std::set<std::string> group_names;
  struct Where {
    size_t g, i;
  };
  std::map<std::pair<const void*, const void*>, Where> seen;  // (storage, data) -> first place
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& g = groups_[gi];
    if (g.name.empty()) g.name = std::to_string(gi);
    VGG_CHECK(group_names.insert(g.name).second, "AdamW: two groups are named '", g.name, "'");
    VGG_CHECK(!g.params.empty(), "AdamW: group '", g.name, "' has no parameters");
    g.param_names = resolve_names(g.param_names, g.params.size(), "group '" + g.name + "' ", "AdamW");
    check_hyper(g, "AdamW");
    base_lr_.push_back(g.lr);
    state_.emplace_back();
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      const std::string name = g.name + "." + g.param_names[i];
      VGG_CHECK(p.defined(), "AdamW: parameter '", name, "' is undefined");
      VGG_CHECK(p.is_leaf(), "AdamW: parameter '", name, "' is not a leaf (it has a grad_fn); optimise the leaf it "
                "was computed from");
      VGG_CHECK(p.requires_grad(), "AdamW: parameter '", name, "' does not require grad");
      VGG_CHECK(p.dtype() != DType::BF16, "AdamW: parameter '", name, "' is bf16; keep an f32 master copy (bf16 "
                "parameters are not supported)");
      VGG_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, "AdamW: parameter '", name, "' is ",
                dtype_name(p.dtype()), " (expects f32 or f64)");
      VGG_CHECK(p.is_contiguous(), "AdamW: parameter '", name, "' (", describe(p), ") is not contiguous");
      auto key = std::make_pair(static_cast<const void*>(p.storage().get()), static_cast<const void*>(p.data_ptr()));
      auto [it, fresh] = seen.emplace(key, Where{gi, i});
      VGG_CHECK(fresh, "AdamW: parameter '", name, "' is also in the optimizer as '",
                groups_[it->second.g].name, ".", groups_[it->second.g].param_names[it->second.i], "'");
    }
    // the moments of each (device, dtype) bucket of the group live in two flat buffers (the
    // optimizer-state arena); each parameter's moments are views into them
    std::map<BucketKey, int64_t> total;
    for (const Tensor& p : g.params) total[bucket_of(p)] += p.numel();
    std::map<BucketKey, std::pair<Tensor, Tensor>> arena;
    for (const auto& [k, n] : total)
      arena[k] = {zeros({n}, {k.dtype, device_of(k)}), zeros({n}, {k.dtype, device_of(k)})};
    std::map<BucketKey, int64_t> offset;
    for (const Tensor& p : g.params) {
      const BucketKey k = bucket_of(p);
      const int64_t off = offset[k];
      offset[k] += p.numel();
      const Strides st = contiguous_strides(p.shape());
      state_.back().push_back({as_strided_view(arena[k].first, p.shape(), st, off),
                               as_strided_view(arena[k].second, p.shape(), st, off), 0});
    }
  }
  std::set<std::string> keys;  // "a.b" + "c" and "a" + "b.c" would share state keys
  auto add_key = [&](const std::string& k) {
    VGG_CHECK(keys.insert(k).second, "AdamW: the state key '", k, "' would be used twice (group and parameter "
              "names collide)");
  };
  for (const auto& g : groups_) {
    for (const char* h : kHyperNames) add_key(g.name + "." + h);
    for (const auto& n : g.param_names)
      for (const char* what : {".exp_avg", ".exp_avg_sq", ".step"}) add_key(g.name + "." + n + what);
  }
}

const ParamGroup& AdamW::group(size_t g) const {
  VGG_CHECK(g < groups_.size(), "AdamW: group index ", g, " out of range (", groups_.size(), " groups)");
  return groups_[g];
}
ParamGroup& AdamW::group(size_t g) {
  VGG_CHECK(g < groups_.size(), "AdamW: group index ", g, " out of range (", groups_.size(), " groups)");
  return groups_[g];
}
void AdamW::set_lr(size_t g, double lr) {
  VGG_CHECK(std::isfinite(lr) && lr >= 0, "AdamW.set_lr: lr ", lr, " must be finite and >= 0");
  group(g).lr = lr;
}
double AdamW::base_lr(size_t g) const {
  (void)group(g);  // range check
  return base_lr_[g];
}
void AdamW::set_base_lr(size_t g, double lr) {
  VGG_CHECK(std::isfinite(lr) && lr >= 0, "AdamW.set_base_lr: lr ", lr, " must be finite and >= 0");
  (void)group(g);
  base_lr_[g] = lr;
}

const AdamW::ParamState& AdamW::state(size_t g, size_t i) const {
  (void)group(g);  // range check
  VGG_CHECK(i < state_[g].size(), "AdamW: parameter index ", i, " out of range in group '", groups_[g].name, "'");
  return state_[g][i];
}
const Tensor& AdamW::exp_avg(size_t g, size_t i) const { return state(g, i).exp_avg; }
const Tensor& AdamW::exp_avg_sq(size_t g, size_t i) const { return state(g, i).exp_avg_sq; }
int64_t AdamW::step_count(size_t g, size_t i) const { return state(g, i).step; }

StepStats AdamW::step() {
  NoGradGuard no_grad;
  // Phase 1 checks every group and gathers the gradients, so that a bad gradient throws
  // before any parameter changes.
  struct Pending {
    std::vector<size_t> idx;  // parameters with a gradient
    std::vector<Tensor> grads;
    std::vector<double> sq;   // their sums of squares
  };
  std::vector<Pending> pending(groups_.size());
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    check_hyper(g, "AdamW.step");
    VGG_CHECK(g.params.size() == state_[gi].size(), "AdamW.step: group '", g.name, "' now has ", g.params.size(),
              " parameters but was built with ", state_[gi].size());
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      const std::string name = g.name + "." + g.param_names[i];
      const Tensor& m = state_[gi][i].exp_avg;
      VGG_CHECK(p.defined() && p.shape() == m.shape() && p.dtype() == m.dtype() && p.device() == m.device() &&
                    p.is_contiguous(),
                "AdamW.step: parameter '", name, "' (", (p.defined() ? describe(p) : "undefined"),
                ") was replaced after construction");
      Tensor gr = p.grad();
      if (!gr.defined()) continue;
      VGG_CHECK(gr.dtype() == p.dtype() && gr.shape() == p.shape() && gr.device() == p.device(),
                "AdamW.step: gradient ", describe(gr), " of '", name, "' does not match the parameter ", describe(p));
      pending[gi].idx.push_back(i);
      pending[gi].grads.push_back(contiguous_raw(gr));
    }
    // sums of squares, one multi-tensor call per (device, dtype)
    Pending& pd = pending[gi];
    pd.sq.assign(pd.idx.size(), 0.0);
    std::map<BucketKey, std::vector<size_t>> buckets;
    for (size_t k = 0; k < pd.idx.size(); ++k) buckets[bucket_of(pd.grads[k])].push_back(k);
    for (const auto& [key, ks] : buckets) {
      std::vector<const void*> xs;
      std::vector<int64_t> ns;
      for (size_t k : ks) xs.push_back(pd.grads[k].data_ptr()), ns.push_back(pd.grads[k].numel());
      std::vector<double> out(ks.size());
      get_kernel<kernels::SumSquaresMultiKernel>(device_of(key), key.dtype)(
          xs.data(), ns.data(), static_cast<int64_t>(ks.size()), out.data());
      for (size_t j = 0; j < ks.size(); ++j) pd.sq[ks[j]] = out[j];
    }
  }
  // Phase 2: norms, clipping, updates.
  StepStats stats;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const Pending& pd = pending[gi];
    GroupStepStats gs;
    gs.name = g.name;
    double total = 0;
    if (sum_squares_hook_) {
      total = sum_squares_hook_(gi, pd.idx, pd.sq);
    } else {
      for (double s : pd.sq) total += s;
    }
    gs.grad_norm = std::sqrt(total);
    if (!std::isfinite(gs.grad_norm)) {
      gs.nonfinite = true;
      std::string where = "(the sum of squares overflows)";
      for (size_t k = 0; k < pd.idx.size(); ++k)
        if (!std::isfinite(pd.sq[k])) {
          where = "in '" + g.param_names[pd.idx[k]] + "'";
          break;
        }
      std::ostringstream os;
      os << "group '" << g.name << "': non-finite gradient norm " << gs.grad_norm << " " << where
         << "; step skipped";
      gs.error = os.str();
      stats.nonfinite = true;
      stats.error += (stats.error.empty() ? "" : "; ") + gs.error;
      stats.groups.push_back(gs);
      continue;
    }
    if (g.max_grad_norm > 0) {
      double c = g.max_grad_norm / (gs.grad_norm + 1e-6);
      if (c < 1) gs.clip_coef = c, gs.clipped = true;
    }
    const kernels::AdamWScalars sc{1.0 - g.lr * g.weight_decay, g.beta1, g.beta2, g.eps, gs.clip_coef, gs.clipped};
    std::map<BucketKey, std::vector<kernels::AdamWTensor>> launches;
    for (size_t k = 0; k < pd.idx.size(); ++k) {
      const Tensor& p = g.params[pd.idx[k]];
      ParamState& st = state_[gi][pd.idx[k]];
      ++st.step;
      const double bc1 = 1.0 - std::pow(g.beta1, static_cast<double>(st.step));
      const double bc2 = 1.0 - std::pow(g.beta2, static_cast<double>(st.step));
      launches[bucket_of(p)].push_back({p.data_ptr(), pd.grads[k].data_ptr(), st.exp_avg.data_ptr(),
                                        st.exp_avg_sq.data_ptr(), p.numel(), -(g.lr / bc1), std::sqrt(bc2)});
      p.bump_version();
      st.exp_avg.bump_version();
      st.exp_avg_sq.bump_version();
      ++gs.updated;
    }
    for (const auto& [key, ts] : launches)
      get_kernel<kernels::AdamWMultiKernel>(device_of(key), key.dtype)(
          ts.data(), static_cast<int64_t>(ts.size()), sc);
    stats.groups.push_back(gs);
  }
  return stats;
}

void AdamW::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (auto& g : groups_)
    for (auto& p : g.params) {
      if (!p.grad().defined()) continue;
      if (set_to_none)
        p.set_grad(Tensor());
      else
        fill_(p.grad(), 0.0);
    }
}

NamedTensors AdamW::state_dict() const {
  NamedTensors sd;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const ParamGroup& g = groups_[gi];
    const double hyper[] = {g.lr, base_lr_[gi], g.beta1, g.beta2, g.eps, g.weight_decay, g.max_grad_norm};
    for (size_t h = 0; h < std::size(hyper); ++h) sd.emplace_back(g.name + "." + kHyperNames[h], f64_scalar(hyper[h]));
    for (size_t i = 0; i < g.params.size(); ++i) {
      const std::string pre = g.name + "." + g.param_names[i] + ".";
      sd.emplace_back(pre + "exp_avg", host_copy(state_[gi][i].exp_avg));
      sd.emplace_back(pre + "exp_avg_sq", host_copy(state_[gi][i].exp_avg_sq));
      sd.emplace_back(pre + "step", i64_scalar(state_[gi][i].step));
    }
  }
  return sd;
}

void AdamW::load_state_dict(const NamedTensors& sd) {
  const char* who = "AdamW.load_state_dict";
  for (size_t gi = 0; gi < groups_.size(); ++gi)
    VGG_CHECK(groups_[gi].params.size() == state_[gi].size(), who, ": group '", groups_[gi].name, "' now has ",
              groups_[gi].params.size(), " parameters but was built with ", state_[gi].size());
  std::vector<Expect> ex;
  for (const auto& g : groups_) {
    for (const char* h : kHyperNames) ex.push_back({g.name + "." + h, Expect::Real});
    for (size_t i = 0; i < g.params.size(); ++i) {
      const std::string pre = g.name + "." + g.param_names[i] + ".";
      const Tensor& p = g.params[i];
      const std::string owner = "parameter '" + g.name + "." + g.param_names[i] + "'";
      ex.push_back({pre + "exp_avg", Expect::Array, p.dtype(), p.shape(), owner});
      ex.push_back({pre + "exp_avg_sq", Expect::Array, p.dtype(), p.shape(), owner});
      ex.push_back({pre + "step", Expect::Integer});
    }
  }
  std::vector<Tensor> ts = match_state(who, sd, ex);
  // hyper-parameters: check all before changing anything
  std::vector<ParamGroup> hyper = groups_;
  std::vector<double> base(groups_.size());
  size_t k = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    ParamGroup& h = hyper[gi];
    double* dst[] = {&h.lr, &base[gi], &h.beta1, &h.beta2, &h.eps, &h.weight_decay, &h.max_grad_norm};
    for (double* d : dst) *d = ts[k++].item();
    check_hyper(h, who);
    VGG_CHECK(std::isfinite(base[gi]) && base[gi] >= 0, who, ": group '", h.name, "': base_lr ", base[gi],
              " must be finite and >= 0");
    k += 3 * h.params.size();
  }
  k = 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    groups_[gi].lr = hyper[gi].lr;
    groups_[gi].beta1 = hyper[gi].beta1;
    groups_[gi].beta2 = hyper[gi].beta2;
    groups_[gi].eps = hyper[gi].eps;
    groups_[gi].weight_decay = hyper[gi].weight_decay;
    groups_[gi].max_grad_norm = hyper[gi].max_grad_norm;
    base_lr_[gi] = base[gi];
    k += std::size(kHyperNames);
    for (auto& st : state_[gi]) {
      copy_into(st.exp_avg, ts[k++]);
      copy_into(st.exp_avg_sq, ts[k++]);
      st.step = static_cast<int64_t>(ts[k++].item());
    }
  }
}

// ---- schedules -----------------------------------------------------------------------------

double LRSchedule::factor(int64_t step) const {
  VGG_CHECK(step >= 0, "LRSchedule.factor: step ", step, " is negative");
  VGG_CHECK(warmup_steps >= 0, "LRSchedule: warmup_steps ", warmup_steps, " is negative");
  const double w = static_cast<double>(std::max<int64_t>(1, warmup_steps));
  switch (kind) {
    case Constant:
      return 1.0;
    case LinearWarmup:
      return step < warmup_steps ? static_cast<double>(step) / w : 1.0;
    case Cosine: {
      VGG_CHECK(total_steps >= warmup_steps, "LRSchedule: total_steps ", total_steps, " is below warmup_steps ",
                warmup_steps);
      VGG_CHECK(min_factor >= 0 && min_factor <= 1, "LRSchedule: min_factor ", min_factor, " is not in [0, 1]");
      if (step < warmup_steps) return static_cast<double>(step) / w;
      double progress = static_cast<double>(step - warmup_steps) /
                        static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
      progress = std::min(progress, 1.0);
      double c = std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));
      return min_factor + (1.0 - min_factor) * c;
    }
  }
  VGG_FAIL("LRSchedule: unknown kind ", static_cast<int>(kind));
}

void apply_schedule(AdamW& opt, const LRSchedule& schedule, int64_t step) {
  double f = schedule.factor(step);
  for (size_t g = 0; g < opt.num_groups(); ++g) opt.set_lr(g, opt.base_lr(g) * f);
}

// ---- EMA -----------------------------------------------------------------------------------

namespace {

template <typename T>
void ema_update(T* s, const T* p, int64_t n, double decay) {
  const T one_minus = static_cast<T>(1.0 - decay);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) s[i] = s[i] - one_minus * (s[i] - p[i]);
}

}  // namespace

EMA::EMA(std::vector<Tensor> params, double decay, bool warmup, std::vector<std::string> names)
    : params_(std::move(params)), decay_(decay), warmup_(warmup) {
  VGG_CHECK(std::isfinite(decay) && decay >= 0 && decay <= 1, "EMA: decay ", decay, " is not in [0, 1]");
  names_ = resolve_names(std::move(names), params_.size(), "", "EMA");
  NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    VGG_CHECK(p.defined(), "EMA: tensor '", names_[i], "' is undefined");
    VGG_CHECK(is_floating(p.dtype()), "EMA: tensor '", names_[i], "' is ", dtype_name(p.dtype()),
              " (expects a floating dtype)");
    VGG_CHECK(p.device().is_cpu(), "EMA: tensor '", names_[i], "' is on ", p.device().str(),
              " (only CPU tensors are supported)");
    shadow_.push_back(cast_raw(clone_raw(p.detach()), p.dtype() == DType::BF16 ? DType::F32 : p.dtype()));
  }
}

double EMA::current_decay() const {
  if (!warmup_) return decay_;
  double t = static_cast<double>(num_updates_);
  return std::min(decay_, (1.0 + t) / (10.0 + t));
}

void EMA::update() {
  NoGradGuard no_grad;
  const double d = current_decay();
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor& s = shadow_[i];
    VGG_CHECK(s.defined() && s.shape() == params_[i].shape() && s.is_contiguous() && s.device().is_cpu() &&
                  (s.dtype() == DType::F32 || s.dtype() == DType::F64),
              "EMA.update: shadow of '", names_[i], "' was replaced by ", describe(s));
    Tensor p = contiguous_raw(cast_raw(params_[i].detach(), s.dtype()));
    if (s.dtype() == DType::F64)
      ema_update(s.data<double>(), p.data<double>(), s.numel(), d);
    else
      ema_update(s.data<float>(), p.data<float>(), s.numel(), d);
    s.bump_version();
  }
  ++num_updates_;
}

void EMA::copy_to(const std::vector<Tensor>& targets) const {
  VGG_CHECK(targets.size() == shadow_.size(), "EMA.copy_to: ", targets.size(), " targets for ", shadow_.size(),
            " shadows");
  for (size_t i = 0; i < targets.size(); ++i) {
    VGG_CHECK(targets[i].defined() && targets[i].shape() == shadow_[i].shape() && is_floating(targets[i].dtype()),
              "EMA.copy_to: target ", i, " ", (targets[i].defined() ? describe(targets[i]) : "undefined"),
              " does not fit the shadow of '", names_[i], "' (", describe(shadow_[i]), ")");
  }
  NoGradGuard no_grad;
  for (size_t i = 0; i < targets.size(); ++i) copy_into(targets[i], shadow_[i]);
}

NamedTensors EMA::state_dict() const {
  NamedTensors sd;
  for (size_t i = 0; i < shadow_.size(); ++i) sd.emplace_back("shadow." + names_[i], clone_raw(shadow_[i]));
  sd.emplace_back("decay", f64_scalar(decay_));
  sd.emplace_back("num_updates", i64_scalar(num_updates_));
  return sd;
}

void EMA::load_state_dict(const NamedTensors& sd) {
  const char* who = "EMA.load_state_dict";
  std::vector<Expect> ex;
  for (size_t i = 0; i < shadow_.size(); ++i)
    ex.push_back({"shadow." + names_[i], Expect::Array, shadow_[i].dtype(), shadow_[i].shape(),
                  "tensor '" + names_[i] + "'"});
  ex.push_back({"decay", Expect::Real});
  ex.push_back({"num_updates", Expect::Integer});
  std::vector<Tensor> ts = match_state(who, sd, ex);
  double decay = ts[shadow_.size()].item();
  VGG_CHECK(std::isfinite(decay) && decay >= 0 && decay <= 1, who, ": decay ", decay, " is not in [0, 1]");
  for (size_t i = 0; i < shadow_.size(); ++i) copy_into(shadow_[i], ts[i]);
  decay_ = decay;
  num_updates_ = static_cast<int64_t>(ts[shadow_.size() + 1].item());
}

}  // namespace vgg::nn
