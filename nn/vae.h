// The AutoencoderKL of SD3/SD3.5 (diffusers `AutoencoderKL`: its `Decoder` and `Encoder`), with
// diffusers' parameter names.
//   decoder: conv_in → mid_block (resnet, single-head attention with group norm, resnet) →
//            up_blocks (resnets, nearest 2x upsampling + conv except in the last) → group norm,
//            SiLU, conv_out. decode(latents) undoes the pipeline's latent scaling:
//            z / scaling_factor + shift_factor, then the optional post_quant_conv (SD3 has none).
//   encoder: conv_in → down_blocks (resnets, then except in the last a stride-2 conv after a
//            zero pad of one row and column on the bottom/right) → mid_block → group norm, SiLU,
//            conv_out to 2·latent_channels (mean and log-variance), the optional quant_conv;
//            encode(images in [-1, 1]) gives (mean − shift_factor)·scaling_factor, or a sample
//            mean + e^{logvar/2}·ε of the posterior (logvar clamped to [-30, 20]) scaled alike.
// Config from diffusers' vae/config.json. Activation checkpointing (set_checkpointing) recomputes
// each resnet, attention and resampling stage in backward: the decoder's memory at 1024² falls
// from every intermediate to one per stage.
// (tests/nn/test_vae.cpp holds both halves to diffusers on a tiny random config: tools/golden/vae.py.)
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "nn/layers.h"

namespace vgg::nn {

struct VaeConfig {
  int64_t latent_channels = 16, out_channels = 3, in_channels = 3;
  std::vector<int64_t> block_out_channels = {128, 256, 512, 512};
  int64_t layers_per_block = 2, norm_num_groups = 32;
  bool mid_block_add_attention = true, use_post_quant_conv = false, use_quant_conv = false;
  double scaling_factor = 1.5305, shift_factor = 0.0609;  // SD3 / SD3.5
  void validate() const;  // one line naming the bad field
  static VaeConfig from_json(const std::string& json_text);  // diffusers vae/config.json
};

class GroupNorm : public Module {
 public:
  GroupNorm(int64_t groups, int64_t channels, double eps, LayerOptions o = {});
  std::string type_name() const override { return "GroupNorm"; }
  void reset_parameters(Generator* gen) override;
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  int64_t groups, channels;
  double eps;
};

class ResnetBlock2D : public Module {  // "resnets.i"
 public:
  ResnetBlock2D(int64_t in, int64_t out, int64_t groups, double eps, LayerOptions o = {});
  std::string type_name() const override { return "ResnetBlock2D"; }
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<GroupNorm> norm1, norm2;
  std::shared_ptr<Conv2d> conv1, conv2, conv_shortcut;  // conv_shortcut only when in != out
};

class VaeAttention : public Module {  // "attentions.0": one head over the H·W positions
 public:
  VaeAttention(int64_t channels, int64_t groups, double eps, LayerOptions o = {});
  std::string type_name() const override { return "Attention"; }
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<GroupNorm> group_norm;
  std::shared_ptr<Linear> to_q, to_k, to_v, to_out;  // to_out is "to_out.0"
};

// The encoder's and decoder's "mid_block" (diffusers UNetMidBlock2D without time embedding):
// resnet, optional single-head attention, resnet.
class VaeMidBlock : public Module {
 public:
  VaeMidBlock(int64_t channels, bool attention, int64_t groups, double eps, LayerOptions o = {});
  std::string type_name() const override { return "UNetMidBlock2D"; }
  // checkpointing: each of the three stages is recomputed in backward
  Tensor forward(const Tensor& x, bool checkpointing = false) const;
  std::shared_ptr<ResnetBlock2D> resnet0, resnet1;  // "resnets.0", "resnets.1"
  std::shared_ptr<VaeAttention> attention;          // "attentions.0" (null without attention)
};

class UpDecoderBlock2D : public Module {  // "up_blocks.i"
 public:
  UpDecoderBlock2D(int64_t in, int64_t out, int64_t layers, bool upsample, int64_t groups, double eps,
                   LayerOptions o = {});
  std::string type_name() const override { return "UpDecoderBlock2D"; }
  // checkpointing: each resnet and the upsampling stage are recomputed in backward
  Tensor forward(const Tensor& x, bool checkpointing = false) const;
  std::vector<std::shared_ptr<ResnetBlock2D>> resnets;
  std::shared_ptr<Conv2d> upsample_conv;  // "upsamplers.0.conv", after a nearest 2x upsampling
};

class VaeDecoder : public Module {  // "decoder"
 public:
  explicit VaeDecoder(const VaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "Decoder"; }
  Tensor forward(const Tensor& z) const;  // z [B, latent_channels, h, w] -> [B, out_channels, 2^k·h, 2^k·w]
  bool checkpointing = false;             // recompute each stage in backward (see the top)
  std::shared_ptr<Conv2d> conv_in, conv_out;
  std::shared_ptr<VaeMidBlock> mid_block;
  std::vector<std::shared_ptr<UpDecoderBlock2D>> up_blocks;
  std::shared_ptr<GroupNorm> conv_norm_out;
};

// The decoding half of AutoencoderKL: "decoder.*" and, when configured, "post_quant_conv.*".
class AutoencoderKLDecoder : public Module {
 public:
  explicit AutoencoderKLDecoder(const VaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "AutoencoderKL"; }
  // latents as the transformer produces them: z / scaling_factor + shift_factor, then the decoder
  Tensor decode(const Tensor& latents) const;
  const VaeConfig& config() const { return cfg_; }
  void set_checkpointing(bool on) { decoder->checkpointing = on; }
  std::shared_ptr<VaeDecoder> decoder;
  std::shared_ptr<Conv2d> post_quant_conv;

 private:
  VaeConfig cfg_;
};

class DownEncoderBlock2D : public Module {  // "down_blocks.i"
 public:
  DownEncoderBlock2D(int64_t in, int64_t out, int64_t layers, bool downsample, int64_t groups, double eps,
                     LayerOptions o = {});
  std::string type_name() const override { return "DownEncoderBlock2D"; }
  // checkpointing: each resnet and the downsampling stage are recomputed in backward
  Tensor forward(const Tensor& x, bool checkpointing = false) const;
  std::vector<std::shared_ptr<ResnetBlock2D>> resnets;
  std::shared_ptr<Conv2d> downsample_conv;  // "downsamplers.0.conv": stride 2 after a (0, 1, 0, 1) zero pad
};

class VaeEncoder : public Module {  // "encoder"
 public:
  explicit VaeEncoder(const VaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "Encoder"; }
  // x [B, in_channels, H, W] (H, W multiples of 2^(blocks−1)) -> moments [B, 2·latent_channels, h, w]
  Tensor forward(const Tensor& x) const;
  bool checkpointing = false;
  std::shared_ptr<Conv2d> conv_in, conv_out;
  std::vector<std::shared_ptr<DownEncoderBlock2D>> down_blocks;
  std::shared_ptr<VaeMidBlock> mid_block;
  std::shared_ptr<GroupNorm> conv_norm_out;
};

// The encoding half of AutoencoderKL: "encoder.*" and, when configured, "quant_conv.*".
class AutoencoderKLEncoder : public Module {
 public:
  explicit AutoencoderKLEncoder(const VaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "AutoencoderKL"; }
  struct Posterior {
    Tensor mean, logvar;  // [B, latent_channels, h, w], unscaled; logvar clamped to [-30, 20]
  };
  Posterior posterior(const Tensor& images) const;
  // Latents as the transformer sees them: (mean − shift_factor)·scaling_factor, or with `noise`
  // (the shape of the mean) the sample mean + e^{logvar/2}·noise scaled alike.
  Tensor encode(const Tensor& images, const Tensor& noise = Tensor()) const;
  const VaeConfig& config() const { return cfg_; }
  void set_checkpointing(bool on) { encoder->checkpointing = on; }
  std::shared_ptr<VaeEncoder> encoder;
  std::shared_ptr<Conv2d> quant_conv;

 private:
  VaeConfig cfg_;
};

// AutoencoderTiny's decoder (TAESD3, what the official VGG-Flow code decodes rewards with): diffusers'
// DecoderTiny, "decoder.layers.<i>" numbered as its nn.Sequential: conv + ReLU, then per block
// num_blocks residual blocks (conv.0/2/4 with ReLUs, skip when widths differ, ReLU after the sum),
// a nearest upsampling and a bias-free conv except after the last, whose conv (with bias) gives the
// image; tanh(z/3)·3 on entry, 2x − 1 on exit.
struct TinyVaeConfig {
  int64_t latent_channels = 16, out_channels = 3, upsampling_scaling_factor = 2;
  std::vector<int64_t> block_out_channels = {64, 64, 64, 64}, num_blocks = {3, 3, 3, 1};
  double scaling_factor = 1.5305, shift_factor = 0.0609;  // TAESD3
  void validate() const;
  // diffusers' AutoencoderTiny config.json (decoder_block_out_channels, num_decoder_blocks, ...)
  static TinyVaeConfig from_json(const std::string& json_text);
};

class TinyBlock : public Module {  // AutoencoderTinyBlock
 public:
  TinyBlock(int64_t in, int64_t out, LayerOptions o = {});
  std::string type_name() const override { return "AutoencoderTinyBlock"; }
  Tensor forward(const Tensor& x) const;
  std::shared_ptr<Conv2d> conv0, conv2, conv4, skip;  // "conv.0", "conv.2", "conv.4", "skip"
};

class TinyDecoder : public Module {  // "decoder"
 public:
  explicit TinyDecoder(const TinyVaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "DecoderTiny"; }
  Tensor forward(const Tensor& z) const;
  struct Layer {
    std::shared_ptr<Conv2d> conv;     // a convolution, or
    std::shared_ptr<TinyBlock> block;  // a residual block, or neither: a nearest upsampling
  };
  std::vector<Layer> layers;

 private:
  TinyVaeConfig cfg_;
};

class AutoencoderTinyDecoder : public Module {
 public:
  explicit AutoencoderTinyDecoder(const TinyVaeConfig& c, LayerOptions o = {});
  std::string type_name() const override { return "AutoencoderTiny"; }
  Tensor decode(const Tensor& latents) const;  // z / scaling_factor + shift_factor, then the decoder
  std::shared_ptr<TinyDecoder> decoder;

 private:
  TinyVaeConfig cfg_;
};

}  // namespace vgg::nn
