// The σ schedules of SD3 flow matching, reproduced exactly as diffusers'
// FlowMatchEulerDiscreteScheduler computes them (docs/mmdit.md, "σ schedule").
//   shift:     σ' = s·σ / (1 + (s − 1)·σ)
//   training:  table[i] = shift(k/1000) for k = 1000, 999, …, 1 (descending; table[0] = 1)
//   inference: linspace(1000·σ_max, 1000·σ_min, n) / 1000 in f64, shifted AGAIN (σ_min is
//              already shifted: the "double shift" of the references), cast to f32, then a
//              final 0 appended; model timesteps are 1000·σ without the final 0.
#pragma once
#include <cstdint>
#include <vector>

namespace vgg::flow {

double shift_sigma(double sigma, double shift);

// num_train_timesteps values, descending from 1.
std::vector<double> training_sigmas(double shift = 3.0, int64_t num_train_timesteps = 1000);

struct InferenceSchedule {
  std::vector<float> sigmas;     // n + 1 values, the last is 0
  std::vector<float> timesteps;  // n values, 1000·σ
};
InferenceSchedule inference_schedule(int64_t steps, double shift = 3.0, int64_t num_train_timesteps = 1000);

}  // namespace vgg::flow
