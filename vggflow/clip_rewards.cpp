#include "vggflow/clip_rewards.h"

#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "autograd/ops.h"
#include "tensor/error.h"
#include "tensor/safetensors.h"

namespace vgg::flow {

ClipRewardKind parse_clip_reward(const std::string& n) {
  if (n == "aesthetic") return ClipRewardKind::Aesthetic;
  if (n == "hps") return ClipRewardKind::HPS;
  if (n == "pickscore") return ClipRewardKind::PickScore;
  VGG_FAIL("unknown CLIP reward '", n, "' (aesthetic, hps, pickscore)");
}

ClipReward::ClipReward(const std::string& path, ClipRewardKind kind, DType dtype, Device device) : kind_(kind) {
  SafetensorsFile f = load_safetensors(path);
  auto cfg_it = f.metadata.find("config");
  VGG_CHECK(cfg_it != f.metadata.end(), path, ": no vision 'config' in the metadata (convert with tools/convert_reward.py)");
  nn::ClipVisionConfig cfg;
  try {
    cfg = nn::ClipVisionConfig::from_json(cfg_it->second);
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
  nn::LayerOptions o;
  o.dtype = dtype;
  tower_ = std::make_shared<nn::ClipVisionWithProjection>(cfg, o);
  nn::NamedTensors tower, open_clip, head;
  Tensor logit_scale;
  for (const auto& [name, t] : f.tensors) {
    if (name.rfind("vision_model.", 0) == 0 || name.rfind("visual_projection.", 0) == 0) tower.emplace_back(name, t);
    else if (name.rfind("visual.", 0) == 0) open_clip.emplace_back(name, t);
    else if (kind == ClipRewardKind::Aesthetic && name.rfind("aesthetic.", 0) == 0) head.emplace_back(name.substr(10), t);
    else if (kind == ClipRewardKind::PickScore && name == "logit_scale") logit_scale = t;
    else VGG_FAIL(path, ": unexpected tensor '", name, "' for the ", this->name(), " reward");
  }
  VGG_CHECK(tower.empty() != open_clip.empty(), path, ": the tower must be in one layout (transformers or open_clip), found ",
            tower.size(), " and ", open_clip.size(), " keys");
  try {
    tower_->load_state_dict(tower.empty() ? nn::open_clip_visual_to_transformers(open_clip) : tower);
    if (kind == ClipRewardKind::Aesthetic) {
      // the hidden widths from the file ("layers.<i>.weight" [out, in] in index order): the published
      // head is 1024, 128, 64, 16
      std::map<int, int64_t> widths;
      for (const auto& [n, t] : head)
        if (n.size() > 14 && n.rfind("layers.", 0) == 0 && n.substr(n.size() - 7) == ".weight" && t.dim() == 2)
          widths[std::atoi(n.c_str() + 7)] = t.size(0);
      std::vector<int64_t> hidden;
      for (auto [i, w] : widths) hidden.push_back(w);
      VGG_CHECK(hidden.size() >= 2, "no aesthetic head ('aesthetic.layers.<i>.weight')");
      hidden.pop_back();  // the last layer's single output
      head_ = std::make_shared<nn::AestheticMLP>(cfg.projection_dim, hidden, o);
      head_->load_state_dict(head);
    }
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
  if (kind == ClipRewardKind::PickScore) {
    VGG_CHECK(logit_scale.defined() && logit_scale.numel() == 1, path, ": PickScore needs a scalar 'logit_scale'");
    logit_scale_exp_ = std::exp(ops::to(logit_scale, DType::F64).item());
    VGG_CHECK(std::isfinite(logit_scale_exp_), path, ": logit_scale is not finite");
  }
  tower_->requires_grad_(false);
  tower_->to(device);
  if (head_) head_->requires_grad_(false), head_->to(device);
}

std::string ClipReward::name() const {
  return kind_ == ClipRewardKind::Aesthetic ? "aesthetic" : kind_ == ClipRewardKind::HPS ? "hps" : "pickscore";
}

Tensor ClipReward::normalised_text(const Tensor& t) const {
  const int64_t p = tower_->config().projection_dim;
  Tensor x = t.dim() == 1 ? ops::reshape(t, {1, p}) : t;
  x = ops::to(ops::to(x, tower_->param_dtype()), tower_->param_device());
  return ops::div(x, ops::norm(x, 2.0, {1}, true));
}

void ClipReward::set_text_features(const Tensor& t) {
  const int64_t p = tower_->config().projection_dim;
  VGG_CHECK(t.defined() && (t.dim() == 1 || t.dim() == 2) && t.size(-1) == p, name(), ": text features must be [", p,
            "] or [B, ", p, "], got ", t.defined() ? describe(t) : "undefined");
  text_ = normalised_text(t);
}

void ClipReward::set_prompt_features(const Tensor& t) {
  const int64_t p = tower_->config().projection_dim;
  VGG_CHECK(t.defined() && t.dim() == 2 && t.size(1) == p && t.size(0) >= 1, name(),
            ": prompt text features must be [N, ", p, "], got ", t.defined() ? describe(t) : "undefined");
  table_ = normalised_text(t);
}

Tensor ClipReward::embed(const Tensor& x) const {
  VGG_CHECK(x.dim() == 4 && x.size(1) == 3, name(), " reward: expects images [B, 3, H, W] in [-1, 1], got ", describe(x));
  Tensor img = ops::to(ops::to(x, tower_->param_dtype()), tower_->param_device());
  return tower_->forward(nn::clip_preprocess(ops::mul(ops::add(img, 1.0), 0.5), tower_->config().image_size));
}

Tensor ClipReward::against(const Tensor& x, const Tensor& text) const {
  Tensor e = embed(x);
  VGG_CHECK(text.size(0) == 1 || text.size(0) == x.size(0), name(), " reward: ", text.size(0), " text features for ",
            x.size(0), " images");
  Tensor en = ops::div(e, ops::norm(e, 2.0, {1}, true));
  Tensor cos = ops::sum(ops::mul(en, text), {1});
  return logit_scale_exp_ == 1.0 ? cos : ops::mul(cos, logit_scale_exp_);
}

Tensor ClipReward::operator()(const Tensor& x) const {
  if (kind_ == ClipRewardKind::Aesthetic) return head_->forward(embed(x));
  VGG_CHECK(text_.defined(), name(), " reward: no text features (set_text_features)");
  return against(x, text_);
}

Tensor ClipReward::score(const Tensor& x, const Tensor& ids) const {
  if (kind_ == ClipRewardKind::Aesthetic) return (*this)(x);
  VGG_CHECK(table_.defined(), name(), " reward: no prompt text features (set_prompt_features)");
  VGG_CHECK(ids.defined() && ids.dim() == 1 && ids.size(0) == x.size(0), name(), " reward: needs one prompt id per image (",
            x.size(0), "), got ", ids.defined() ? describe(ids) : "none");
  Tensor host = ops::to(ops::to(ids, DType::I64), Device::cpu());
  for (double id : host.to_vector())
    VGG_CHECK(id >= 0 && id < static_cast<double>(table_.size(0)), name(), " reward: prompt id ", id,
              " is out of range for ", table_.size(0), " prompts' text features");
  return against(x, ops::index_select(table_, 0, ops::to(host, table_.device())));
}

Tensor load_text_features(const std::string& path, int64_t index) {
  SafetensorsFile f = load_safetensors(path);
  const Tensor* t = nullptr;
  for (const auto& [name, v] : f.tensors)
    if (name == "text_features") t = &v;
  VGG_CHECK(t != nullptr, path, ": no 'text_features' tensor");
  VGG_CHECK(t->dim() == 2, path, ": text_features must be [N, P], got ", describe(*t));
  VGG_CHECK(index >= 0 && index < t->size(0), path, ": prompt index ", index, " is out of range for ", t->size(0), " prompts");
  return ops::reshape(ops::narrow(*t, 0, index, 1), {t->size(1)});
}

}  // namespace vgg::flow

namespace vgg::flow {

TextFeatures load_text_features_table(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  const Tensor* t = f.find("text_features");
  VGG_CHECK(t != nullptr, path, ": no 'text_features' tensor");
  VGG_CHECK(t->dim() == 2 && t->size(0) >= 1, path, ": text_features must be [N, P], got ", describe(*t));
  TextFeatures out;
  out.table = *t;
  auto it = f.metadata.find("prompts");
  if (it != f.metadata.end()) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(it->second);
    } catch (const std::exception&) {
      VGG_FAIL(path, ": metadata 'prompts' is not JSON");
    }
    VGG_CHECK(j.is_array(), path, ": metadata 'prompts' must be a JSON list of strings");
    for (const auto& e : j) {
      VGG_CHECK(e.is_string(), path, ": metadata 'prompts' must be a JSON list of strings");
      out.prompts.push_back(e.get<std::string>());
    }
    VGG_CHECK(static_cast<int64_t>(out.prompts.size()) == t->size(0), path, ": ", out.prompts.size(),
              " prompts in the metadata for ", t->size(0), " rows of text_features");
  }
  return out;
}

}  // namespace vgg::flow
