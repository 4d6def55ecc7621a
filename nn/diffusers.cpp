#include "nn/diffusers.h"

#include <filesystem>
#include <map>
#include <set>

#include "tensor/error.h"
#include "tensor/json.h"
#include "tensor/safetensors.h"

namespace fs = std::filesystem;

namespace vgg::nn {

namespace {

constexpr const char* kWeights = "diffusion_pytorch_model.safetensors";
constexpr const char* kIndex = "diffusion_pytorch_model.safetensors.index.json";

std::string need_file(const fs::path& p, const std::string& what) {
  VGG_CHECK(fs::is_regular_file(p), "diffusers folder: ", p.string(), " is missing (", what, ")");
  return p.string();
}

std::string read_text(const std::string& path) {
  return read_json_file(path).dump();  // strict parse, errors name the file; re-dumped for from_json
}

// The weight files of a component: the single file, or the shards its index names (in index order).
std::vector<std::string> weight_files(const fs::path& dir, std::map<std::string, std::string>* weight_map) {
  if (fs::is_regular_file(dir / kWeights)) return {(dir / kWeights).string()};
  const std::string index = need_file(dir / kIndex, std::string("the component's weights: ") + kWeights + " or its shard index");
  const nlohmann::json j = read_json_file(index);
  VGG_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object() && !j["weight_map"].empty(),
            index, ": needs a non-empty object \"weight_map\" {tensor: shard file}");
  std::vector<std::string> files;
  std::set<std::string> seen;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    VGG_CHECK(it.value().is_string(), index, ": the shard of '", it.key(), "' must be a file name, got ", it.value().dump());
    const std::string shard = it.value().get<std::string>();
    VGG_CHECK(!shard.empty() && shard.find('/') == std::string::npos && shard != "." && shard != "..", index,
              ": shard name '", shard, "' of '", it.key(), "' is not a file name in the folder");
    (*weight_map)[it.key()] = shard;
    if (seen.insert(shard).second) files.push_back(need_file(dir / shard, "a shard named by " + index));
  }
  return files;
}

}  // namespace

DiffusersFolder read_diffusers_folder(const std::string& dir) {
  const fs::path d(dir);
  VGG_CHECK(fs::is_directory(d), "diffusers folder ", dir, " does not exist");
  DiffusersFolder f;
  f.root = dir;
  const nlohmann::json mi = read_json_file(need_file(d / "model_index.json", "the pipeline's index"));
  VGG_CHECK(mi.is_object(), (d / "model_index.json").string(), ": must be a JSON object");
  f.pipeline_class = mi.value("_class_name", "");
  for (const char* c : {"transformer", "vae", "scheduler"})
    VGG_CHECK(mi.contains(c), (d / "model_index.json").string(), ": names no '", c, "' component (an SD3 pipeline has one)");
  f.transformer = MMDiTConfig::from_json(read_text(need_file(d / "transformer" / "config.json", "the transformer's config")));
  f.vae = VaeConfig::from_json(read_text(need_file(d / "vae" / "config.json", "the VAE's config")));
  const std::string sc = need_file(d / "scheduler" / "scheduler_config.json", "the scheduler's config");
  const nlohmann::json s = read_json_file(sc);
  VGG_CHECK(s.is_object(), sc, ": must be a JSON object");
  if (s.contains("shift")) {
    VGG_CHECK(s["shift"].is_number() && s["shift"].get<double>() > 0 && s["shift"].get<double>() < 1e6, sc,
              ": 'shift' must be a positive number, got ", s["shift"].dump());
    f.shift = s["shift"].get<double>();
  }
  if (s.contains("num_train_timesteps")) {
    VGG_CHECK(s["num_train_timesteps"].is_number_integer() && s["num_train_timesteps"].get<int64_t>() > 0, sc,
              ": 'num_train_timesteps' must be a positive integer");
    f.num_train_timesteps = s["num_train_timesteps"].get<int64_t>();
  }
  std::map<std::string, std::string> wm;
  weight_files(d / "transformer", &wm);  // located now: a missing shard is reported before any loading
  weight_files(d / "vae", &wm);
  return f;
}

NamedTensors load_component_weights(const std::string& component_dir) {
  std::map<std::string, std::string> wm;
  const std::vector<std::string> files = weight_files(fs::path(component_dir), &wm);
  NamedTensors out;
  std::map<std::string, std::string> where;  // key -> the shard it came from
  for (const std::string& file : files) {
    SafetensorsFile sf = load_safetensors(file);
    const std::string shard = fs::path(file).filename().string();
    for (auto& [name, t] : sf.tensors) {
      const auto [it, fresh] = where.emplace(name, shard);
      VGG_CHECK(fresh, component_dir, ": tensor '", name, "' is in two shards (", it->second, ", ", shard, ")");
      if (!wm.empty()) {
        const auto m = wm.find(name);
        VGG_CHECK(m != wm.end(), file, ": tensor '", name, "' is not in the shard index");
        VGG_CHECK(m->second == shard, file, ": tensor '", name, "' is indexed in ", m->second);
      }
      out.emplace_back(name, t);
    }
  }
  for (const auto& [name, shard] : wm)
    VGG_CHECK(where.count(name), (fs::path(component_dir) / shard).string(), ": tensor '", name,
              "' named by the shard index is missing");
  return out;
}

std::shared_ptr<MMDiT> load_diffusers_transformer(const DiffusersFolder& f, LayerOptions o) {
  auto net = std::make_shared<MMDiT>(f.transformer, o);
  net->load_state_dict(load_component_weights((fs::path(f.root) / "transformer").string()));  // strict
  return net;
}

std::shared_ptr<AutoencoderKLDecoder> load_diffusers_vae_decoder(const DiffusersFolder& f, LayerOptions o) {
  auto vae = std::make_shared<AutoencoderKLDecoder>(f.vae, o);
  NamedTensors keep;
  for (auto& [name, t] : load_component_weights((fs::path(f.root) / "vae").string()))
    if (name.rfind("decoder.", 0) == 0 || name.rfind("post_quant_conv.", 0) == 0) keep.emplace_back(name, t);
  vae->load_state_dict(keep);  // strict over the decoding half
  return vae;
}

std::shared_ptr<AutoencoderTinyDecoder> load_tiny_vae_decoder(const std::string& dir, LayerOptions o) {
  const fs::path d(dir);
  VGG_CHECK(fs::is_directory(d), "AutoencoderTiny folder ", dir, " does not exist");
  const TinyVaeConfig c = TinyVaeConfig::from_json(read_text(need_file(d / "config.json", "the AutoencoderTiny config")));
  auto vae = std::make_shared<AutoencoderTinyDecoder>(c, o);
  NamedTensors keep;
  for (auto& [name, t] : load_component_weights(dir))
    if (name.rfind("decoder.", 0) == 0) keep.emplace_back(name, t);
  vae->load_state_dict(keep);
  return vae;
}

}  // namespace vgg::nn
