#include "nn/convert.h"

#include <map>
#include <set>

#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "tensor/error.h"

namespace vgg::nn {

namespace {

const std::string kStabilityPrefix = "model.diffusion_model.";

enum class Kind { Copy, Fuse, Swap };
struct Rule {
  std::string stab;
  std::vector<std::string> diff;  // one name, or q, k, v for Fuse
  Kind kind;
};

struct Structure {
  int64_t layers = 0;
  std::vector<bool> dual;
  bool qk = false;
};

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// The largest N + 1 over keys "<head>N.…" (0 when none).
int64_t count_blocks(const std::set<std::string>& keys, const std::string& head) {
  int64_t n = 0;
  for (const auto& k : keys) {
    if (!starts_with(k, head)) continue;
    size_t dot = k.find('.', head.size());
    if (dot == std::string::npos) continue;
    const std::string idx = k.substr(head.size(), dot - head.size());
    VGG_CHECK(!idx.empty() && idx.find_first_not_of("0123456789") == std::string::npos, "checkpoint: bad block key '",
              k, "'");
    n = std::max<int64_t>(n, std::stoll(idx) + 1);
  }
  return n;
}

// The block structure from one layout's keys: blocks "<head>N.", qk-norm when block 0 has
// `qk_key`, dual attention in the blocks that have `dual_key`.
Structure structure_of(const std::map<std::string, Tensor>& in, const std::string& head, const std::string& qk_key,
                       const std::string& dual_key, const char* what) {
  std::set<std::string> keys;
  for (const auto& [k, t] : in) keys.insert(k);
  Structure s;
  s.layers = count_blocks(keys, head);
  VGG_CHECK(s.layers > 0, what, ": no ", head, "* keys");
  s.qk = keys.count(head + "0." + qk_key) > 0;
  for (int64_t i = 0; i < s.layers; ++i) s.dual.push_back(keys.count(head + std::to_string(i) + "." + dual_key) > 0);
  return s;
}

std::vector<Rule> make_rules(const Structure& s) {
  std::vector<Rule> r;
  auto lin = [&](const std::string& stab, const std::string& diff, Kind k = Kind::Copy) {
    r.push_back({stab + ".weight", {diff + ".weight"}, k});
    r.push_back({stab + ".bias", {diff + ".bias"}, k});
  };
  auto qkv = [&](const std::string& stab, const std::string& q, const std::string& k, const std::string& v) {
    for (const char* suffix : {".weight", ".bias"}) r.push_back({stab + suffix, {q + suffix, k + suffix, v + suffix}, Kind::Fuse});
  };
  auto norm = [&](const std::string& stab, const std::string& diff) {
    r.push_back({stab + ".weight", {diff + ".weight"}, Kind::Copy});
  };
  r.push_back({"pos_embed", {"pos_embed.pos_embed"}, Kind::Copy});
  lin("x_embedder.proj", "pos_embed.proj");
  lin("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1");
  lin("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2");
  lin("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1");
  lin("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2");
  lin("context_embedder", "context_embedder");
  for (int64_t i = 0; i < s.layers; ++i) {
    const bool last = i == s.layers - 1;
    const std::string sb = "joint_blocks." + std::to_string(i) + ".", db = "transformer_blocks." + std::to_string(i) + ".";
    const std::string x = sb + "x_block.", c = sb + "context_block.";
    lin(x + "adaLN_modulation.1", db + "norm1.linear");
    lin(c + "adaLN_modulation.1", db + "norm1_context.linear", last ? Kind::Swap : Kind::Copy);
    qkv(x + "attn.qkv", db + "attn.to_q", db + "attn.to_k", db + "attn.to_v");
    qkv(c + "attn.qkv", db + "attn.add_q_proj", db + "attn.add_k_proj", db + "attn.add_v_proj");
    lin(x + "attn.proj", db + "attn.to_out.0");
    if (!last) lin(c + "attn.proj", db + "attn.to_add_out");
    if (s.qk) {
      norm(x + "attn.ln_q", db + "attn.norm_q");
      norm(x + "attn.ln_k", db + "attn.norm_k");
      norm(c + "attn.ln_q", db + "attn.norm_added_q");
      norm(c + "attn.ln_k", db + "attn.norm_added_k");
    }
    if (s.dual[static_cast<size_t>(i)]) {
      qkv(x + "attn2.qkv", db + "attn2.to_q", db + "attn2.to_k", db + "attn2.to_v");
      lin(x + "attn2.proj", db + "attn2.to_out.0");
      if (s.qk) {
        norm(x + "attn2.ln_q", db + "attn2.norm_q");
        norm(x + "attn2.ln_k", db + "attn2.norm_k");
      }
    }
    lin(x + "mlp.fc1", db + "ff.net.0.proj");
    lin(x + "mlp.fc2", db + "ff.net.2");
    if (!last) {
      lin(c + "mlp.fc1", db + "ff_context.net.0.proj");
      lin(c + "mlp.fc2", db + "ff_context.net.2");
    }
  }
  lin("final_layer.linear", "proj_out");
  lin("final_layer.adaLN_modulation.1", "norm_out.linear", Kind::Swap);
  return r;
}

// (a; b) -> (b; a) along dim 0, for weights [2D, D] and biases [2D]
Tensor swap_halves(const Tensor& t, const std::string& name) {
  VGG_CHECK(t.dim() >= 1 && t.size(0) % 2 == 0, "checkpoint: '", name, "' ", describe(t),
            " cannot be split into (scale, shift) halves");
  const int64_t h = t.size(0) / 2;
  return ops::cat({ops::narrow(t, 0, h, h), ops::narrow(t, 0, 0, h)}, 0);
}

std::map<std::string, Tensor> to_map(const NamedTensors& sd, const char* what) {
  std::map<std::string, Tensor> m;
  for (const auto& [k, t] : sd) VGG_CHECK(m.emplace(k, t).second, what, ": key '", k, "' appears twice");
  return m;
}

}  // namespace

CheckpointLayout detect_layout(const NamedTensors& sd) {
  for (const auto& [k, t] : sd) {
    std::string s = starts_with(k, kStabilityPrefix) ? k.substr(kStabilityPrefix.size()) : k;
    if (starts_with(s, "transformer_blocks.") || s == "pos_embed.proj.weight") return CheckpointLayout::Diffusers;
    if (starts_with(s, "joint_blocks.") || starts_with(s, "x_embedder.")) return CheckpointLayout::Stability;
  }
  VGG_FAIL("checkpoint: neither diffusers (transformer_blocks.*) nor Stability (joint_blocks.*) MMDiT keys found");
}

NamedTensors diffusers_to_stability(const NamedTensors& sd, const std::string& prefix) {
  auto in = to_map(sd, "diffusers_to_stability");
  const Structure s = structure_of(in, "transformer_blocks.", "attn.norm_q.weight", "attn2.to_q.weight",
                                   "diffusers_to_stability");
  NoGradGuard ng;
  NamedTensors out;
  std::set<std::string> used;
  for (const Rule& r : make_rules(s)) {
    std::vector<Tensor> parts;
    for (const auto& d : r.diff) {
      auto it = in.find(d);
      VGG_CHECK(it != in.end(), "diffusers_to_stability: missing key '", d, "'");
      parts.push_back(it->second);
      used.insert(d);
    }
    Tensor t;
    if (r.kind == Kind::Fuse)
      t = ops::cat(parts, 0);
    else if (r.kind == Kind::Swap)
      t = swap_halves(parts[0], r.diff[0]);
    else
      t = parts[0];
    out.emplace_back(prefix + r.stab, t);
  }
  for (const auto& [k, t] : in) VGG_CHECK(used.count(k), "diffusers_to_stability: unexpected key '", k, "'");
  return out;
}

NamedTensors stability_to_diffusers(const NamedTensors& sd, int64_t* skipped) {
  std::map<std::string, Tensor> in;
  int64_t skip = 0;
  const bool prefixed = [&] {
    for (const auto& [k, t] : sd)
      if (starts_with(k, kStabilityPrefix)) return true;
    return false;
  }();
  for (const auto& [k, t] : sd) {
    if (prefixed && !starts_with(k, kStabilityPrefix)) {
      ++skip;  // VAE, text encoders: not part of the transformer
      continue;
    }
    std::string s = prefixed ? k.substr(kStabilityPrefix.size()) : k;
    VGG_CHECK(in.emplace(s, t).second, "stability_to_diffusers: key '", k, "' appears twice");
  }
  if (skipped) *skipped = skip;
  const Structure s = structure_of(in, "joint_blocks.", "x_block.attn.ln_q.weight", "x_block.attn2.qkv.weight",
                                   "stability_to_diffusers");
  NoGradGuard ng;
  NamedTensors out;
  std::set<std::string> used;
  for (const Rule& r : make_rules(s)) {
    auto it = in.find(r.stab);
    VGG_CHECK(it != in.end(), "stability_to_diffusers: missing key '", r.stab, "'");
    used.insert(r.stab);
    const Tensor& t = it->second;
    if (r.kind == Kind::Fuse) {
      VGG_CHECK(t.dim() >= 1 && t.size(0) % 3 == 0, "stability_to_diffusers: '", r.stab, "' ", describe(t),
                " is not a fused q|k|v tensor");
      const int64_t n = t.size(0) / 3;
      for (int64_t j = 0; j < 3; ++j) out.emplace_back(r.diff[static_cast<size_t>(j)], ops::contiguous(ops::narrow(t, 0, j * n, n)));
    } else if (r.kind == Kind::Swap) {
      out.emplace_back(r.diff[0], swap_halves(t, r.stab));
    } else {
      out.emplace_back(r.diff[0], t);
    }
  }
  for (const auto& [k, t] : in) VGG_CHECK(used.count(k), "stability_to_diffusers: unexpected key '", k, "'");
  return out;
}

}  // namespace vgg::nn
