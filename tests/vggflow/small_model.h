// A one-block MMDiT flow model (width 32, random weights) with prompt tables, for fast tests.
#pragma once
#include "tests/support/test_support.h"
#include "vggflow/methods/common.h"
#include "vggflow/model.h"

namespace vgg::test {

inline flow::FlowModel small_flow_model(uint64_t seed) {
  nn::MMDiTConfig cfg;
  cfg.num_layers = 1, cfg.attention_head_dim = 16, cfg.num_attention_heads = 2;
  cfg.joint_attention_dim = 16, cfg.caption_projection_dim = 32, cfg.pooled_projection_dim = 16;
  Generator g(seed);
  nn::LayerOptions o{DType::F32, Device::cpu(), &g};
  flow::FlowModel fm;
  fm.cfg = cfg;
  fm.net = std::make_shared<nn::MMDiT>(cfg, o);
  fm.prompts = std::make_shared<flow::PromptEncoder>(11, 2, 16, 16, o);
  fm.sampling = {4, 1.0, 2.0};
  return fm;
}

// The small model in f64 as a policy (rank-4 LoRA, CFG 2) whose adapters are non-zero (B ~ 0.2·N(0, 1)),
// so the policy differs from the base.
inline flow::methods::Policy small_f64_policy() {
  flow::FlowModel fm = small_flow_model(1);
  fm.net->to(DType::F64);
  fm.prompts->to(DType::F64);
  flow::methods::Policy p = flow::methods::make_policy(fm, 4, 2.0, 9);
  NoGradGuard ng;
  uint64_t seed = 100;
  for (auto& [n, mod] : nn::lora_modules(*p.model.net))
    ops::copy_(mod->lora_B, ops::mul(rnd(mod->lora_B.shape(), ++seed), 0.2));
  return p;
}

}  // namespace vgg::test
