// The SD3 pipeline's pieces (nn/diffusers.h, vggflow/sd3.h) on the tiny SD3-structured folder of
// tests/support/sd3_fixture.h: folder and shard checks, prompt embeddings, on-policy rollouts of
// SD3-shaped latents, and the reward of latents through the decoder.
#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "autograd/engine.h"
#include "nn/io.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/support/sd3_fixture.h"
#include "tests/support/test_support.h"
#include "vggflow/clip_rewards.h"
#include "vggflow/methods/common.h"
#include "vggflow/sd3.h"

namespace fs = std::filesystem;
using namespace vgg;
using test::throws_error;

namespace {
std::string fixture(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("vgg_sd3_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  test::write_tiny_sd3_folder(d.string());
  return d.string();
}
}  // namespace

TEST(Sd3, FolderGivesAFlowModelWithSd3Latents) {
  const std::string d = fixture("model");
  const nn::DiffusersFolder f = nn::read_diffusers_folder(d);
  EXPECT_EQ(f.pipeline_class, "StableDiffusion3Pipeline");
  EXPECT_DOUBLE_EQ(f.shift, 3.0);
  EXPECT_EQ(f.transformer.in_channels, 4);
  flow::FlowModel m = flow::load_sd3_flow_model(f, d + "/prompts.safetensors", 16);
  EXPECT_EQ(m.latent_channels, 4);
  EXPECT_EQ(m.latent_size, 8);  // 16 / the tiny VAE's scale 2
  EXPECT_DOUBLE_EQ(m.sampling.shift, 3.0);
  EXPECT_EQ(m.prompts->num_prompts(), 4);
  // the sharded weights arrived: every tensor equals its shard's
  const nn::NamedTensors w = nn::load_component_weights(d + "/transformer");
  for (const auto& [name, t] : m.net->state_dict()) {
    const auto it = std::find_if(w.begin(), w.end(), [&](const auto& e) { return e.first == name; });
    ASSERT_NE(it, w.end()) << name;
    EXPECT_TRUE(test::all_close(t, it->second, 0, 0)) << name;
  }
  namespace mt = flow::methods;
  mt::Policy p = mt::make_policy(m, 4, 2.0, 1);
  Generator g(3);
  mt::Rollout r = mt::sample_rollout(p, 5, 3, m.sampling.shift, g);
  ASSERT_EQ(r.latents.size(), 4u);
  EXPECT_EQ(r.latents.back().shape(), (Shape{5, 4, 8, 8}));
  for (double id : r.ids.to_vector()) EXPECT_TRUE(id >= 0 && id < 3) << id;
  EXPECT_TRUE(std::isfinite(ops::sum(ops::abs(r.latents.back())).item()));
}

TEST(Sd3, DecodedRewardIsTheImageRewardOfTheDecodedLatents) {
  const std::string d = fixture("reward");
  const nn::DiffusersFolder f = nn::read_diffusers_folder(d);
  auto vae = nn::load_diffusers_vae_decoder(f);
  auto clip = std::make_shared<flow::ClipReward>(test::data_path("clip/reward_aesthetic_tiny.safetensors"),
                                                 flow::ClipRewardKind::Aesthetic);
  flow::DecodedReward r([vae](const Tensor& z) { return vae->decode(z); }, clip, Device::cpu(), DType::F32);
  Tensor z = ops::mul(test::rnd({2, 4, 8, 8}, 5, DType::F32), 3.0).requires_grad_(true);
  Tensor v = r(z);
  ASSERT_EQ(v.shape(), (Shape{2}));
  Tensor want = (*clip)(ops::clamp(vae->decode(z.detach()), -1.0, 1.0));
  EXPECT_TRUE(test::all_close(v.detach(), want, 0, 0));
  EXPECT_EQ(r.images(z).shape(), (Shape{2, 3, 16, 16}));
  Tensor gz = grad({ops::sum(v)}, {z})[0];
  const double gn = ops::sum(ops::abs(gz)).item();
  EXPECT_TRUE(std::isfinite(gn) && gn > 0);
}

// --decoder DIR: an AutoencoderTiny folder (config.json + weights, diffusers' names) decodes as the
// decoder built from the golden file does.
TEST(Sd3, TinyAutoencoderFolderLoads) {
  const fs::path d = fs::path(::testing::TempDir()) / ("vgg_sd3_taesd_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  SafetensorsFile g = load_safetensors(test::data_path("vae/tiny_autoencoder_tiny.safetensors"));
  std::vector<std::pair<std::string, Tensor>> w;
  for (const auto& [name, t] : g.tensors)
    if (name.rfind("decoder.", 0) == 0) w.emplace_back(name, t);
  save_safetensors((d / "diffusion_pytorch_model.safetensors").string(), w);
  std::ofstream(d / "config.json") << g.metadata.at("config");
  auto tiny = nn::load_tiny_vae_decoder(d.string(), {DType::F64});
  nn::AutoencoderTinyDecoder ref(nn::TinyVaeConfig::from_json(g.metadata.at("config")), {DType::F64});
  ref.load_state_dict(w);
  EXPECT_TRUE(test::all_close(tiny->decode(g.at("input.z")), ref.decode(g.at("input.z")), 0, 0));
  EXPECT_TRUE(throws_error([&] { nn::load_tiny_vae_decoder((d / "nope").string()); }, {"AutoencoderTiny folder", "does not exist"}));
  fs::remove(d / "config.json");
  EXPECT_TRUE(throws_error([&] { nn::load_tiny_vae_decoder(d.string()); }, {"config.json", "missing"}));
}

TEST(Sd3, BadFoldersAndFilesAreRefusedByName) {
  const std::string d = fixture("bad");
  const nn::MMDiTConfig cfg = nn::read_diffusers_folder(d).transformer;
  // a missing shard, named before any loading
  fs::rename(d + "/transformer/diffusion_pytorch_model-00002-of-00002.safetensors", d + "/moved.safetensors");
  EXPECT_TRUE(throws_error([&] { nn::read_diffusers_folder(d); }, {"diffusion_pytorch_model-00002-of-00002.safetensors", "missing"}));
  fs::rename(d + "/moved.safetensors", d + "/transformer/diffusion_pytorch_model-00002-of-00002.safetensors");
  // an index that names the wrong shard for a key
  {
    const std::string ix = d + "/transformer/diffusion_pytorch_model.safetensors.index.json";
    nlohmann::json j = nlohmann::json::parse(std::ifstream(ix));
    const std::string key = j["weight_map"].begin().key();
    const std::string other = j["weight_map"][key] == "diffusion_pytorch_model-00001-of-00002.safetensors"
                                  ? "diffusion_pytorch_model-00002-of-00002.safetensors"
                                  : "diffusion_pytorch_model-00001-of-00002.safetensors";
    j["weight_map"][key] = other;
    std::ofstream(ix) << j.dump();
    EXPECT_TRUE(throws_error([&] { nn::load_component_weights(d + "/transformer"); }, {key.c_str(), "indexed in"}));
    j["weight_map"].erase(key);
    j["weight_map"]["transformer_blocks.99.attn.to_q.weight"] = other;
    std::ofstream(ix) << j.dump();
    EXPECT_TRUE(throws_error([&] { nn::load_component_weights(d + "/transformer"); }, {"not in the shard index"}));
  }
  fs::remove(d + "/scheduler/scheduler_config.json");
  EXPECT_TRUE(throws_error([&] { nn::read_diffusers_folder(d); }, {"scheduler_config.json", "missing"}));
  fs::remove(d + "/model_index.json");
  EXPECT_TRUE(throws_error([&] { nn::read_diffusers_folder(d); }, {"model_index.json", "missing"}));
  EXPECT_TRUE(throws_error([&] { nn::read_diffusers_folder(d + "/nope"); }, {"does not exist"}));
  // prompt embeddings that do not fit the model, or lack their prompt list
  const std::string pf = d + "/p.safetensors";
  save_safetensors(pf, std::vector<std::pair<std::string, Tensor>>{{"tokens", zeros({3, 6, 12})}, {"pooled", zeros({3, 8})}},
                   {{"prompts", R"(["a", "b"])"}});
  EXPECT_TRUE(throws_error([&] { flow::load_prompt_embeddings(pf, cfg); }, {pf.c_str(), "tokens", "16"}));
  save_safetensors(pf, std::vector<std::pair<std::string, Tensor>>{{"tokens", zeros({3, 6, 16})}, {"pooled", zeros({3, 8})}},
                   {{"prompts", R"(["a"])"}});
  EXPECT_TRUE(throws_error([&] { flow::load_prompt_embeddings(pf, cfg); }, {pf.c_str(), "must list 2 texts"}));
  save_safetensors(pf, std::vector<std::pair<std::string, Tensor>>{{"tokens", zeros({3, 6, 16})}, {"pooled", zeros({3, 8})}});
  EXPECT_TRUE(throws_error([&] { flow::load_prompt_embeddings(pf, cfg); }, {pf.c_str(), "no \"prompts\" metadata"}));
}

TEST(Sd3, ResolutionMustFitTheVaeAndPatches) {
  const std::string d = fixture("res");
  const nn::DiffusersFolder f = nn::read_diffusers_folder(d);
  EXPECT_TRUE(throws_error([&] { flow::load_sd3_flow_model(f, d + "/prompts.safetensors", 18); }, {"resolution 18", "multiple of 4"}));
  EXPECT_TRUE(throws_error([&] { flow::load_sd3_flow_model(f, d + "/prompts.safetensors", 128); }, {"position table"}));
}
