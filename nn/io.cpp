#include "nn/io.h"

#include <cmath>

#include "tensor/error.h"
#include "tensor/safetensors.h"

namespace vgg::nn {

void save_weights(const std::string& path, const Module& m, const std::map<std::string, std::string>& metadata) {
  auto meta = metadata;
  meta.emplace("format", "pt");
  save_safetensors(path, m.state_dict(), meta);
}

std::map<std::string, std::string> load_weights(const std::string& path, Module& m, bool strict) {
  SafetensorsFile f = load_safetensors(path);
  try {
    m.load_state_dict(f.tensors, strict);
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
  return f.metadata;
}

void save_lora(const std::string& path, Module& m, const std::string& prefix) {
  save_safetensors(path, lora_state_dict(m, prefix), lora_metadata(m));
}

void load_lora(const std::string& path, Module& m, const std::string& prefix) {
  SafetensorsFile f = load_safetensors(path);
  auto mods = lora_modules(m);
  VGG_CHECK(!mods.empty(), path, ": the model carries no adapters (attach them first)");
  // diffusers files without rank/alpha mean alpha = rank; when present they must agree
  auto have = lora_metadata(m);
  for (const char* key : {"lora_rank", "lora_alpha"}) {
    auto it = f.metadata.find(key);
    if (it == f.metadata.end()) continue;
    double a = 0;
    try {
      size_t used = 0;
      a = std::stod(it->second, &used);
      if (used != it->second.size()) throw std::invalid_argument(key);
    } catch (const std::exception&) {
      VGG_FAIL(path, ": metadata ", key, " '", it->second, "' is not a number");
    }
    const double b = std::stod(have[key]);  // written by lora_metadata
    VGG_CHECK(std::abs(a - b) <= 1e-12 * std::abs(b), path, ": adapter ", key, " is ", it->second,
              " in the file but ", have[key], " in the model");
  }
  try {
    load_lora_state_dict(m, f.tensors, prefix);
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
}

std::vector<std::string> attach_lora_file(const std::string& path, Module& m, const std::string& prefix) {
  VGG_CHECK(lora_modules(m).empty(), path, ": the model already carries adapters");
  SafetensorsFile f = load_safetensors(path);
  const std::string suffix = ".lora_A.weight";
  LoRAConfig lc;
  lc.targets.clear();
  lc.rank = 0;
  for (const auto& [name, t] : f.tensors) {
    if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    VGG_CHECK(t.dim() == 2, path, ": '", name, "' is ", shape_str(t.shape()), ", not [rank, in]");
    VGG_CHECK(lc.rank == 0 || lc.rank == t.size(0), path, ": adapters of different ranks (", lc.rank, " and ",
              t.size(0), ")");
    lc.rank = t.size(0);
    lc.targets.push_back(name.substr(prefix.size(), name.size() - prefix.size() - suffix.size()));
  }
  VGG_CHECK(!lc.targets.empty(), path, ": no '", prefix, "<module>", suffix, "' adapter weights");
  lc.alpha = static_cast<double>(lc.rank);
  if (auto it = f.metadata.find("lora_alpha"); it != f.metadata.end()) {
    try {
      size_t used = 0;
      lc.alpha = std::stod(it->second, &used);
      if (used != it->second.size() || !std::isfinite(lc.alpha)) throw std::invalid_argument("lora_alpha");
    } catch (const std::exception&) {
      VGG_FAIL(path, ": metadata lora_alpha '", it->second, "' is not a number");
    }
  }
  std::vector<std::string> wrapped = attach_lora(m, lc);
  VGG_CHECK(wrapped.size() == lc.targets.size(), path, ": ", lc.targets.size(), " adapters in the file but ",
            wrapped.size(), " matching modules in the model");
  try {
    load_lora_state_dict(m, f.tensors, prefix);
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
  return wrapped;
}

void save_tensors(const std::string& path, const NamedTensors& t, const std::map<std::string, std::string>& metadata) {
  save_safetensors(path, t, metadata);
}

NamedTensors load_tensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  SafetensorsFile f = load_safetensors(path);
  if (metadata) *metadata = f.metadata;
  return f.tensors;
}

}  // namespace vgg::nn
