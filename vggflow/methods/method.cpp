#include "vggflow/methods/method.h"

#include <cmath>
#include <set>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "tensor/factory.h"

namespace vgg::flow::methods {

using nlohmann::json;

namespace {

double mean_of(const Reward& r, const Tensor& x, const Tensor& ids) {
  NoGradGuard ng;
  return ops::mean(r.score(x, ids)).item();
}

// The shared part of the methods over the policy: the policy, the reward, the options.
class PolicyMethod : public Method {
 public:
  PolicyMethod(const Policy& p, std::shared_ptr<const Reward> r, const MethodOptions& o)
      : p_(p), reward_(std::move(r)), o_(o) {}
  std::string name() const override { return o_.name; }

 protected:
  // the reward (and gold) of a rollout's last state, as logged
  void log_rewards(const Tensor& x_last, const Tensor& ids, json& stats) const {
    const Tensor x1 = o_.clamp_logged_samples ? ops::clamp(x_last, -1.0, 1.0) : x_last;
    stats["reward"] = mean_of(*reward_, x1, ids);
    if (o_.gold) stats["gold"] = mean_of(*o_.gold, x1, ids);
    if (o_.clamp_logged_samples) stats["x1_out_of_range"] = out_of_range_fraction(x_last);
  }
  // AM's and PMP's reward-gradient and adjoint statistics
  static void log_adjoint(const AdjointStats& st, json& part) {
    part["reward_grad_norm_mean"] = st.grad_norm_mean, part["reward_grad_clip"] = st.clip_threshold;
    part["adjoint_norm"] = st.adjoint_norm;
  }
  const Policy& p_;
  std::shared_ptr<const Reward> reward_;
  MethodOptions o_;
};

class VGGFlowMethod final : public PolicyMethod {
 public:
  VGGFlowMethod(const Policy& p, std::shared_ptr<const Reward> r, const MethodOptions& o)
      : PolicyMethod(p, std::move(r), o),
        value_(o.value_net, p.model, o.vggflow.beta, o.value_prompt_free, o.value_seed, o.device) {
    if (o.value_zero) value_.zero_output();
    value_.net().checkpointing = o.checkpointing;
    value_.net().set_compute_dtype(o.compute_dtype);
  }
  std::vector<nn::ParamGroup> extra_groups() const override {
    nn::ParamGroup g;
    g.name = "phi";
    g.params = value_.parameters();
    g.param_names = value_.parameter_names();
    return {g};
  }
  Tensor loss(int64_t batch, Generator& gen, json& part) override {
    Rollout r = sample_rollout(p_, batch, o_.steps, o_.shift, gen);
    VGGFlowStats st;
    Tensor loss = vggflow_loss(p_, value_, *reward_, r, o_.vggflow, gen, &st);
    log_rewards(r.latents.back(), r.ids, part);
    part["loss_matching"] = st.matching, part["loss_consistency"] = st.consistency, part["loss_boundary"] = st.boundary;
    part["reward_grad_norm_mean"] = st.grad_norm_mean, part["reward_grad_norm_max"] = st.grad_norm_max;
    part["reward_grad_norm_p80"] = st.grad_norm_p80, part["reward_grad_clip"] = st.clip_threshold;
    part["reward_x1hat"] = st.reward_x1hat;
    for (size_t j = 0; j < st.bin_sigma.size(); ++j) {
      const std::string b = "bin" + std::to_string(j) + "_";
      part[b + "sigma"] = st.bin_sigma[j], part[b + "nu_norm"] = st.bin_nu_norm[j];
      part[b + "guide_norm"] = st.bin_guide_norm[j], part[b + "consistency"] = st.bin_consistency[j];
    }
    return loss;
  }
  nn::NamedTensors state() const override { return value_.state(); }
  void load_state(const nn::NamedTensors& sd) override { value_.load_state(sd); }
  std::string state_file() const override { return "value.safetensors"; }

 private:
  ValueNet value_;
};

class AdjointMatchingMethod final : public PolicyMethod {
 public:
  using PolicyMethod::PolicyMethod;
  Tensor loss(int64_t batch, Generator& gen, json& part) override {
    AdjointStats st;
    Tensor loss = am_loss(p_, *reward_, batch, o_.steps, o_.shift, o_.adjoint, gen, &st);
    part["reward"] = st.reward;  // of the memoryless-SDE samples the adjoint starts from
    if (o_.clamp_logged_samples) part["x1_out_of_range"] = st.out_of_range;
    log_adjoint(st, part);
    return loss;
  }
};

class PmpMethod final : public PolicyMethod {
 public:
  using PolicyMethod::PolicyMethod;
  Tensor loss(int64_t batch, Generator& gen, json& part) override {
    AdjointStats st;
    Rollout r = sample_rollout(p_, batch, o_.steps, o_.shift, gen);
    Tensor loss = pmp_loss(p_, *reward_, r, o_.adjoint, gen, &st);
    log_rewards(r.latents.back(), r.ids, part);
    log_adjoint(st, part);
    return loss;
  }
};

// ReFL and DRaFT (K or LV): the reward at the point their loss is taken.
class DirectMethod final : public PolicyMethod {
 public:
  using PolicyMethod::PolicyMethod;
  Tensor loss(int64_t batch, Generator& gen, json& part) override {
    BaselineStats st;
    Tensor loss;
    if (o_.name == "refl") {
      loss = refl_loss(p_, *reward_, batch, o_.steps, o_.shift, o_.relu, gen, &st);
    } else if (o_.draft_lv > 0) {
      loss = draft_lv_loss(p_, *reward_, batch, o_.steps, o_.shift, o_.draft_lv, o_.relu, gen, &st);
    } else {
      const int64_t k = o_.draft_k_max > 0 ? draw_draft_k(o_.draft_k_max, gen) : o_.draft_k;
      loss = draft_loss(p_, *reward_, batch, o_.steps, o_.shift, k, o_.relu, gen, &st);
    }
    part["reward"] = st.reward, part["graph_step"] = st.step;
    if (o_.clamp_logged_samples) part["x1_out_of_range"] = st.out_of_range;
    return loss;
  }
};

}  // namespace

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> n = {"vggflow", "refl", "draft", "am", "pmp"};
  return n;
}

std::unique_ptr<Method> make_method(const Policy& policy, std::shared_ptr<const Reward> reward, const MethodOptions& o) {
  VGG_CHECK(reward, "make_method: no reward");
  if (o.name == "vggflow") return std::make_unique<VGGFlowMethod>(policy, std::move(reward), o);
  if (o.name == "am") return std::make_unique<AdjointMatchingMethod>(policy, std::move(reward), o);
  if (o.name == "pmp") return std::make_unique<PmpMethod>(policy, std::move(reward), o);
  if (o.name == "refl" || o.name == "draft") return std::make_unique<DirectMethod>(policy, std::move(reward), o);
  VGG_CHECK(false, "unknown method '", o.name, "' (vggflow, refl, draft, am, pmp)");
  return nullptr;
}

std::string nonfinite_gradient(const std::vector<nn::ParamGroup>& groups) {
  NoGradGuard ng;
  for (const auto& g : groups)
    for (size_t i = 0; i < g.params.size(); ++i) {
      Tensor gr = g.params[i].grad();
      if (gr.defined() && !std::isfinite(ops::sum(ops::abs(ops::to(gr, DType::F64))).item()))
        return "non-finite gradient in " + g.name + " parameter " +
               (i < g.param_names.size() ? g.param_names[i] : std::to_string(i));
    }
  return "";
}

namespace {

// The statistics of micro-batch parts combined as the serial update combines them: floats are the
// parts' mean (summed in micro-batch order), anything else is the first part's.
void combine_part(json& line, const json& part, int64_t mb, int64_t micro) {
  for (auto& [k, v] : part.items()) {
    if (micro == 1 || !v.is_number_float()) {
      if (mb == 0) line[k] = v;
    } else {
      line[k] = (mb == 0 ? 0.0 : line[k].get<double>()) + v.get<double>() / static_cast<double>(micro);
    }
  }
}

std::vector<Tensor> params_of(const std::vector<nn::ParamGroup>& groups) {
  std::vector<Tensor> ps;
  for (const auto& g : groups) ps.insert(ps.end(), g.params.begin(), g.params.end());
  return ps;
}

// The parameters' gradients as one flat buffer [Σ numel] in dtype on `device` (zeros where
// undefined), with which ones are defined (1 / 0 per parameter) appended.
Tensor pack_grads(const std::vector<Tensor>& ps, DType dt, Device device) {
  NoGradGuard ng;
  std::vector<Tensor> parts;
  std::vector<double> mask;
  for (const Tensor& p : ps) {
    const Tensor g = p.grad();
    parts.push_back(g.defined() ? ops::to(ops::reshape(ops::to(g.detach(), dt), {-1}), device)
                                : zeros({p.numel()}, opts(dt, device)));
    mask.push_back(g.defined() ? 1.0 : 0.0);
  }
  parts.push_back(ops::to(from_vector(mask, {static_cast<int64_t>(mask.size())}, opts(dt)), device));
  return ops::contiguous(ops::cat(parts, 0));
}

// Sets each parameter's gradient from its slice of flat (where mask[i] != 0; undefined elsewhere).
void unpack_grads(const std::vector<Tensor>& ps, const Tensor& flat, const std::vector<double>& mask) {
  NoGradGuard ng;
  int64_t off = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    Tensor p = ps[i];
    const int64_t n = p.numel();
    if (mask[i] != 0)
      p.set_grad(ops::contiguous(ops::to(ops::to(ops::reshape(ops::narrow(flat, 0, off, n), p.shape()), p.dtype()), p.device())));
    else
      p.set_grad(Tensor());
    off += n;
  }
}

// Drops every parameter's gradient (all of the groups': with ZeRO-1 the optimizer holds only this
// rank's share, and its zero_grad would leave the others' gradients accumulating).
void clear_grads(const std::vector<nn::ParamGroup>& groups) {
  for (const auto& g : groups)
    for (Tensor p : g.params) p.set_grad(Tensor());
}

// f32 when every parameter is f32 (their values travel exactly), else f64.
DType buffer_dtype(const std::vector<Tensor>& ps) {
  for (const Tensor& p : ps)
    if (p.dtype() != DType::F32) return DType::F64;
  return DType::F32;
}

const char* const kHyper[] = {"lr", "base_lr", "beta1", "beta2", "eps", "weight_decay", "max_grad_norm"};

std::string param_name(const nn::ParamGroup& g, size_t i) {
  return i < g.param_names.size() ? g.param_names[i] : std::to_string(i);
}

}  // namespace

Zero1Plan plan_zero1(const std::vector<nn::ParamGroup>& groups, int rank, int size) {
  VGG_CHECK(size >= 1 && rank >= 0 && rank < size, "ZeRO-1: rank ", rank, " of ", size);
  Zero1Plan z;
  z.rank = rank, z.size = size;
  z.elements.assign(static_cast<size_t>(size), 0);
  for (const auto& g : groups) {
    VGG_CHECK(static_cast<int64_t>(g.params.size()) >= size, "ZeRO-1: group '", g.name, "' has ", g.params.size(),
              " parameters, fewer than the ", size, " processes (every rank owns at least one of every group)");
    std::vector<bool> has(static_cast<size_t>(size), false);
    nn::ParamGroup mine = g;
    mine.params.clear(), mine.param_names.clear();
    std::vector<int64_t> index;
    for (size_t i = 0; i < g.params.size(); ++i) {
      const bool first_round = i < static_cast<size_t>(size);  // the first N go to N different ranks
      int best = -1;
      for (int r = 0; r < size; ++r) {
        if (first_round && has[static_cast<size_t>(r)]) continue;
        if (best < 0 || z.elements[static_cast<size_t>(r)] < z.elements[static_cast<size_t>(best)]) best = r;
      }
      has[static_cast<size_t>(best)] = true;
      z.owner.push_back(best);
      z.offset.push_back(z.elements[static_cast<size_t>(best)]);
      z.elements[static_cast<size_t>(best)] += g.params[i].numel();
      if (best == rank) {
        mine.params.push_back(g.params[i]);
        mine.param_names.push_back(param_name(g, i));
        index.push_back(static_cast<int64_t>(i));
      }
    }
    z.owned.push_back(mine);
    z.group_index.push_back(index);
  }
  for (int64_t e : z.elements) z.segment = std::max(z.segment, e);
  return z;
}

void Updater::set_zero1(Zero1Plan plan) {
  VGG_CHECK(comm_ && comm_->size() == plan.size && comm_->rank() == plan.rank,
            "ZeRO-1: the plan must be for the updater's communicator (set_communicator first)");
  VGG_CHECK(opt_.num_groups() == plan.owned.size(), "ZeRO-1: the optimizer must be built from the plan's groups");
  for (size_t g = 0; g < plan.owned.size(); ++g)
    VGG_CHECK(opt_.group(g).params.size() == plan.owned[g].params.size(), "ZeRO-1: the optimizer's group '",
              opt_.group(g).name, "' is not this rank's share");
  zero_ = std::move(plan);
  // the clip factor from every rank's sums of squares, summed in the full group's order
  opt_.set_sum_squares_hook([this](size_t g, const std::vector<size_t>& idx, const std::vector<double>& sq) {
    std::vector<double> all(groups_[g].params.size(), 0.0);
    for (size_t k = 0; k < idx.size(); ++k) all[static_cast<size_t>(zero_->group_index[g][idx[k]])] = sq[k];
    Tensor t = ops::contiguous(ops::to(from_vector(all, {static_cast<int64_t>(all.size())}, opts(DType::F64)), comm_->device()));
    comm_->all_reduce_sum(t);  // one owner per entry: exact
    double total = 0;
    for (double v : ops::to(t, Device::cpu()).to_vector()) total += v;
    return total;
  });
}

void Updater::sync_parameters() {
  NoGradGuard ng;
  const Zero1Plan& z = *zero_;
  const std::vector<Tensor> ps = params_of(groups_);
  const DType dt = buffer_dtype(ps);
  const Device dev = comm_->device();
  std::vector<Tensor> pieces;
  for (size_t i = 0; i < ps.size(); ++i)
    if (z.owner[i] == z.rank) pieces.push_back(ops::to(ops::reshape(ops::to(ps[i].detach(), dt), {-1}), dev));
  if (z.segment > z.elements[static_cast<size_t>(z.rank)])
    pieces.push_back(zeros({z.segment - z.elements[static_cast<size_t>(z.rank)]}, opts(dt, dev)));
  Tensor mine = ops::contiguous(ops::cat(pieces, 0)), all = zeros({z.size * z.segment}, opts(dt, dev));
  comm_->all_gather(mine, all);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (z.owner[i] == z.rank) continue;
    const Tensor& p = ps[i];
    ops::copy_(p, ops::to(ops::to(ops::reshape(ops::narrow(all, 0, z.owner[i] * z.segment + z.offset[i], p.numel()), p.shape()),
                                  p.dtype()),
                          p.device()));
  }
}

nn::NamedTensors Updater::optimizer_state() {
  if (!zero_) return opt_.state_dict();
  const Zero1Plan& z = *zero_;
  const nn::NamedTensors local = opt_.state_dict();
  auto find = [&](const std::string& k) -> const Tensor& {
    for (const auto& [n, t] : local)
      if (n == k) return t;
    VGG_FAIL("ZeRO-1: no '", k, "' in this rank's optimizer state");
  };
  nn::NamedTensors full;
  NoGradGuard ng;
  size_t gp = 0;  // the parameter's index over all groups
  for (size_t g = 0; g < groups_.size(); ++g) {
    const nn::ParamGroup& grp = groups_[g];
    for (const char* h : kHyper) full.emplace_back(grp.name + "." + h, find(grp.name + "." + h));
    for (size_t i = 0; i < grp.params.size(); ++i, ++gp) {
      const Tensor& p = grp.params[i];
      const std::string pre = grp.name + "." + param_name(grp, i) + ".";
      const int64_t n = p.numel();
      Tensor b = zeros({2 * n + 1}, opts(DType::F64));
      if (z.owner[gp] == z.rank)
        b = ops::cat({ops::reshape(ops::to(find(pre + "exp_avg"), DType::F64), {-1}),
                      ops::reshape(ops::to(find(pre + "exp_avg_sq"), DType::F64), {-1}),
                      ops::reshape(ops::to(find(pre + "step"), DType::F64), {1})},
                     0);
      Tensor d = ops::contiguous(ops::to(b, comm_->device()));
      comm_->broadcast(d, z.owner[gp]);
      b = ops::to(d, Device::cpu());
      full.emplace_back(pre + "exp_avg", ops::contiguous(ops::to(ops::reshape(ops::narrow(b, 0, 0, n), p.shape()), p.dtype())));
      full.emplace_back(pre + "exp_avg_sq", ops::contiguous(ops::to(ops::reshape(ops::narrow(b, 0, n, n), p.shape()), p.dtype())));
      full.emplace_back(pre + "step", from_vector(std::vector<int64_t>{static_cast<int64_t>(b.to_vector()[static_cast<size_t>(2 * n)])}, Shape{}));
    }
  }
  return full;
}

void Updater::load_optimizer_state(const nn::NamedTensors& full) {
  if (!zero_) return opt_.load_state_dict(full);
  std::set<std::string> keep;
  for (const auto& g : zero_->owned) {
    for (const char* h : kHyper) keep.insert(g.name + "." + h);
    for (const std::string& pn : g.param_names)
      for (const char* k : {"exp_avg", "exp_avg_sq", "step"}) keep.insert(g.name + "." + pn + "." + k);
  }
  nn::NamedTensors mine;
  for (const auto& [k, t] : full)
    if (keep.count(k)) mine.emplace_back(k, t);
  opt_.load_state_dict(mine);  // strict: names what is missing
}

json Updater::update(int64_t micro, const MicroLoss& micro_loss) {
  VGG_CHECK(micro >= 1, "Updater: micro-batches must be >= 1, got ", micro);
  std::string bad;
  json line = comm_ ? update_parallel(micro, micro_loss, &bad) : update_serial(micro, micro_loss, &bad);
  if (bad.empty()) bad = nonfinite_gradient(groups_);
  if (comm_ && !comm_->all_true(bad.empty()) && bad.empty()) bad = "a non-finite gradient on another rank";
  skipped_ = !bad.empty();
  if (!skipped_) {
    last_ = opt_.step();
    if (zero_) sync_parameters();
    for (auto& g : last_.groups) line["grad_norm_" + g.name] = g.grad_norm;
    in_a_row_ = 0;
    return line;
  }
  clear_grads(groups_);
  line["skipped"] = bad;
  if (++in_a_row_ >= max_skips_)
    throw std::runtime_error(std::to_string(max_skips_) + " updates in a row skipped for non-finite values (last: " + bad + ")");
  return line;
}

json Updater::update_serial(int64_t micro, const MicroLoss& micro_loss, std::string* bad) {
  json line = json::object();
  clear_grads(groups_);
  for (int64_t mb = 0; mb < micro && bad->empty(); ++mb) {
    json part = json::object();
    Tensor loss = micro_loss(mb, part);
    const double lv = loss.item();
    part["loss"] = lv;
    if (!std::isfinite(lv))
      *bad = "the loss is not finite";
    else
      backward(micro == 1 ? loss : ops::mul(loss, 1.0 / static_cast<double>(micro)));
    combine_part(line, part, mb, micro);
  }
  return line;
}

json Updater::update_parallel(int64_t micro, const MicroLoss& micro_loss, std::string* bad) {
  const int64_t n = comm_->size(), rank = comm_->rank();
  VGG_CHECK(micro % n == 0, "the ", micro, " micro-batches do not split over ", n, " processes (--micro-batches must be a multiple of mpirun's -np)");
  const int64_t per = micro / n, first = rank * per;
  const std::vector<Tensor> ps = params_of(groups_);
  int64_t total = 0;
  for (const Tensor& p : ps) total += p.numel();
  const auto P = static_cast<int64_t>(ps.size());
  json mine = json::array();
  std::vector<Tensor> shards;  // deterministic: one packed gradient (+ mask) per local micro-batch
  clear_grads(groups_);
  for (int64_t mb = first; mb < first + per; ++mb) {
    if (deterministic_) clear_grads(groups_);
    json part = json::object();
    Tensor loss = micro_loss(mb, part);
    const double lv = loss.item();
    part["loss"] = lv;
    if (std::isfinite(lv)) backward(micro == 1 ? loss : ops::mul(loss, 1.0 / static_cast<double>(micro)));
    mine.push_back(part);
    if (deterministic_) shards.push_back(pack_grads(ps, DType::F64, Device::cpu()));
  }
  // every micro-batch's statistics, in micro-batch order
  // (a non-finite loss travels as JSON null): combined up to the first bad one, as the serial loop
  json line = json::object();
  int64_t mb = 0;
  for (const std::string& s : comm_->all_gather_strings(mine.dump()))
    for (const json& part : json::parse(s)) {
      if (bad->empty()) {
        combine_part(line, part, mb, micro);
        if (!part["loss"].is_number() || !std::isfinite(part["loss"].get<double>())) *bad = "the loss is not finite";
      }
      ++mb;
    }
  NoGradGuard ng;
  if (deterministic_) {
    const int64_t width = total + P;
    Tensor local = ops::cat(shards, 0), all = zeros({n * per * width}, opts(DType::F64));
    comm_->all_gather(local, all);
    Tensor acc = ops::narrow(all, 0, 0, total);
    std::vector<double> mask(static_cast<size_t>(P), 0.0);
    for (int64_t s = 0; s < micro; ++s) {
      if (s > 0) acc = ops::add(acc, ops::narrow(all, 0, s * width, total));
      const std::vector<double> m = ops::narrow(all, 0, s * width + total, P).to_vector();
      for (int64_t i = 0; i < P; ++i) mask[static_cast<size_t>(i)] = std::max(mask[static_cast<size_t>(i)], m[static_cast<size_t>(i)]);
    }
    unpack_grads(ps, acc, mask);
    return line;
  }
  if (zero_) {  // fast, sharded: one reduce-scatter into the owners' segments
    const Zero1Plan& z = *zero_;
    const DType dt = buffer_dtype(ps);
    const Device dev = comm_->device();
    std::vector<Tensor> pieces;
    std::vector<double> defined(static_cast<size_t>(P), 0.0);
    for (int r = 0; r < n; ++r) {
      for (size_t i = 0; i < ps.size(); ++i) {
        if (z.owner[i] != r) continue;
        const Tensor g = ps[i].grad();
        pieces.push_back(g.defined() ? ops::to(ops::reshape(ops::to(g.detach(), dt), {-1}), dev)
                                     : zeros({ps[i].numel()}, opts(dt, dev)));
      }
      if (z.segment > z.elements[static_cast<size_t>(r)])
        pieces.push_back(zeros({z.segment - z.elements[static_cast<size_t>(r)]}, opts(dt, dev)));
    }
    for (size_t i = 0; i < ps.size(); ++i) defined[i] = ps[i].grad().defined() ? 1.0 : 0.0;
    Tensor buf = ops::contiguous(ops::cat(pieces, 0)), mine = zeros({z.segment}, opts(dt, dev));
    comm_->reduce_scatter_sum(buf, mine);
    Tensor mask = ops::contiguous(ops::to(from_vector(defined, {P}, opts(DType::F64)), dev));
    comm_->all_reduce_sum(mask);
    const std::vector<double> any = ops::to(mask, Device::cpu()).to_vector();
    for (size_t i = 0; i < ps.size(); ++i) {
      Tensor p = ps[i];
      if (z.owner[i] == rank && any[i] != 0)
        p.set_grad(ops::contiguous(ops::to(
            ops::to(ops::reshape(ops::narrow(mine, 0, z.offset[i], p.numel()), p.shape()), p.dtype()), p.device())));
      else
        p.set_grad(Tensor());
    }
    return line;
  }
  // fast: one all-reduce per group over its flat gradient buffer, in the communicator's place
  for (const auto& g : groups_) {
    if (g.params.empty()) continue;
    const DType dt = g.params[0].dtype();
    Tensor buf = pack_grads(g.params, dt, comm_->device());
    comm_->all_reduce_sum(buf);
    int64_t gt = 0;
    for (const Tensor& p : g.params) gt += p.numel();
    const std::vector<double> mask =
        ops::to(ops::narrow(buf, 0, gt, static_cast<int64_t>(g.params.size())), Device::cpu()).to_vector();
    unpack_grads(g.params, buf, mask);
  }
  return line;
}

}  // namespace vgg::flow::methods
