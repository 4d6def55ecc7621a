#include "vggflow/model.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/io.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/json.h"
#include "tensor/safetensors.h"

namespace fs = std::filesystem;

namespace vgg::flow {

Tensor forward_on_device(nn::MMDiT& n, const Tensor& x, const Tensor& tau, const Tensor& context,
                         const Tensor& pooled) {
  const Device d = n.param_device();
  if (x.device() == d) return n.forward(x, ops::to(tau, d), ops::to(context, d), ops::to(pooled, d));
  return ops::to(n.forward(ops::to(x, d), ops::to(tau, d), ops::to(context, d), ops::to(pooled, d)), x.device());
}

VelocityFn FlowModel::velocity() const {
  auto n = net;
  return [n](const Tensor& x, const Tensor& t, const Conditioning& c) {
    return forward_on_device(*n, x, t, c.context, c.pooled);
  };
}

FlowModel load_flow_model(const std::string& dir, nn::LayerOptions o) {
  const fs::path d(dir);
  VGG_CHECK(fs::is_directory(d), "model folder ", dir, " does not exist");
  auto pick = [&](const char* a, const char* b) {
    if (fs::exists(d / a)) return d / a;
    if (fs::exists(d / b)) return d / b;
    VGG_FAIL("model folder ", dir, " has neither ", a, " nor ", b);
  };
  const fs::path tf = pick("transformer.safetensors", "model_ema.safetensors");
  const fs::path pf = pick("prompts.safetensors", "prompts_ema.safetensors");
  const fs::path sf = pick("pretrain.json", "config.json");
  FlowModel m;
  m.source = dir;
  std::string cfg_json;
  for (auto& [k, v] : load_safetensors(tf.string()).metadata)  // header only would do; files are small
    if (k == "config") cfg_json = v;
  VGG_CHECK(!cfg_json.empty(), tf.string(), ": no MMDiT 'config' in the metadata");
  m.cfg = nn::MMDiTConfig::from_json(cfg_json);
  const nlohmann::json s = read_json_file(sf.string());
  m.sampling.steps = s.value("sample_steps", int64_t{20});
  m.sampling.shift = s.value("shift", 1.0);
  m.sampling.guidance = s.value("guidance", 4.0);
  m.net = std::make_shared<nn::MMDiT>(m.cfg, o);
  nn::load_weights(tf.string(), *m.net);
  SafetensorsFile p = load_safetensors(pf.string());
  const Tensor& tok = p.at("tokens");
  VGG_CHECK(tok.dim() == 3 && tok.size(2) == m.cfg.joint_attention_dim, pf.string(), ": tokens ", describe(tok),
            " do not fit the model (joint_attention_dim ", m.cfg.joint_attention_dim, ")");
  m.prompts = std::make_shared<PromptEncoder>(tok.size(0), tok.size(1), m.cfg.joint_attention_dim,
                                              m.cfg.pooled_projection_dim, o);
  nn::load_weights(pf.string(), *m.prompts);
  m.net->requires_grad_(false);
  m.prompts->requires_grad_(false);
  return m;
}

void save_flow_model(const std::string& dir, const FlowModel& m, const std::string& settings_json) {
  fs::create_directories(dir);
  const fs::path d(dir);
  nn::save_weights((d / "transformer.safetensors").string(), *m.net, {{"config", m.cfg.to_json()}});
  nn::save_weights((d / "prompts.safetensors").string(), *m.prompts);
  fs::path tmp = d / "pretrain.json.tmp";
  {
    std::ofstream out(tmp);
    out << settings_json;
    VGG_CHECK(out, "cannot write ", tmp.string());
  }
  fs::rename(tmp, d / "pretrain.json");
}

std::vector<int64_t> per_class_ids(int64_t n) {
  std::vector<int64_t> ids;
  for (int64_t c = 0; c < 10; ++c)
    for (int64_t k = 0; k < n; ++k) ids.push_back(c);
  return ids;
}

Tensor sample_images(const VelocityFn& f, const PromptEncoder& prompts, const std::vector<int64_t>& ids,
                     const SampleOptions& o, uint64_t seed, int64_t image_size, int64_t chunk, Device device) {
  return ops::clamp(sample_latents(f, prompts, ids, o, seed, 1, image_size, chunk, device), -1.0, 1.0);
}

Tensor sample_latents(const VelocityFn& f, const PromptEncoder& prompts, const std::vector<int64_t>& ids,
                      const SampleOptions& o, uint64_t seed, int64_t channels, int64_t size, int64_t chunk,
                      Device device) {
  VGG_CHECK(!ids.empty(), "sample_images: no prompts");
  VGG_CHECK(channels >= 1 && size >= 1 && chunk >= 1, "sample_latents: bad latent shape or chunk");
  NoGradGuard ng;
  const auto n = static_cast<int64_t>(ids.size());
  Generator g(seed, 0);
  Tensor noise = randn({n, channels, size, size}, {}, &g);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t b = std::min(chunk, n - i);
    std::vector<int64_t> part(ids.begin() + i, ids.begin() + i + b), empty(static_cast<size_t>(b), prompts.empty_id());
    Conditioning cond = prompts.encode(from_vector(part, {b})), uncond = prompts.encode(from_vector(empty, {b}));
    if (!device.is_cpu()) {
      cond = {ops::to(cond.context, device), ops::to(cond.pooled, device)};
      uncond = {ops::to(uncond.context, device), ops::to(uncond.pooled, device)};
    }
    out.push_back(ops::to(sample_euler(f, ops::to(ops::narrow(noise, 0, i, b), device), cond, uncond, o), Device::cpu()));
  }
  return ops::cat(out, 0);
}

}  // namespace vgg::flow
