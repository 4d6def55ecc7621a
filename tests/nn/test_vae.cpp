// The AutoencoderKL decoder (nn/vae.h) against diffusers 0.27 on a tiny random config in f64
// (tests/data/vae/tiny_decoder.safetensors, written by tools/golden/vae.py): output and latent
// gradient, f32 within its precision, the file checks and the config checks.
#include "autograd/engine.h"
#include "nn/vae.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"
#include "tensor/storage.h"
#include "tests/support/test_support.h"

using namespace vgg;
using test::all_close;
using test::throws_error;
using nn::NamedTensors;

namespace {

// A golden file of tools/golden/vae.py: weights under diffusers' names, "input.*", "expected.*".
struct Golden {
  explicit Golden(const char* file = "vae/tiny_decoder.safetensors") : f(load_safetensors(test::data_path(file))) {}
  SafetensorsFile f;
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

// AutoencoderKL's encoder against diffusers in f64 (tests/data/vae/tiny_encoder.safetensors): the
// scaled posterior mean and a scaled sample, with the images' gradients; non-square images.
namespace {
struct EncoderGolden : Golden {
  EncoderGolden() : Golden("vae/tiny_encoder.safetensors") {}
};
}  // namespace

TEST(Vae, EncoderMatchesDiffusersInF64) {
  EncoderGolden g;
  EXPECT_TRUE(g.cfg.use_quant_conv);
  nn::AutoencoderKLEncoder vae(g.cfg, {DType::F64});
  vae.load_state_dict(g.weights());  // strict
  Tensor x = g.f.at("input.x").detach().requires_grad_(true);
  Tensor z = vae.encode(x);
  ASSERT_EQ(z.shape(), (Shape{2, 4, 6, 10}));  // [2, 3, 12, 20] images, one 2x downsampling
  EXPECT_TRUE(all_close(z, g.f.at("expected.latents"), 1e-10, 1e-10));
  EXPECT_TRUE(all_close(grad({z}, {x}, {g.f.at("input.gout")})[0], g.f.at("expected.grad_x"), 1e-10, 1e-10));
  Tensor s = vae.encode(x, g.f.at("input.eps"));
  EXPECT_TRUE(all_close(s, g.f.at("expected.sample"), 1e-10, 1e-10));
  EXPECT_TRUE(all_close(grad({s}, {x}, {g.f.at("input.gout")})[0], g.f.at("expected.grad_x_sample"), 1e-10, 1e-10));
  // f32 within its precision
  nn::AutoencoderKLEncoder v32(g.cfg);
  v32.load_state_dict(g.weights());
  Tensor z32 = ops::to(v32.encode(ops::to(g.f.at("input.x"), DType::F32)), DType::F64);
  const double scale = ops::amax(ops::abs(g.f.at("expected.latents"))).item();
  EXPECT_TRUE(all_close(z32, g.f.at("expected.latents"), 1e-5 * scale, 1e-5));
}

TEST(Vae, EncoderRefusesBadImagesAndKeysInOneLine) {
  EncoderGolden g;
  nn::AutoencoderKLEncoder vae(g.cfg, {DType::F64});
  vae.load_state_dict(g.weights());
  EXPECT_TRUE(throws_error([&] { vae.encode(zeros({1, 3, 11, 20}, opts(DType::F64))); }, {"VAE encoder", "multiples of 2"}));
  EXPECT_TRUE(throws_error([&] { vae.encode(zeros({1, 4, 12, 20}, opts(DType::F64))); }, {"VAE encoder", "expects images [B, 3"}));
  EXPECT_TRUE(throws_error([&] { vae.encode(zeros({1, 3, 12, 20}, opts(DType::F64)), zeros({1, 4, 6, 9}, opts(DType::F64))); },
                           {"VAE encode", "noise"}));
  NamedTensors w = g.weights();
  NamedTensors missing(w.begin() + 1, w.end());
  EXPECT_TRUE(throws_error([&] { vae.load_state_dict(missing); }, {w[0].first.c_str()}));
  NamedTensors shaped = w;
  for (auto& [name, t] : shaped)
    if (name == "encoder.down_blocks.0.downsamplers.0.conv.weight") t = ops::narrow(t, 0, 0, 4);
  EXPECT_TRUE(throws_error([&] { vae.load_state_dict(shaped); }, {"encoder.down_blocks.0.downsamplers.0.conv.weight"}));
  EXPECT_TRUE(throws_error([] { nn::VaeConfig::from_json(R"({"block_out_channels": [32, 32], "down_block_types": ["Down", "Down"]})"); },
                           {"VAE config", "down block", "not supported"}));
  // SD3's encoder: 16 latent channels, no quant_conv; diffusers' parameter count
  nn::VaeConfig sd3;
  nn::LayerOptions deferred;
  deferred.deferred = true;
  nn::AutoencoderKLEncoder big(sd3, deferred);
  EXPECT_EQ(big.quant_conv, nullptr);
  EXPECT_EQ(big.num_parameters(), 34274208);  // diffusers 0.27: the encoder of SD3's config
}

// Activation checkpointing: the same outputs and gradients (inputs and every parameter, bit for
// bit), with a lower peak of host memory for the decoder's backward.
TEST(Vae, CheckpointingGivesTheSameGradientsWithLessMemory) {
  Golden g;
  nn::AutoencoderKLDecoder vae(g.cfg, {DType::F64});
  vae.load_state_dict(g.weights());
  vae.requires_grad_(true);
  const Tensor z0 = ops::upsample_nearest2d(g.f.at("input.z"), 4);  // [2, 4, 12, 20] latents -> [2, 3, 24, 40] images
  auto run = [&](bool ck) {
    vae.set_checkpointing(ck);
    std::vector<Tensor> wrt = vae.parameters(true);
    Tensor z = z0.detach().requires_grad_(true);
    wrt.insert(wrt.begin(), z);
    reset_host_peak_memory();
    const size_t base = host_memory_stats().allocated_bytes;
    Tensor out = vae.decode(z);
    auto gs = grad({ops::sum(ops::square(out))}, wrt);
    gs.push_back(out.detach());
    return std::pair{host_memory_stats().peak_allocated_bytes - base, gs};
  };
  auto [plain, g0] = run(false);
  auto [ckpt, g1] = run(true);
  ASSERT_EQ(g0.size(), g1.size());
  for (size_t i = 0; i < g0.size(); ++i) EXPECT_TRUE(all_close(g0[i], g1[i], 0, 0)) << "tensor " << i;
  std::printf("decoder forward+backward peak host memory: %zu bytes plain, %zu checkpointed\n", plain, ckpt);
  EXPECT_LT(static_cast<double>(ckpt), 0.6 * static_cast<double>(plain)) << "peak " << ckpt << " vs " << plain;
  // the encoder too
  EncoderGolden e;
  nn::AutoencoderKLEncoder enc(e.cfg, {DType::F64});
  enc.load_state_dict(e.weights());
  enc.requires_grad_(true);
  auto enc_grads = [&](bool ck) {
    enc.set_checkpointing(ck);
    std::vector<Tensor> wrt = enc.parameters(true);
    Tensor x = e.f.at("input.x").detach().requires_grad_(true);
    wrt.insert(wrt.begin(), x);
    return grad({ops::sum(ops::square(enc.encode(x)))}, wrt);
  };
  auto e0 = enc_grads(false), e1 = enc_grads(true);
  for (size_t i = 0; i < e0.size(); ++i) EXPECT_TRUE(all_close(e0[i], e1[i], 0, 0)) << "encoder tensor " << i;
}
