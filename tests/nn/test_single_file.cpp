// Stability single-file SD3 checkpoints as diffusers folders (nn/single_file.h): the LDM VAE names
// as diffusers' single-file loader maps them, bit-exact round trips, configs inferred from the
// weights, and a folder written from a single file that loads and runs as the original modules.
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/convert.h"
#include "nn/diffusers.h"
#include "nn/mmdit.h"
#include "nn/single_file.h"
#include "nn/vae.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tests/nn/hashed.h"
#include "tests/support/test_support.h"

namespace fs = std::filesystem;

namespace vgg::test {
namespace {

const Tensor* lookup(const nn::NamedTensors& sd, const std::string& name) {
  for (const auto& [n, t] : sd)
    if (n == name) return &t;
  return nullptr;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  Tensor ca = contiguous_raw(a), cb = contiguous_raw(b);
  return std::memcmp(ca.data_ptr(), cb.data_ptr(), static_cast<size_t>(a.numel()) * itemsize(a.dtype())) == 0;
}

// The tiny AutoencoderKL of tests/data/vae (2 levels, widths 8 and 16, 4 norm groups, quant convs)
// under diffusers names: the encoder's and the decoder's golden files without their inputs.
struct TinyVae {
  nn::NamedTensors weights;
  nn::VaeConfig config;
};
TinyVae tiny_vae() {
  TinyVae v;
  for (const char* f : {"vae/tiny_encoder.safetensors", "vae/tiny_decoder.safetensors"}) {
    SafetensorsFile sf = load_safetensors(data_path(f));
    for (auto& [n, t] : sf.tensors)
      if (n.rfind("encoder.", 0) == 0 || n.rfind("decoder.", 0) == 0 || n.rfind("quant_conv.", 0) == 0 ||
          n.rfind("post_quant_conv.", 0) == 0)
        v.weights.emplace_back(n, t);
    v.config = nn::VaeConfig::from_json(sf.metadata.at("config"));
  }
  v.config.use_quant_conv = v.config.use_post_quant_conv = true;  // the two files' configs name one each
  return v;
}

TEST(SingleFile, VaeNamesAreTheLdmNamesDiffusersMaps) {
  const TinyVae v = tiny_vae();
  const nn::NamedTensors ldm = nn::diffusers_vae_to_ldm(v.weights);
  ASSERT_EQ(ldm.size(), v.weights.size());
  // (LDM name, diffusers name) pairs as diffusers' convert_ldm_vae_checkpoint relates them: the
  // decoder's levels in reverse order, nin_shortcut, the mid block, norm_out, the samplers
  const std::pair<const char*, const char*> pairs[] = {
      {"decoder.up.0.block.0.nin_shortcut.weight", "decoder.up_blocks.1.resnets.0.conv_shortcut.weight"},
      {"decoder.up.1.block.1.conv2.bias", "decoder.up_blocks.0.resnets.1.conv2.bias"},
      {"decoder.up.1.upsample.conv.weight", "decoder.up_blocks.0.upsamplers.0.conv.weight"},
      {"decoder.mid.block_1.norm1.weight", "decoder.mid_block.resnets.0.norm1.weight"},
      {"decoder.mid.block_2.conv2.weight", "decoder.mid_block.resnets.1.conv2.weight"},
      {"decoder.mid.attn_1.norm.bias", "decoder.mid_block.attentions.0.group_norm.bias"},
      {"decoder.mid.attn_1.proj_out.bias", "decoder.mid_block.attentions.0.to_out.0.bias"},
      {"decoder.norm_out.weight", "decoder.conv_norm_out.weight"},
      {"decoder.conv_in.weight", "decoder.conv_in.weight"},
      {"encoder.down.0.block.0.conv1.weight", "encoder.down_blocks.0.resnets.0.conv1.weight"},
      {"encoder.down.1.block.0.nin_shortcut.bias", "encoder.down_blocks.1.resnets.0.conv_shortcut.bias"},
      {"encoder.down.0.downsample.conv.weight", "encoder.down_blocks.0.downsamplers.0.conv.weight"},
      {"encoder.norm_out.bias", "encoder.conv_norm_out.bias"},
      {"quant_conv.weight", "quant_conv.weight"},
      {"post_quant_conv.bias", "post_quant_conv.bias"}};
  for (const auto& [l, d] : pairs) {
    const Tensor* a = lookup(ldm, l);
    const Tensor* b = lookup(v.weights, d);
    ASSERT_TRUE(a && b) << l << " / " << d;
    EXPECT_TRUE(bit_equal(*a, *b)) << l;
  }
  // attention projections are 1×1 convolutions in LDM checkpoints
  for (const char* k : {"q", "k", "v", "proj_out"}) {
    const Tensor* a = lookup(ldm, std::string("encoder.mid.attn_1.") + k + ".weight");
    ASSERT_TRUE(a) << k;
    EXPECT_EQ(a->shape(), (Shape{16, 16, 1, 1})) << k;
  }
  EXPECT_EQ(lookup(ldm, "decoder.up.1.block.0.nin_shortcut.weight"), nullptr);  // that level keeps its width
  // and back, bit for bit
  const nn::NamedTensors back = nn::ldm_vae_to_diffusers(ldm);
  ASSERT_EQ(back.size(), v.weights.size());
  for (const auto& [n, t] : v.weights) {
    const Tensor* b = lookup(back, n);
    ASSERT_TRUE(b) << n;
    EXPECT_TRUE(bit_equal(*b, t)) << n;
  }
  // keys that are not VAE keys are refused by name
  nn::NamedTensors bad = ldm;
  bad.emplace_back("decoder.up.0.block.0.bogus.weight", zeros({1}));
  EXPECT_TRUE(throws_error([&] { nn::ldm_vae_to_diffusers(bad); }, {"'decoder.up.0.block.0.bogus.weight' is not an LDM VAE key"}));
  EXPECT_TRUE(throws_error([&] { nn::diffusers_vae_to_ldm(ldm); }, {"is not a diffusers VAE key"}));
}

TEST(SingleFile, ConfigsAreInferredFromTheWeights) {
  const TinyVae v = tiny_vae();
  const nn::VaeConfig c = nn::infer_vae_config(v.weights);
  EXPECT_EQ(c.block_out_channels, v.config.block_out_channels);
  EXPECT_EQ(c.layers_per_block, v.config.layers_per_block);
  EXPECT_EQ(c.latent_channels, v.config.latent_channels);
  EXPECT_EQ(c.in_channels, 3);
  EXPECT_EQ(c.out_channels, 3);
  EXPECT_TRUE(c.use_quant_conv && c.use_post_quant_conv && c.mid_block_add_attention);
  EXPECT_EQ(c.norm_num_groups, 32);  // SD3's: not in the shapes
  for (const char* name : {"tiny-sd35m", "tiny-sd35l", "sd3.5-medium"}) {
    nn::MMDiTConfig want = nn::MMDiTConfig::named(name);
    nn::LayerOptions lo;
    lo.deferred = true;  // shapes only (sd3.5-medium is 2.5 B parameters)
    nn::MMDiT m(want, lo);
    nn::MMDiTConfig got = nn::infer_mmdit_config(m.state_dict());
    got.sample_size = want.sample_size;  // not in the shapes
    EXPECT_EQ(got.to_json(), want.to_json()) << name;
  }
  // without qk-norm the head dimension is SD3's 64
  const nn::MMDiTConfig sd3 = nn::MMDiTConfig::named("sd3-medium");
  nn::LayerOptions lo;
  lo.deferred = true;
  nn::MMDiT m(sd3, lo);
  nn::MMDiTConfig got = nn::infer_mmdit_config(m.state_dict());
  got.sample_size = sd3.sample_size;
  EXPECT_EQ(got.to_json(), sd3.to_json());
}

// A single file written the way Stability ships them (MMDiT under model.diffusion_model., the VAE
// under first_stage_model. in LDM names, a text encoder tensor) becomes a folder whose transformer
// and decoder compute exactly what the original modules compute.
TEST(SingleFile, FolderFromASingleFileRunsAsTheOriginal) {
  const fs::path dir = fs::path(::testing::TempDir()) / "vgg_single_file";
  fs::remove_all(dir);
  fs::create_directories(dir);
  nn::MMDiT mm(nn::MMDiTConfig::named("tiny-sd35m"), nn::LayerOptions{DType::F32});
  fill_hashed_parameters(mm);
  const TinyVae v = tiny_vae();
  nn::NamedTensors single = nn::diffusers_to_stability(mm.state_dict());
  for (auto& [n, t] : nn::diffusers_vae_to_ldm(v.weights)) single.emplace_back("first_stage_model." + n, t);
  single.emplace_back("text_encoders.clip_l.transformer.text_model.final_layer_norm.weight", ones({8}));
  const std::string in = (dir / "sd3_tiny.safetensors").string();
  save_safetensors(in, single);

  nn::SingleFileOptions o;
  o.vae = v.config;  // the tiny VAE's 4 norm groups are not SD3's 32
  o.shift = 2.5;
  const std::string out = (dir / "folder").string();
  const nn::SingleFileReport r = nn::single_file_to_diffusers_folder(in, out, o);
  EXPECT_EQ(r.skipped, 1);
  EXPECT_EQ(r.vae_tensors, static_cast<int64_t>(v.weights.size()));
  EXPECT_FALSE(fs::exists(out + ".partial"));

  const nn::DiffusersFolder f = nn::read_diffusers_folder(out);
  EXPECT_EQ(f.shift, 2.5);
  EXPECT_EQ(f.transformer.dual_attention_layers, mm.config().dual_attention_layers);
  auto net = nn::load_diffusers_transformer(f);
  Generator g(3);
  const nn::MMDiTConfig& c = mm.config();
  Tensor x = randn({2, c.in_channels, 8, 8}, {}, &g), t = from_vector(std::vector<float>{100.f, 900.f}, {2});
  Tensor ctx = randn({2, 5, c.joint_attention_dim}, {}, &g), pooled = randn({2, c.pooled_projection_dim}, {}, &g);
  NoGradGuard ng;
  EXPECT_TRUE(bit_equal(net->forward(x, t, ctx, pooled), mm.forward(x, t, ctx, pooled)));
  auto dec = nn::load_diffusers_vae_decoder(f);
  nn::AutoencoderKLDecoder ref(v.config);
  nn::NamedTensors dec_w;
  for (const auto& [n, w] : v.weights)
    if (n.rfind("decoder.", 0) == 0 || n.rfind("post_quant_conv.", 0) == 0) dec_w.emplace_back(n, w);
  ref.load_state_dict(dec_w);
  Tensor z = randn({1, v.config.latent_channels, 4, 4}, {}, &g);
  EXPECT_TRUE(bit_equal(dec->decode(z), ref.decode(z)));

  // OUT is never replaced without force; with force it is, completely
  EXPECT_TRUE(throws_error([&] { nn::single_file_to_diffusers_folder(in, out, o); }, {"exists (use --force to replace it)"}));
  o.force = true;
  o.shift = 3.0;
  nn::single_file_to_diffusers_folder(in, out, o);
  EXPECT_EQ(nn::read_diffusers_folder(out).shift, 3.0);

  // bad files: one line naming the file and what is missing or wrong; nothing written
  nn::NamedTensors no_vae;
  for (const auto& [n, t] : single)
    if (n.rfind("first_stage_model.", 0) != 0) no_vae.emplace_back(n, t);
  save_safetensors((dir / "no_vae.safetensors").string(), no_vae);
  EXPECT_TRUE(throws_error([&] { nn::single_file_to_diffusers_folder((dir / "no_vae.safetensors").string(), (dir / "x").string(), o); },
                           {"no_vae.safetensors", "no 'first_stage_model.*' tensors"}));
  save_safetensors((dir / "vae_only.safetensors").string(), nn::NamedTensors{{"first_stage_model.decoder.conv_in.weight", zeros({1})}});
  EXPECT_TRUE(throws_error([&] { nn::single_file_to_diffusers_folder((dir / "vae_only.safetensors").string(), (dir / "x").string(), o); },
                           {"vae_only.safetensors", "no 'model.diffusion_model.*' tensors"}));
  o.vae.reset();  // SD3's 32 groups do not fit the tiny widths
  EXPECT_TRUE(throws_error([&] { nn::single_file_to_diffusers_folder(in, (dir / "x").string(), o); },
                           {"sd3_tiny.safetensors", "norm groups", "--vae-config"}));
  o.vae = v.config;
  o.transformer = nn::MMDiTConfig::named("tiny");  // no dual attention: the file's modulation is wider
  EXPECT_TRUE(throws_error([&] { nn::single_file_to_diffusers_folder(in, (dir / "x").string(), o); },
                           {"sd3_tiny.safetensors", "the transformer: 'transformer_blocks.0.norm1.linear.weight' is f32[1152, 128]",
                            "the config's model has [768, 128]"}));
  EXPECT_FALSE(fs::exists(dir / "x"));
  EXPECT_FALSE(fs::exists(dir / "x.partial"));
}

}  // namespace
}  // namespace vgg::test
