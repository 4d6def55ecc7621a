// vgg_bench_mmdit: the tiny SD3 MMDiT (docs/mmdit.md, config "tiny": 4 blocks, D = 128,
// 2 heads of 64, 1 channel, 2.28 M parameters) on the CPU, f32, one case per shape:
//   mmdit_fwd/BxSxT    forward only (NoGradGuard), B images of S×S pixels, T text tokens
//   mmdit_step/BxSxT   forward + backward of sum(out ⊙ R) to every parameter (one training
//                      step without the optimizer)
// tools/bench/torch_cpu_ops.py times the same shapes on the PyTorch reference model
// (tools/golden/mmdit_ref.py, f32), and tools/bench-compare mmdit-cpu prints the ratio.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "autograd/engine.h"
#include "bench/bench_common.h"
#include "nn/mmdit.h"

namespace {

using vgg::Tensor;
namespace ops = vgg::ops;

Tensor randn(const vgg::Shape& shape, uint64_t seed) {
  vgg::Generator g(seed);
  return vgg::randn(shape, {}, &g);
}

// FLOPs of the matmuls and attention of one forward (docs/mmdit.md §4.1 at tiny scale).
double forward_flops(const vgg::nn::MMDiTConfig& c, int64_t B, int64_t S, int64_t T) {
  const double D = static_cast<double>(c.dim()), Ni = static_cast<double>((S / 2) * (S / 2));
  const double N = Ni + static_cast<double>(T), L = static_cast<double>(c.num_layers);
  double f = 24.0 * Ni * D * D * L + 24.0 * T * D * D * (L - 1) + 6.0 * T * D * D;  // block linears
  f += 4.0 * N * N * D * (L - 1) + 4.0 * Ni * N * D;                                // attention
  f += 2.0 * Ni * 4 * D + 2.0 * T * 64 * D + 2.0 * Ni * D * 4;                       // embeddings, proj_out
  return f * static_cast<double>(B);
}

void bm_mmdit(benchmark::State& st, bool train, int64_t B, int64_t S, int64_t T) {
  auto cfg = vgg::nn::MMDiTConfig::named("tiny");
  vgg::Generator g(1);
  vgg::nn::MMDiT model(cfg, {vgg::DType::F32, vgg::Device::cpu(), &g});
  Tensor x = randn({B, 1, S, S}, 2), c = randn({B, T, 64}, 3), y = randn({B, 64}, 4);
  Tensor t = vgg::full({B}, 500.0), R = randn({B, 1, S, S}, 5);
  auto params = model.parameters();
  for (auto _ : st) {
    if (train) {
      Tensor out = model.forward(x, t, c, y);
      auto grads = vgg::grad({ops::sum(ops::mul(out, R))}, params, {}, false, /*allow_unused=*/true);
      benchmark::DoNotOptimize(grads.data());
    } else {
      vgg::NoGradGuard ng;
      Tensor out = model.forward(x, t, c, y);
      benchmark::DoNotOptimize(out.data_ptr());
    }
  }
  const double f = forward_flops(cfg, B, S, T) * (train ? 3.0 : 1.0);
  st.counters["FLOP/s"] = benchmark::Counter(f, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  vgg::bench::add_engine_context();
  // B x S x T: one 32x32 image (256 tokens) with 8 text tokens, and a training batch of 16
  const std::vector<std::vector<int64_t>> cases = {{1, 32, 8}, {16, 32, 8}};
  for (bool train : {false, true})
    for (const auto& c : cases) {
      std::string name = std::string(train ? "mmdit_step/" : "mmdit_fwd/") + std::to_string(c[0]) + "x" +
                         std::to_string(c[1]) + "x" + std::to_string(c[2]);
      benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) { bm_mmdit(st, train, c[0], c[1], c[2]); })
          ->UseRealTime()
          ->Unit(benchmark::kMillisecond);
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
