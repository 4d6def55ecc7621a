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
    double a = std::stod(it->second), b = std::stod(have[key]);
    VGG_CHECK(std::abs(a - b) <= 1e-12 * std::abs(b), path, ": adapter ", key, " is ", it->second,
              " in the file but ", have[key], " in the model");
  }
  try {
    load_lora_state_dict(m, f.tensors, prefix);
  } catch (const Error& e) {
    VGG_FAIL(path, ": ", e.what());
  }
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
