// A one-block MMDiT flow model (width 32, random weights) with prompt tables, for fast tests.
#pragma once
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

}  // namespace vgg::test
