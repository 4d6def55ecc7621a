#include "nn/lora.h"

#include <map>
#include <set>
#include <sstream>

#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::nn {

std::vector<std::string> sd3_training_script_targets() {
  return {"attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
          "attn.to_k",       "attn.to_out.0",   "attn.to_q",       "attn.to_v"};
}

LoRALinear::LoRALinear(const Linear& base, int64_t rank, double alpha, Generator* gen)
    : Linear(base.weight, base.bias), rank_(rank), scaling_(alpha / static_cast<double>(rank)) {
  VGG_CHECK(rank > 0 && rank <= std::min(in_, out_), "LoRA: rank ", rank, " must be in [1, ", std::min(in_, out_),
            "] for a Linear(", in_, " -> ", out_, ")");
  VGG_CHECK(alpha > 0, "LoRA: alpha must be positive, got ", alpha);
  weight.requires_grad_(false);
  if (bias.defined()) bias.requires_grad_(false);
  const DType dt = weight.dtype();
  lora_A = empty({rank, in_}, dt, weight.device());
  normal_(lora_A, 0.0, 1.0 / static_cast<double>(rank), gen);
  lora_B = zeros({out_, rank}, opts(dt, weight.device()));
  lora_A.requires_grad_(true);
  lora_B.requires_grad_(true);
  register_parameter("lora_A.weight", lora_A, /*adapter=*/true);
  register_parameter("lora_B.weight", lora_B, /*adapter=*/true);
}

Tensor LoRALinear::forward(const Tensor& x) {
  if (enabled_ && !merged_ && fused_ && x.device().is_cuda())
    return ops::lora_linear(x, compute(weight), compute(bias), compute(lora_A), compute(lora_B), scaling_);
  Tensor y = base_forward(x);
  if (!enabled_ || merged_) return y;
  Tensor low = ops::matmul(x, ops::transpose(compute(lora_A), 0, 1));
  Tensor up = ops::matmul(low, ops::transpose(compute(lora_B), 0, 1));
  return ops::add(y, scaling_ == 1.0 ? up : ops::mul(up, scaling_));
}

void LoRALinear::merge() {
  if (merged_) return;
  NoGradGuard ng;
  ops::add_(weight, ops::matmul(lora_B, lora_A), scaling_);
  merged_ = true;
}

void LoRALinear::unmerge() {
  if (!merged_) return;
  NoGradGuard ng;
  ops::add_(weight, ops::matmul(lora_B, lora_A), -scaling_);
  merged_ = false;
}

namespace {
bool matches(const std::string& path, const std::string& target) {
  if (path == target) return true;
  return path.size() > target.size() && path.compare(path.size() - target.size(), target.size(), target) == 0 &&
         path[path.size() - target.size() - 1] == '.';
}
}  // namespace

std::vector<std::string> attach_lora(Module& model, const LoRAConfig& cfg) {
  VGG_CHECK(!cfg.targets.empty(), "attach_lora: no target modules given");
  std::vector<std::string> paths;
  for (auto& [path, m] : model.named_modules()) {
    bool hit = false;
    for (const auto& t : cfg.targets) hit = hit || matches(path, t);
    if (!hit) continue;
    VGG_CHECK(dynamic_cast<LoRALinear*>(m) == nullptr, "attach_lora: '", path, "' already carries an adapter");
    VGG_CHECK(dynamic_cast<Linear*>(m) != nullptr, "attach_lora: target '", path, "' is a ", m->type_name(),
              ", not a Linear");
    paths.push_back(path);
  }
  VGG_CHECK(!paths.empty(), "attach_lora: no module of the ", model.type_name(), " matches the targets");
  for (size_t i = 0; i < paths.size(); ++i) {
    auto* lin = dynamic_cast<Linear*>(model.find_module(paths[i]));
    Generator g(cfg.seed, i);
    model.replace_module(paths[i], std::make_shared<LoRALinear>(*lin, cfg.rank, cfg.alpha, &g));
  }
  return paths;
}

std::vector<std::pair<std::string, LoRALinear*>> lora_modules(Module& model) {
  std::vector<std::pair<std::string, LoRALinear*>> out;
  for (auto& [path, m] : model.named_modules())
    if (auto* l = dynamic_cast<LoRALinear*>(m)) out.emplace_back(path, l);
  return out;
}

void set_lora_enabled(Module& model, bool on) {
  for (auto& [p, l] : lora_modules(model)) l->set_enabled(on);
}
void merge_lora(Module& model) {
  for (auto& [p, l] : lora_modules(model)) l->merge();
}
void unmerge_lora(Module& model) {
  for (auto& [p, l] : lora_modules(model)) l->unmerge();
}

NamedTensors lora_state_dict(Module& model, const std::string& prefix) {
  NamedTensors out;
  for (auto& [p, l] : lora_modules(model)) {
    out.emplace_back(prefix + p + ".lora_A.weight", l->lora_A);
    out.emplace_back(prefix + p + ".lora_B.weight", l->lora_B);
  }
  return out;
}

std::map<std::string, std::string> lora_metadata(Module& model) {
  auto mods = lora_modules(model);
  VGG_CHECK(!mods.empty(), "lora_metadata: the model carries no adapters");
  std::ostringstream alpha;
  alpha.precision(17);
  alpha << mods[0].second->scaling() * static_cast<double>(mods[0].second->rank());
  return {{"format", "pt"}, {"lora_rank", std::to_string(mods[0].second->rank())}, {"lora_alpha", alpha.str()}};
}

void load_lora_state_dict(Module& model, const NamedTensors& sd, const std::string& prefix) {
  std::map<std::string, Tensor*> slots;
  for (auto& [p, l] : lora_modules(model)) {
    slots[prefix + p + ".lora_A.weight"] = &l->lora_A;
    slots[prefix + p + ".lora_B.weight"] = &l->lora_B;
  }
  VGG_CHECK(!slots.empty(), "load_lora_state_dict: the model carries no adapters (attach them first)");
  std::set<std::string> seen;
  for (const auto& [name, t] : sd) {
    auto it = slots.find(name);
    VGG_CHECK(it != slots.end(), "load_lora_state_dict: unexpected key '", name, "'");
    VGG_CHECK(t.shape() == it->second->shape(), "load_lora_state_dict: '", name, "' has shape ", shape_str(t.shape()),
              " but the adapter is ", shape_str(it->second->shape()));
    VGG_CHECK(seen.insert(name).second, "load_lora_state_dict: key '", name, "' given twice");
  }
  for (const auto& [name, slot] : slots)
    VGG_CHECK(seen.count(name), "load_lora_state_dict: missing key '", name, "'");
  NoGradGuard ng;
  for (const auto& [name, t] : sd) {
    Tensor& dst = *slots[name];
    copy_into(dst, to_device_raw(cast_raw(t, dst.dtype()), dst.device()));
    dst.bump_version();
  }
}

}  // namespace vgg::nn
