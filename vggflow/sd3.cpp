#include "vggflow/sd3.h"

#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/io.h"
#include "tensor/error.h"
#include "tensor/json.h"
#include "tensor/safetensors.h"

namespace vgg::flow {

PromptEmbeddings load_prompt_embeddings(const std::string& path, const nn::MMDiTConfig& cfg, nn::LayerOptions o) {
  SafetensorsFile f = load_safetensors(path);
  const Tensor* tok = f.find("tokens");
  const Tensor* pooled = f.find("pooled");
  VGG_CHECK(tok && pooled, path, ": a prompt embeddings file holds \"tokens\" [N + 1, T, J] and \"pooled\" [N + 1, P]");
  VGG_CHECK(tok->dim() == 3 && tok->size(0) >= 2 && tok->size(2) == cfg.joint_attention_dim, path, ": tokens ",
            describe(*tok), " do not fit the model ([N + 1, T, ", cfg.joint_attention_dim, "], N >= 1)");
  VGG_CHECK(pooled->dim() == 2 && pooled->size(0) == tok->size(0) && pooled->size(1) == cfg.pooled_projection_dim, path,
            ": pooled ", describe(*pooled), " does not fit the model ([", tok->size(0), ", ", cfg.pooled_projection_dim, "])");
  for (const auto& [name, t] : f.tensors)
    VGG_CHECK(name == "tokens" || name == "pooled", path, ": unknown tensor '", name, "' (tokens, pooled)");
  PromptEmbeddings pe;
  const auto it = f.metadata.find("prompts");
  VGG_CHECK(it != f.metadata.end(), path, ": no \"prompts\" metadata (the JSON list of prompt texts)");
  const nlohmann::json list = parse_json(it->second, path + ": metadata \"prompts\"");
  VGG_CHECK(list.is_array() && static_cast<int64_t>(list.size()) == tok->size(0) - 1, path,
            ": metadata \"prompts\" must list ", tok->size(0) - 1, " texts (one per row but the last, the empty prompt)");
  for (const auto& t : list) {
    VGG_CHECK(t.is_string(), path, ": metadata \"prompts\" entries must be strings, got ", t.dump());
    pe.texts.push_back(t.get<std::string>());
  }
  pe.encoder = std::make_shared<PromptEncoder>(tok->size(0), tok->size(1), cfg.joint_attention_dim,
                                               cfg.pooled_projection_dim, o);
  pe.encoder->load_state_dict(nn::NamedTensors{{"tokens", *tok}, {"pooled", *pooled}});
  pe.encoder->requires_grad_(false);
  return pe;
}

FlowModel load_sd3_flow_model(const nn::DiffusersFolder& f, const std::string& prompts_file, int64_t resolution,
                              nn::LayerOptions o) {
  const int64_t scale = int64_t{1} << (f.vae.block_out_channels.size() - 1);
  VGG_CHECK(resolution > 0 && resolution % (scale * f.transformer.patch_size) == 0, "resolution ", resolution,
            " must be a positive multiple of ", scale * f.transformer.patch_size, " (the VAE's scale ", scale,
            " times the patch size)");
  VGG_CHECK(f.transformer.in_channels == f.vae.latent_channels, f.root, ": the transformer takes ",
            f.transformer.in_channels, " latent channels, the VAE has ", f.vae.latent_channels);
  FlowModel m;
  m.source = f.root;
  m.cfg = f.transformer;
  m.net = nn::load_diffusers_transformer(f, o);
  m.net->requires_grad_(false);
  PromptEmbeddings pe = load_prompt_embeddings(prompts_file, m.cfg, o);
  m.prompts = pe.encoder;
  m.prompt_texts = std::move(pe.texts);
  m.sampling.shift = f.shift;
  m.latent_channels = f.vae.latent_channels;
  m.latent_size = resolution / scale;
  VGG_CHECK(m.latent_size / m.cfg.patch_size <= m.cfg.pos_embed_max_size, "resolution ", resolution, " needs ",
            m.latent_size / m.cfg.patch_size, " patches per side; the model's position table has ",
            m.cfg.pos_embed_max_size);
  return m;
}

DecodedReward::DecodedReward(Decoder decode, std::shared_ptr<Reward> image_reward, Device device, DType dtype)
    : decode_(std::move(decode)), image_reward_(std::move(image_reward)), device_(device), dtype_(dtype) {}

Tensor DecodedReward::operator()(const Tensor& latents) const { return score(latents, Tensor()); }

Tensor DecodedReward::score(const Tensor& latents, const Tensor& ids) const {
  Tensor z = ops::to(ops::to(latents, dtype_), device_);
  Tensor img = ops::clamp(decode_(z), -1.0, 1.0);
  Tensor r = ids.defined() ? image_reward_->score(img, ids) : (*image_reward_)(img);
  return ops::to(ops::to(r, latents.device()), latents.dtype());
}

Tensor DecodedReward::images(const Tensor& latents) const {
  NoGradGuard ng;
  Tensor z = ops::to(ops::to(latents, dtype_), device_);
  return ops::to(ops::clamp(decode_(z), -1.0, 1.0), latents.device());
}

}  // namespace vgg::flow
