#include "nn/single_file.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/convert.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"

namespace fs = std::filesystem;

namespace vgg::nn {

namespace {

const std::string kVaePrefix = "first_stage_model.";
const std::string kTransformerPrefix = "model.diffusion_model.";

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// The resolution levels of a VAE state dict: the largest block index + 1 over keys like
// "<side>.<word>.<i>." (LDM) or "<side>.<word>_blocks.<i>." (diffusers).
int64_t levels(const NamedTensors& sd, const std::string& prefix) {
  int64_t n = 0;
  for (const auto& [k, t] : sd)
    if (starts_with(k, prefix)) n = std::max<int64_t>(n, std::atoll(k.c_str() + prefix.size()) + 1);
  return n;
}

// The names inside a resnet, an attention and the mid block, one side of the mapping each.
const std::vector<std::pair<std::string, std::string>> kResnetParts = {
    {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."}, {"nin_shortcut.", "conv_shortcut."}};
const std::vector<std::pair<std::string, std::string>> kAttentionParts = {
    {"norm.", "group_norm."}, {"q.", "to_q."}, {"k.", "to_k."}, {"v.", "to_v."}, {"proj_out.", "to_out.0."}};

// LDM -> diffusers prefixes for a VAE with n levels (each rule maps a block prefix; the part
// inside the block maps through kResnetParts / kAttentionParts).
struct Block {
  std::string ldm, diff;
  bool attention;
};
std::vector<Block> vae_blocks(int64_t n_enc, int64_t n_dec) {
  std::vector<Block> b;
  for (int64_t i = 0; i < n_enc; ++i)
    b.push_back({"encoder.down." + std::to_string(i) + ".block.", "encoder.down_blocks." + std::to_string(i) + ".resnets.", false});
  for (int64_t i = 0; i < n_dec; ++i)
    b.push_back({"decoder.up." + std::to_string(i) + ".block.",
                 "decoder.up_blocks." + std::to_string(n_dec - 1 - i) + ".resnets.", false});
  for (const char* side : {"encoder", "decoder"}) {
    const std::string s = side;
    b.push_back({s + ".mid.block_1.", s + ".mid_block.resnets.0.", false});
    b.push_back({s + ".mid.block_2.", s + ".mid_block.resnets.1.", false});
    b.push_back({s + ".mid.attn_1.", s + ".mid_block.attentions.0.", true});
  }
  return b;
}
std::vector<std::pair<std::string, std::string>> vae_whole(int64_t n_enc, int64_t n_dec) {
  std::vector<std::pair<std::string, std::string>> w;
  for (const char* side : {"encoder", "decoder"}) {
    const std::string s = side;
    w.push_back({s + ".conv_in.", s + ".conv_in."});
    w.push_back({s + ".conv_out.", s + ".conv_out."});
    w.push_back({s + ".norm_out.", s + ".conv_norm_out."});
  }
  w.push_back({"quant_conv.", "quant_conv."});
  w.push_back({"post_quant_conv.", "post_quant_conv."});
  for (int64_t i = 0; i < n_enc; ++i)
    w.push_back({"encoder.down." + std::to_string(i) + ".downsample.conv.",
                 "encoder.down_blocks." + std::to_string(i) + ".downsamplers.0.conv."});
  for (int64_t i = 0; i < n_dec; ++i)
    w.push_back({"decoder.up." + std::to_string(i) + ".upsample.conv.",
                 "decoder.up_blocks." + std::to_string(n_dec - 1 - i) + ".upsamplers.0.conv."});
  return w;
}

// key -> mapped key, or empty when no rule applies. to_diffusers picks the direction.
std::string map_vae_key(const std::string& k, int64_t n_enc, int64_t n_dec, bool to_diffusers, bool* attention) {
  *attention = false;
  auto side = [&](const auto& pr) -> const std::string& { return to_diffusers ? pr.first : pr.second; };
  auto other = [&](const auto& pr) -> const std::string& { return to_diffusers ? pr.second : pr.first; };
  for (const auto& pr : vae_whole(n_enc, n_dec)) {
    const std::string& from = side(pr);
    if (starts_with(k, from)) {
      const std::string rest = k.substr(from.size());
      if (rest == "weight" || rest == "bias") return other(pr) + rest;
    }
  }
  for (const Block& b : vae_blocks(n_enc, n_dec)) {
    const std::string& from = to_diffusers ? b.ldm : b.diff;
    const std::string& to = to_diffusers ? b.diff : b.ldm;
    if (!starts_with(k, from)) continue;
    std::string rest = k.substr(from.size());
    if (!b.attention) {  // "<j>.<part>.<weight|bias>" for level blocks, "<part>.…" for the mid resnets
      std::string j;
      if (!starts_with(b.ldm, "encoder.mid") && !starts_with(b.ldm, "decoder.mid")) {
        const size_t dot = rest.find('.');
        if (dot == std::string::npos || dot == 0 || rest.find_first_not_of("0123456789") != dot) return "";
        j = rest.substr(0, dot + 1);
        rest = rest.substr(dot + 1);
      }
      for (const auto& pr : kResnetParts)
        if (starts_with(rest, side(pr)) && (rest.substr(side(pr).size()) == "weight" || rest.substr(side(pr).size()) == "bias"))
          return to + j + other(pr) + rest.substr(side(pr).size());
      return "";
    }
    for (const auto& pr : kAttentionParts)
      if (starts_with(rest, side(pr)) && (rest.substr(side(pr).size()) == "weight" || rest.substr(side(pr).size()) == "bias")) {
        *attention = pr.first != "norm." && rest.substr(side(pr).size()) == "weight";
        return to + other(pr) + rest.substr(side(pr).size());
      }
    return "";
  }
  return "";
}

NamedTensors map_vae(const NamedTensors& sd, bool to_diffusers) {
  const int64_t n_enc = levels(sd, to_diffusers ? "encoder.down." : "encoder.down_blocks.");
  const int64_t n_dec = levels(sd, to_diffusers ? "decoder.up." : "decoder.up_blocks.");
  NamedTensors out;
  std::set<std::string> seen;
  for (const auto& [k, t] : sd) {
    bool attention = false;
    const std::string m = map_vae_key(k, n_enc, n_dec, to_diffusers, &attention);
    VGG_CHECK(!m.empty(), "'", k, "' is not ", to_diffusers ? "an LDM" : "a diffusers", " VAE key");
    VGG_CHECK(seen.insert(m).second, "two VAE keys map to '", m, "'");
    Tensor v = t;
    if (attention) {  // 1×1 convolution [C, C, 1, 1] <-> linear [C, C]
      if (to_diffusers) {
        VGG_CHECK((t.dim() == 4 && t.size(2) == 1 && t.size(3) == 1) || t.dim() == 2, "'", k,
                  "' must be a 1x1 convolution weight [C, C, 1, 1], got ", describe(t));
        if (t.dim() == 4) v = ops::reshape(t, {t.size(0), t.size(1)});
      } else {
        VGG_CHECK(t.dim() == 2, "'", k, "' must be a linear weight [C, C], got ", describe(t));
        v = ops::reshape(t, {t.size(0), t.size(1), 1, 1});
      }
    }
    out.emplace_back(m, v);
  }
  return out;
}

const Tensor& need(const NamedTensors& sd, const std::string& k, const std::string& what) {
  for (const auto& [n, t] : sd)
    if (n == k) return t;
  VGG_FAIL(what, ": no '", k, "'");
}
bool has(const NamedTensors& sd, const std::string& k) {
  return std::any_of(sd.begin(), sd.end(), [&](const auto& p) { return p.first == k; });
}

// Every tensor a module expects, with its shape, is in sd and nothing else is (besides the keys
// `extra` accepts); the first difference is named.
void check_against(const Module& m, const NamedTensors& sd, const std::string& what,
                   const std::function<bool(const std::string&)>& extra) {
  std::map<std::string, Shape> want;
  for (const auto& [k, t] : m.state_dict()) want[k] = t.shape();
  std::set<std::string> got;
  for (const auto& [k, t] : sd) {
    got.insert(k);
    auto it = want.find(k);
    if (it == want.end()) {
      VGG_CHECK(extra && extra(k), what, ": tensor '", k, "' does not belong to the config's model");
      continue;
    }
    VGG_CHECK(it->second == t.shape(), what, ": '", k, "' is ", describe(t), ", the config's model has ",
              shape_str(it->second));
  }
  for (const auto& [k, s] : want) VGG_CHECK(got.count(k), what, ": the config's model has '", k, "', the file does not");
}

void write_json(const fs::path& p, const nlohmann::json& j) {
  std::ofstream out(p);
  out << j.dump(2) << "\n";
  VGG_CHECK(out, "cannot write ", p.string());
}

void save_sorted(const fs::path& p, NamedTensors sd) {
  std::sort(sd.begin(), sd.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  save_safetensors(p.string(), sd, {{"format", "pt"}});
}

}  // namespace

NamedTensors ldm_vae_to_diffusers(const NamedTensors& sd) { return map_vae(sd, true); }
NamedTensors diffusers_vae_to_ldm(const NamedTensors& sd) { return map_vae(sd, false); }

VaeConfig infer_vae_config(const NamedTensors& sd) {
  const std::string what = "VAE weights";
  VaeConfig c;
  const int64_t n = levels(sd, "decoder.up_blocks.");
  VGG_CHECK(n >= 1, what, ": no 'decoder.up_blocks.*' (not an AutoencoderKL decoder)");
  const Tensor& cin = need(sd, "decoder.conv_in.weight", what);
  const Tensor& cout = need(sd, "decoder.conv_out.weight", what);
  VGG_CHECK(cin.dim() == 4 && cout.dim() == 4, what, ": decoder.conv_in / conv_out must be convolutions");
  c.latent_channels = cin.size(1);
  c.out_channels = cout.size(0);
  c.block_out_channels.clear();
  for (int64_t i = 0; i < n; ++i) {  // up_blocks.i has the width of level n−1−i
    const Tensor& w = need(sd, "decoder.up_blocks." + std::to_string(n - 1 - i) + ".resnets.0.conv2.weight", what);
    c.block_out_channels.push_back(w.size(0));
  }
  int64_t per = 0;
  while (has(sd, "decoder.up_blocks.0.resnets." + std::to_string(per) + ".conv1.weight")) ++per;
  c.layers_per_block = per - 1;  // the decoder has one resnet more per level than the encoder
  c.in_channels = has(sd, "encoder.conv_in.weight") ? need(sd, "encoder.conv_in.weight", what).size(1) : 3;
  c.mid_block_add_attention = has(sd, "decoder.mid_block.attentions.0.to_q.weight");
  c.use_quant_conv = has(sd, "quant_conv.weight");
  c.use_post_quant_conv = has(sd, "post_quant_conv.weight");
  c.norm_num_groups = 32;
  c.scaling_factor = 1.5305, c.shift_factor = 0.0609;
  return c;  // validated where it is used (the widths may not split into 32 groups)
}

MMDiTConfig infer_mmdit_config(const NamedTensors& sd) {
  const std::string what = "transformer weights";
  MMDiTConfig c;
  const Tensor& pe = need(sd, "pos_embed.proj.weight", what);
  VGG_CHECK(pe.dim() == 4 && pe.size(2) == pe.size(3), what, ": pos_embed.proj.weight must be [D, C, p, p], got ", describe(pe));
  const int64_t D = pe.size(0);
  c.patch_size = pe.size(2), c.in_channels = pe.size(1);
  c.num_layers = levels(sd, "transformer_blocks.");
  VGG_CHECK(c.num_layers >= 1, what, ": no 'transformer_blocks.*'");
  c.qk_norm = has(sd, "transformer_blocks.0.attn.norm_q.weight");
  c.attention_head_dim = c.qk_norm ? need(sd, "transformer_blocks.0.attn.norm_q.weight", what).size(0) : 64;
  VGG_CHECK(D % c.attention_head_dim == 0, what, ": width ", D, " is not a multiple of the head dimension ",
            c.attention_head_dim, " (pass the transformer's config)");
  c.num_attention_heads = D / c.attention_head_dim;
  c.caption_projection_dim = D;
  c.joint_attention_dim = need(sd, "context_embedder.weight", what).size(1);
  c.pooled_projection_dim = need(sd, "time_text_embed.text_embedder.linear_1.weight", what).size(1);
  c.out_channels = need(sd, "proj_out.weight", what).size(0) / (c.patch_size * c.patch_size);
  if (has(sd, "pos_embed.pos_embed")) {
    const Tensor& tab = need(sd, "pos_embed.pos_embed", what);
    const auto side = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(tab.size(tab.dim() - 2)))));
    VGG_CHECK(side * side == tab.size(tab.dim() - 2), what, ": the position table's ", tab.size(tab.dim() - 2),
              " rows are not a square");
    c.pos_embed_max_size = side;
  } else {
    c.pos_embed_max_size = 192;  // SD3 and SD3.5's
  }
  c.sample_size = 128;
  for (int64_t i = 0; i < c.num_layers; ++i)
    if (has(sd, "transformer_blocks." + std::to_string(i) + ".attn2.to_q.weight")) c.dual_attention_layers.push_back(i);
  c.validate();
  return c;
}

std::string vae_config_json(const VaeConfig& c) {
  const size_t n = c.block_out_channels.size();
  nlohmann::json j = {{"_class_name", "AutoencoderKL"},
                      {"in_channels", c.in_channels},
                      {"out_channels", c.out_channels},
                      {"latent_channels", c.latent_channels},
                      {"block_out_channels", c.block_out_channels},
                      {"down_block_types", std::vector<std::string>(n, "DownEncoderBlock2D")},
                      {"up_block_types", std::vector<std::string>(n, "UpDecoderBlock2D")},
                      {"layers_per_block", c.layers_per_block},
                      {"norm_num_groups", c.norm_num_groups},
                      {"act_fn", "silu"},
                      {"mid_block_add_attention", c.mid_block_add_attention},
                      {"use_quant_conv", c.use_quant_conv},
                      {"use_post_quant_conv", c.use_post_quant_conv},
                      {"scaling_factor", c.scaling_factor},
                      {"shift_factor", c.shift_factor}};
  return j.dump(2);
}

SingleFileReport single_file_to_diffusers_folder(const std::string& in, const std::string& out, const SingleFileOptions& o) {
  VGG_CHECK(std::isfinite(o.shift) && o.shift > 0, "the scheduler's shift must be positive, got ", o.shift);
  const fs::path dst(out);
  VGG_CHECK(!fs::exists(dst) || o.force, out, " exists (use --force to replace it)");
  SafetensorsFile f = load_safetensors(in);
  NamedTensors transformer_in, vae_ldm;
  SingleFileReport rep;
  for (auto& [k, t] : f.tensors) {
    Tensor v = o.dtype && is_floating(t.dtype()) ? cast_raw(t, *o.dtype) : t;
    if (starts_with(k, kTransformerPrefix))
      transformer_in.emplace_back(k, v);
    else if (starts_with(k, kVaePrefix))
      vae_ldm.emplace_back(k.substr(kVaePrefix.size()), v);
    else
      ++rep.skipped;
  }
  VGG_CHECK(!transformer_in.empty(), in, ": no '", kTransformerPrefix, "*' tensors (not a Stability single-file SD3 checkpoint)");
  VGG_CHECK(!vae_ldm.empty(), in, ": no '", kVaePrefix, "*' tensors (the VAE; a single file without it cannot decode)");
  NamedTensors transformer, vae;
  try {
    transformer = stability_to_diffusers(transformer_in);
  } catch (const Error& e) {
    VGG_FAIL(in, ": the transformer: ", e.what());
  }
  try {
    vae = ldm_vae_to_diffusers(vae_ldm);
  } catch (const Error& e) {
    VGG_FAIL(in, ": the VAE: ", e.what());
  }
  try {
    rep.transformer = o.transformer ? *o.transformer : infer_mmdit_config(transformer);
    rep.vae = o.vae ? *o.vae : infer_vae_config(vae);
    if (!o.vae)
      for (int64_t w : rep.vae.block_out_channels)
        VGG_CHECK(w % rep.vae.norm_num_groups == 0, "the VAE's width ", w, " does not split into SD3's ",
                  rep.vae.norm_num_groups, " norm groups: pass its config (--vae-config)");
    rep.vae.validate();
    LayerOptions lo;
    lo.deferred = true;  // shapes only
    MMDiT m(rep.transformer, lo);
    check_against(m, transformer, "the transformer", [](const std::string& k) { return k == "pos_embed.pos_embed"; });
    AutoencoderKLDecoder dec(rep.vae, lo);
    const bool has_encoder = std::any_of(vae.begin(), vae.end(), [](const auto& p) {
      return starts_with(p.first, "encoder.") || starts_with(p.first, "quant_conv.");
    });
    NamedTensors decoding;
    for (const auto& [k, t] : vae)
      if (!starts_with(k, "encoder.") && !starts_with(k, "quant_conv.")) decoding.emplace_back(k, t);
    check_against(dec, decoding, "the VAE's decoder", nullptr);
    if (has_encoder) {
      AutoencoderKLEncoder enc(rep.vae, lo);
      NamedTensors encoding;
      for (const auto& [k, t] : vae)
        if (starts_with(k, "encoder.") || starts_with(k, "quant_conv.")) encoding.emplace_back(k, t);
      check_against(enc, encoding, "the VAE's encoder", nullptr);
    }
  } catch (const Error& e) {
    VGG_FAIL(in, ": ", e.what());
  }
  rep.transformer_tensors = static_cast<int64_t>(transformer.size());
  rep.vae_tensors = static_cast<int64_t>(vae.size());

  // written beside OUT, then renamed into place
  const fs::path tmp = dst.parent_path() / (dst.filename().string() + ".partial");
  fs::remove_all(tmp);
  fs::create_directories(tmp / "transformer");
  fs::create_directories(tmp / "vae");
  fs::create_directories(tmp / "scheduler");
  write_json(tmp / "model_index.json", {{"_class_name", "StableDiffusion3Pipeline"},
                                        {"transformer", {"diffusers", "SD3Transformer2DModel"}},
                                        {"vae", {"diffusers", "AutoencoderKL"}},
                                        {"scheduler", {"diffusers", "FlowMatchEulerDiscreteScheduler"}}});
  nlohmann::json tc = nlohmann::json::parse(rep.transformer.to_json());
  tc["_class_name"] = "SD3Transformer2DModel";
  write_json(tmp / "transformer" / "config.json", tc);
  save_sorted(tmp / "transformer" / "diffusion_pytorch_model.safetensors", transformer);
  write_json(tmp / "vae" / "config.json", nlohmann::json::parse(vae_config_json(rep.vae)));
  save_sorted(tmp / "vae" / "diffusion_pytorch_model.safetensors", vae);
  write_json(tmp / "scheduler" / "scheduler_config.json",
             {{"_class_name", "FlowMatchEulerDiscreteScheduler"}, {"num_train_timesteps", 1000}, {"shift", o.shift}});
  if (fs::exists(dst)) fs::remove_all(dst);
  fs::rename(tmp, dst);
  return rep;
}

}  // namespace vgg::nn
