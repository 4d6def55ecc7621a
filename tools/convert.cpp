// vgg_convert — MMDiT checkpoints between the diffusers and Stability layouts, and fresh
// checkpoints of a named config.
//
//   vgg_convert IN.safetensors OUT.safetensors [--to diffusers|stability] [--dtype keep|f32|f64|bf16]
//               [--prefix P] [--force]
//       Converts (default --to: the other layout than IN's). Stability output keys carry the
//       single-file prefix "model.diffusion_model." unless --prefix says otherwise. Tensors are
//       written sorted by name, so equal contents give byte-identical files.
//   vgg_convert init CONFIG OUT.safetensors [--seed S] [--dtype f32|f64|bf16] [--force]
//       Writes a freshly initialised model of CONFIG (a name such as tiny, or a config.json).
//   vgg_convert info IN.safetensors
//       Prints the layout, tensor count, element count and the inferred structure.
//   vgg_convert folder SINGLE.safetensors OUT_DIR [--config NAME|config.json] [--vae-config config.json]
//               [--shift S] [--dtype keep|f32|bf16] [--force]
//       A Stability single-file SD3 / SD3.5 checkpoint (MMDiT + VAE, text encoders skipped) as a
//       diffusers folder vgg_train --pipeline sd3 --model reads (nn/single_file.h). The configs are
//       inferred from the weights unless given; the scheduler's shift defaults to 3.
//
// OUT is never overwritten without --force. Usage errors: one line, exit 2; runtime errors: one
// line, exit 1.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "nn/convert.h"
#include "nn/mmdit.h"
#include "nn/single_file.h"
#include "tensor/error.h"
#include "tensor/factory.h"
#include "tensor/safetensors.h"

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr const char* kUsage =
    "usage: vgg_convert IN OUT [--to diffusers|stability] [--dtype keep|f32|f64|bf16] [--prefix P] [--force]\n"
    "       vgg_convert init CONFIG OUT [--seed S] [--dtype f32|f64|bf16] [--force]\n"
    "       vgg_convert info IN\n"
    "       vgg_convert folder SINGLE.safetensors OUT_DIR [--config NAME|config.json] [--vae-config config.json] [--shift S]\n"
    "                   [--dtype keep|f32|bf16] [--force]\n";

vgg::DType parse_dtype(const std::string& s) {
  if (s == "f32") return vgg::DType::F32;
  if (s == "f64") return vgg::DType::F64;
  if (s == "bf16") return vgg::DType::BF16;
  throw UsageError("--dtype must be keep, f32, f64 or bf16, got '" + s + "'");
}

void write_sorted(const std::string& out, vgg::nn::NamedTensors sd, const std::map<std::string, std::string>& meta,
                  bool force) {
  if (std::filesystem::exists(out) && !force)
    throw std::runtime_error(out + " exists (use --force to overwrite)");
  std::sort(sd.begin(), sd.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  vgg::save_safetensors(out, sd, meta);
}

std::string read_text(const std::string& path, const std::string& what) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + what + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

vgg::nn::MMDiTConfig config_from(const std::string& s) {
  if (s.size() > 5 && s.substr(s.size() - 5) == ".json") return vgg::nn::MMDiTConfig::from_json(read_text(s, "config "));
  return vgg::nn::MMDiTConfig::named(s);
}

int run(int argc, char** argv) {
  std::vector<std::string> pos;
  std::string to, dtype = "keep", prefix = "model.diffusion_model.", config, vae_config;
  double shift = 3.0;
  bool shift_given = false;
  bool force = false;
  uint64_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--help" || a == "-h") {
      std::printf("%s", kUsage);
      return 0;
    } else if (a == "--to") {
      to = value();
      if (to != "diffusers" && to != "stability") throw UsageError("--to must be diffusers or stability, got '" + to + "'");
    } else if (a == "--dtype") {
      dtype = value();
      if (dtype != "keep") parse_dtype(dtype);
    } else if (a == "--prefix") {
      prefix = value();
    } else if (a == "--seed") {
      std::string v = value();
      const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), seed, 10);
      if (v.empty() || v[0] == '-' || ec != std::errc() || end != v.data() + v.size())
        throw UsageError("--seed must be an integer in [0, 2^64), got '" + v + "'");
    } else if (a == "--config") {
      config = value();
    } else if (a == "--vae-config") {
      vae_config = value();
    } else if (a == "--shift") {
      const std::string v = value();
      char* end = nullptr;
      shift = std::strtod(v.c_str(), &end);
      if (v.empty() || *end != '\0' || !std::isfinite(shift) || shift <= 0)
        throw UsageError("--shift must be a positive number, got '" + v + "'");
      shift_given = true;
    } else if (a == "--force") {
      force = true;
    } else if (a.size() > 1 && a[0] == '-') {
      throw UsageError("unknown flag " + a);
    } else {
      pos.push_back(a);
    }
  }
  if (!pos.empty() && pos[0] == "info") {
    if (pos.size() != 2) throw UsageError("info takes one file");
    auto f = vgg::load_safetensors(pos[1]);
    vgg::nn::NamedTensors sd(f.tensors.begin(), f.tensors.end());
    auto layout = vgg::nn::detect_layout(sd);
    int64_t n = 0;
    for (auto& [k, t] : sd) n += t.numel();
    std::printf("%s: %s layout, %zu tensors, %lld elements\n", pos[1].c_str(),
                layout == vgg::nn::CheckpointLayout::Diffusers ? "diffusers" : "Stability", sd.size(),
                static_cast<long long>(n));
    return 0;
  }
  if (!pos.empty() && pos[0] == "folder") {
    if (pos.size() != 3) throw UsageError("folder takes SINGLE.safetensors and OUT_DIR");
    vgg::nn::SingleFileOptions o;
    if (!config.empty()) o.transformer = config_from(config);
    if (!vae_config.empty()) o.vae = vgg::nn::VaeConfig::from_json(read_text(vae_config, "VAE config "));
    o.shift = shift;
    if (dtype != "keep") o.dtype = parse_dtype(dtype);
    o.force = force;
    const vgg::nn::SingleFileReport r = vgg::nn::single_file_to_diffusers_folder(pos[1], pos[2], o);
    std::printf("wrote %s: transformer (%lld tensors, %lld layers, width %lld%s), vae (%lld tensors), scheduler shift %g",
                pos[2].c_str(), static_cast<long long>(r.transformer_tensors),
                static_cast<long long>(r.transformer.num_layers), static_cast<long long>(r.transformer.dim()),
                r.transformer.qk_norm ? ", qk-norm" : "", static_cast<long long>(r.vae_tensors), shift);
    if (r.skipped) std::printf("; %lld other tensors (text encoders) skipped", static_cast<long long>(r.skipped));
    std::printf("\n");
    return 0;
  }
  if (!config.empty() || !vae_config.empty() || shift_given) throw UsageError("--config, --vae-config and --shift belong to 'folder'");
  if (!pos.empty() && pos[0] == "init") {
    if (pos.size() != 3) throw UsageError("init takes CONFIG and OUT");
    auto cfg = config_from(pos[1]);
    vgg::DType dt = dtype == "keep" ? vgg::DType::F32 : parse_dtype(dtype);
    vgg::nn::LayerOptions o;
    o.deferred = true;
    vgg::nn::MMDiT m(cfg, o);
    vgg::Generator g(seed);
    m.materialize(dt, vgg::Device::cpu(), &g);
    write_sorted(pos[2], m.state_dict(), {{"format", "pt"}, {"config", cfg.to_json()}}, force);
    std::printf("wrote %s: %lld parameters\n", pos[2].c_str(), static_cast<long long>(m.num_parameters()));
    return 0;
  }
  if (pos.size() != 2) throw UsageError("expected IN and OUT files (see --help)");
  auto f = vgg::load_safetensors(pos[0]);
  vgg::nn::NamedTensors sd(f.tensors.begin(), f.tensors.end());
  if (dtype != "keep") {
    vgg::DType dt = parse_dtype(dtype);
    for (auto& [k, t] : sd)
      if (vgg::is_floating(t.dtype())) t = vgg::cast_raw(t, dt);
  }
  auto layout = vgg::nn::detect_layout(sd);
  if (to.empty()) to = layout == vgg::nn::CheckpointLayout::Diffusers ? "stability" : "diffusers";
  vgg::nn::NamedTensors out;
  int64_t skipped = 0;
  if (to == "stability")
    out = layout == vgg::nn::CheckpointLayout::Stability ? sd : vgg::nn::diffusers_to_stability(sd, prefix);
  else
    out = layout == vgg::nn::CheckpointLayout::Diffusers ? sd : vgg::nn::stability_to_diffusers(sd, &skipped);
  auto meta = f.metadata;
  meta["format"] = "pt";
  write_sorted(pos[1], out, meta, force);
  std::printf("wrote %s: %zu tensors in the %s layout", pos[1].c_str(), out.size(), to.c_str());
  if (skipped) std::printf(" (%lld non-transformer tensors skipped)", static_cast<long long>(skipped));
  std::printf("\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "vgg_convert: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_convert: %s\n", e.what());
    return 1;
  }
}
