// Model, adapter and optimizer files (safetensors; docs/nn.md "Files"):
//   save_weights / load_weights   a module's state_dict() (diffusers names); loading converts
//                                 dtypes and applies load_state_dict's checks (strict by default)
//   save_lora / load_lora         adapters alone in the diffusers/PEFT format
//                                 ("transformer.<module>.lora_A.weight"), rank and alpha in the
//                                 metadata; loading checks them against the attached adapters
// Every write goes to a temporary file renamed into place, so a failure never leaves a partial
// file or destroys the previous one.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "nn/lora.h"
#include "nn/module.h"

namespace vgg::nn {

void save_weights(const std::string& path, const Module& m, const std::map<std::string, std::string>& metadata = {});
// Returns the file's metadata.
std::map<std::string, std::string> load_weights(const std::string& path, Module& m, bool strict = true);

void save_lora(const std::string& path, Module& m, const std::string& prefix = "transformer.");
void load_lora(const std::string& path, Module& m, const std::string& prefix = "transformer.");
// Attaches the adapters a file describes to a model without any — on the module paths its keys
// name, with its rank (from the shapes) and alpha (metadata; alpha = rank when absent) — and
// loads them. Returns the adapted module paths.
std::vector<std::string> attach_lora_file(const std::string& path, Module& m, const std::string& prefix = "transformer.");

// Any named tensors (optimizer or EMA state) with metadata.
void save_tensors(const std::string& path, const NamedTensors& t, const std::map<std::string, std::string>& metadata = {});
NamedTensors load_tensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

}  // namespace vgg::nn
