#include "vggflow/schedule.h"

#include "tensor/error.h"

namespace vgg::flow {

double shift_sigma(double sigma, double shift) { return shift * sigma / (1.0 + (shift - 1.0) * sigma); }

std::vector<double> training_sigmas(double shift, int64_t n) {
  VGG_CHECK(n > 0, "training_sigmas: num_train_timesteps must be positive, got ", n);
  VGG_CHECK(shift > 0, "training_sigmas: shift must be positive, got ", shift);
  std::vector<double> s(static_cast<size_t>(n));
  // diffusers builds the table in f32: timesteps k (as float32) / n, then shifted
  for (int64_t i = 0; i < n; ++i) {
    float k = static_cast<float>(n - i);
    float sigma = k / static_cast<float>(n);
    const float sh = static_cast<float>(shift);
    s[static_cast<size_t>(i)] = sh * sigma / (1.0f + (sh - 1.0f) * sigma);
  }
  return s;
}

InferenceSchedule inference_schedule(int64_t steps, double shift, int64_t n) {
  VGG_CHECK(steps > 0, "inference_schedule: steps must be positive, got ", steps);
  std::vector<double> table = training_sigmas(shift, n);
  const double smax = table.front(), smin = table.back();
  const double t0 = smax * static_cast<double>(n), t1 = smin * static_cast<double>(n);
  InferenceSchedule out;
  for (int64_t i = 0; i < steps; ++i) {
    // numpy.linspace: start + i·step, the last value exactly `stop`
    const double step = steps == 1 ? 0.0 : (t1 - t0) / static_cast<double>(steps - 1);
    double t = (steps > 1 && i == steps - 1) ? t1 : static_cast<double>(i) * step + t0;
    double sigma = shift_sigma(t / static_cast<double>(n), shift);
    out.sigmas.push_back(static_cast<float>(sigma));
    out.timesteps.push_back(static_cast<float>(sigma) * static_cast<float>(n));
  }
  out.sigmas.push_back(0.0f);
  return out;
}

}  // namespace vgg::flow
