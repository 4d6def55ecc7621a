// The AutoencoderKL decoder (nn/vae.h) against diffusers 0.27 on a tiny random config in f64
// (tests/data/vae/tiny_decoder.safetensors, written by tools/golden/vae.py): output and latent
// gradient, f32 within its precision, the file checks and the config checks.
#include "autograd/engine.h"
#include "nn/vae.h"
#include "tensor/safetensors.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::throws_error;
using nn::NamedTensors;

namespace {

struct Golden {
  SafetensorsFile f = load_safetensors(test::data_path("vae/tiny_decoder.safetensors"));
  nn::VaeConfig cfg = nn::VaeConfig::from_json(f.metadata.at("config"));
  NamedTensors weights() const {
    NamedTensors w;
    for (const auto& [name, t] : f.tensors)
      if (name.rfind("input.", 0) != 0 && name.rfind("expected.", 0) != 0) w.emplace_back(name, t);
    return w;
  }
};

}  // namespace

TEST(Vae, DecoderMatchesDiffusersInF64) {
  Golden g;
  EXPECT_EQ(g.cfg.block_out_channels, (std::vector<int64_t>{8, 16}));
  EXPECT_TRUE(g.cfg.use_post_quant_conv);
  nn::LayerOptions o;
  o.dtype = DType::F64;
  nn::AutoencoderKLDecoder vae(g.cfg, o);
  vae.load_state_dict(g.weights());  // strict: every diffusers name present, none extra
  Tensor z = g.f.at("input.z").detach().requires_grad_(true);
  Tensor out = vae.decode(z);
  const Tensor& want = g.f.at("expected.out");
  ASSERT_EQ(out.shape(), want.shape());  // [2, 3, 6, 10] from 3x5 latents: non-square, one 2x upsampling
  EXPECT_TRUE(all_close(out, want, 1e-10, 1e-10));
  auto gz = grad({out}, {z}, {g.f.at("input.gout")});
  EXPECT_TRUE(all_close(gz[0], g.f.at("expected.grad_z"), 1e-10, 1e-10));
}

TEST(Vae, DecoderInF32WithinItsPrecision) {
  Golden g;
  nn::AutoencoderKLDecoder vae(g.cfg);
  vae.load_state_dict(g.weights());  // cast to the module's f32
  Tensor out = ops::to(vae.decode(ops::to(g.f.at("input.z"), DType::F32)), DType::F64);
  const Tensor& want = g.f.at("expected.out");
  const double scale = ops::amax(ops::abs(want)).item();
  EXPECT_TRUE(all_close(out, want, 1e-5 * scale, 1e-5));
}

TEST(Vae, WeightFilesWithAMissingExtraOrMisshapedKeyAreRefusedByName) {
  Golden g;
  nn::AutoencoderKLDecoder vae(g.cfg, {DType::F64});
  NamedTensors w = g.weights();
  NamedTensors missing(w.begin() + 1, w.end());
  EXPECT_TRUE(throws_error([&] { vae.load_state_dict(missing); }, {w[0].first.c_str()}));
  NamedTensors extra = w;
  extra.emplace_back("decoder.up_blocks.9.resnets.0.conv1.weight", w[0].second);
  EXPECT_TRUE(throws_error([&] { vae.load_state_dict(extra); }, {"decoder.up_blocks.9.resnets.0.conv1.weight"}));
  NamedTensors shaped = w;
  for (auto& [name, t] : shaped)
    if (name == "decoder.conv_in.weight") t = ops::narrow(t, 0, 0, 8);
  EXPECT_TRUE(throws_error([&] { vae.load_state_dict(shaped); }, {"decoder.conv_in.weight"}));
}

TEST(Vae, ConfigIsCheckedInOneLine) {
  EXPECT_TRUE(throws_error([] { nn::VaeConfig::from_json("{\"block_out_channels\": [8, 12], \"norm_num_groups\": 8}"); },
                           {"VAE config", "12", "norm_num_groups 8"}));
  EXPECT_TRUE(throws_error([] { nn::VaeConfig::from_json("{\"up_block_types\": [\"Up\", \"Up\", \"Up\", \"Up\"]}"); },
                           {"VAE config", "not supported"}));
  EXPECT_TRUE(throws_error([] { nn::VaeConfig::from_json("{\"layers_per_block\": 2.5}"); },
                           {"VAE config", "'layers_per_block' must be an integer"}));
  EXPECT_TRUE(throws_error([] { nn::VaeConfig::from_json("{\"scaling_factor\": 0}"); }, {"scaling_factor"}));
  // SD3's own config: 16 latent channels, no post_quant_conv, its scaling and shift
  nn::VaeConfig sd3 = nn::VaeConfig::from_json(
      R"({"_class_name": "AutoencoderKL", "block_out_channels": [128, 256, 512, 512], "latent_channels": 16,
          "layers_per_block": 2, "norm_num_groups": 32, "scaling_factor": 1.5305, "shift_factor": 0.0609,
          "use_post_quant_conv": false, "use_quant_conv": false, "up_block_types": ["UpDecoderBlock2D",
          "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"], "act_fn": "silu", "out_channels": 3})");
  EXPECT_EQ(sd3.latent_channels, 16);
  EXPECT_FALSE(sd3.use_post_quant_conv);
  EXPECT_DOUBLE_EQ(sd3.shift_factor, 0.0609);
  nn::LayerOptions deferred;
  deferred.deferred = true;
  nn::AutoencoderKLDecoder big(sd3, deferred);  // placeholders: counted, not allocated
  EXPECT_EQ(big.num_parameters(), 49545475);  // diffusers 0.27: the decoder of this config
}

// AutoencoderTiny's decoder (TAESD-style: residual ReLU blocks, nearest upsampling, tanh clamp)
// against diffusers in f64; diffusers' nn.Sequential numbering of "decoder.layers.<i>".
TEST(Vae, TinyDecoderMatchesDiffusersInF64) {
  SafetensorsFile f = load_safetensors(test::data_path("vae/tiny_autoencoder_tiny.safetensors"));
  nn::TinyVaeConfig cfg = nn::TinyVaeConfig::from_json(f.metadata.at("config"));
  EXPECT_EQ(cfg.num_blocks, (std::vector<int64_t>{2, 1}));
  nn::AutoencoderTinyDecoder vae(cfg, {DType::F64});
  NamedTensors w;
  for (const auto& [name, t] : f.tensors)
    if (name.rfind("decoder.", 0) == 0) w.emplace_back(name, t);
  vae.load_state_dict(w);  // strict
  Tensor z = f.at("input.z").detach().requires_grad_(true);
  Tensor out = vae.decode(z);
  EXPECT_TRUE(all_close(out, f.at("expected.out"), 1e-10, 1e-10));
  auto gz = grad({out}, {z}, {f.at("input.gout")});
  EXPECT_TRUE(all_close(gz[0], f.at("expected.grad_z"), 1e-10, 1e-10));
  // TAESD3's published structure: 16 latent channels, 64 wide, blocks 3, 3, 3, 1
  nn::LayerOptions deferred;
  deferred.deferred = true;
  nn::AutoencoderTinyDecoder taesd3(nn::TinyVaeConfig{}, deferred);
  EXPECT_NE(taesd3.decoder->find_module("layers.17"), nullptr);  // the last block
  EXPECT_NE(taesd3.decoder->find_module("layers.18"), nullptr);  // the image conv
  EXPECT_EQ(taesd3.num_parameters(), 1229443);                    // diffusers' DecoderTiny of this config
  EXPECT_TRUE(throws_error([] { nn::TinyVaeConfig::from_json(R"({"decoder_block_out_channels": [8], "num_decoder_blocks": [1, 1]})"); },
                           {"tiny VAE config", "same 1 to 8 entries"}));
}
