// Checkpoint loaders on a small model: model weights (strict and not), LoRA adapters (into attached
// adapters and attach_lora_file's "adapters from the file alone"), AdamW and EMA state. The input
// is one safetensors file fed to each of them.
#include <memory>

#include "nn/io.h"
#include "nn/layers.h"
#include "nn/lora.h"
#include "nn/module.h"
#include "nn/optim.h"
#include "tests/fuzz/fuzz_common.h"

using namespace vgg;

namespace {

struct Attn : nn::Module {
  std::shared_ptr<nn::Linear> to_q, to_k;
  Attn() {
    to_q = std::make_shared<nn::Linear>(4, 4);
    to_k = std::make_shared<nn::Linear>(4, 4, false);
    register_module("to_q", to_q);
    register_module("to_k", to_k);
  }
  std::string type_name() const override { return "Attn"; }
};

struct Net : nn::Module {
  std::shared_ptr<Attn> attn;
  std::shared_ptr<nn::Linear> out;
  Net() {
    attn = std::make_shared<Attn>();
    out = std::make_shared<nn::Linear>(4, 2);
    register_module("attn", attn);
    register_module("out", out);
  }
  std::string type_name() const override { return "Net"; }
};

nn::LoRAConfig lora_config() {
  nn::LoRAConfig c;
  c.rank = 2, c.alpha = 4, c.targets = {"attn.to_q", "attn.to_k"};
  return c;
}

std::unique_ptr<nn::AdamW> optimizer(Net& n) {
  nn::ParamGroup g;
  g.name = "theta";
  for (const auto& [name, t] : n.adapter_parameters()) g.params.push_back(t), g.param_names.push_back(name);
  return std::make_unique<nn::AdamW>(std::vector<nn::ParamGroup>{g});
}

std::unique_ptr<nn::EMA> ema(Net& n) {
  std::vector<Tensor> params;
  std::vector<std::string> names;
  for (const auto& [name, t] : n.named_parameters()) params.push_back(t), names.push_back(name);
  return std::make_unique<nn::EMA>(params, 0.99, true, names);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = fuzz::seed_dir();
  if (dir.empty()) return 0;
  Net base;
  nn::save_weights((dir / "weights.safetensors").string(), base);
  Net adapted;
  nn::attach_lora(adapted, lora_config());
  nn::save_lora((dir / "lora.safetensors").string(), adapted);
  nn::save_tensors((dir / "optimizer.safetensors").string(), optimizer(adapted)->state_dict());
  nn::save_tensors((dir / "ema.safetensors").string(), ema(base)->state_dict());
  std::exit(0);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string p = fuzz::as_file(data, size, "checkpoint.safetensors");
  fuzz::expect_clean([&] {
    Net n;
    nn::load_weights(p, n);
  });
  fuzz::expect_clean([&] {
    Net n;
    nn::load_weights(p, n, /*strict=*/false);
  });
  fuzz::expect_clean([&] {
    Net n;
    nn::attach_lora(n, lora_config());
    nn::load_lora(p, n);
  });
  fuzz::expect_clean([&] {
    Net n;
    nn::attach_lora_file(p, n);
  });
  fuzz::expect_clean([&] {
    Net n;
    nn::attach_lora(n, lora_config());
    optimizer(n)->load_state_dict(nn::load_tensors(p));
  });
  fuzz::expect_clean([&] {
    Net n;
    ema(n)->load_state_dict(nn::load_tensors(p));
  });
  return 0;
}
