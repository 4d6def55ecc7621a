#include "tests/support/sd3_fixture.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/layers.h"
#include "nn/mmdit.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;

namespace vgg::test {

namespace {
void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream(p) << j.dump(2) << "\n";
}
}  // namespace

void write_tiny_sd3_folder(const std::string& dir) {
  const fs::path d(dir);
  fs::create_directories(d / "transformer");
  fs::create_directories(d / "vae");
  fs::create_directories(d / "scheduler");
  write_json(d / "model_index.json", {{"_class_name", "StableDiffusion3Pipeline"},
                                      {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}},
                                      {"transformer", {"diffusers", "SD3Transformer2DModel"}},
                                      {"vae", {"diffusers", "AutoencoderKL"}}});
  write_json(d / "scheduler" / "scheduler_config.json",
             {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"shift", 3.0}});
  const nlohmann::json tcfg = {{"_class_name", "SD3Transformer2DModel"}, {"sample_size", 8}, {"patch_size", 2},
                               {"in_channels", 4}, {"out_channels", 4}, {"num_layers", 2}, {"attention_head_dim", 8},
                               {"num_attention_heads", 2}, {"joint_attention_dim", 16}, {"caption_projection_dim", 16},
                               {"pooled_projection_dim", 8}, {"pos_embed_max_size", 16}};
  write_json(d / "transformer" / "config.json", tcfg);
  // every weight N(0, 0.1²) (the usual zero-initialised gates would hide the LoRA's gradient)
  Generator g(2026);
  nn::MMDiT net(nn::MMDiTConfig::from_json(tcfg.dump()), {DType::F32, Device::cpu(), &g});
  std::vector<std::pair<std::string, Tensor>> shard[2];
  nlohmann::json wm = nlohmann::json::object();
  int k = 0;
  for (auto& [name, t] : net.state_dict()) {
    Tensor w = t.detach();
    if (name.find("pos_embed.pos_embed") == std::string::npos) {
      NoGradGuard ng;
      nn::normal_(w, 0.0, 0.1, &g);
    }
    const int s = k++ % 2;
    shard[s].emplace_back(name, w);
    wm[name] = "diffusion_pytorch_model-0000" + std::to_string(s + 1) + "-of-00002.safetensors";
  }
  for (int s = 0; s < 2; ++s)
    save_safetensors((d / "transformer" / ("diffusion_pytorch_model-0000" + std::to_string(s + 1) + "-of-00002.safetensors")).string(),
                     shard[s]);
  write_json(d / "transformer" / "diffusion_pytorch_model.safetensors.index.json",
             {{"metadata", {{"total_size", 0}}}, {"weight_map", wm}});
  // the VAE: the tiny decoder of the golden file under its diffusers names
  SafetensorsFile vf = load_safetensors(data_path("vae/tiny_decoder.safetensors"));
  std::vector<std::pair<std::string, Tensor>> vw;
  for (const auto& [name, t] : vf.tensors)
    if (name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0) vw.emplace_back(name, ops::to(t, DType::F32));
  save_safetensors((d / "vae" / "diffusion_pytorch_model.safetensors").string(), vw);
  nlohmann::json vcfg = nlohmann::json::parse(vf.metadata.at("config"));
  vcfg["_class_name"] = "AutoencoderKL";
  write_json(d / "vae" / "config.json", vcfg);
  // 3 prompts and the empty one
  Generator pg(7);
  save_safetensors((d / "prompts.safetensors").string(),
                   std::vector<std::pair<std::string, Tensor>>{{"tokens", randn({4, 6, 16}, {}, &pg)}, {"pooled", randn({4, 8}, {}, &pg)}},
                   {{"prompts", R"(["a cat", "a dog", "a bird"])"}});
  // the prompts' text features for the tiny HPS / PickScore rewards (projection 16), as
  // tools/convert_reward.py --prompts writes them, and a file whose prompts do not match
  Generator tg(8);
  const Tensor text = randn({3, 16}, {}, &tg);
  save_safetensors((d / "text_features.safetensors").string(), std::vector<std::pair<std::string, Tensor>>{{"text_features", text}},
                   {{"prompts", R"(["a cat", "a dog", "a bird"])"}});
  save_safetensors((d / "text_features_other.safetensors").string(),
                   std::vector<std::pair<std::string, Tensor>>{{"text_features", text}},
                   {{"prompts", R"(["a cat", "a cow", "a bird"])"}});
}

}  // namespace vgg::test
