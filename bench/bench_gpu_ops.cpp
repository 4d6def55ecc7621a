// GPU microbenchmarks (Google Benchmark; run through `tools/bench-compare gpu-ops`, which times the
// same cases in PyTorch in the same invocation and prints ratios). Each case reports TFLOP/s or
// GB/s as a counter. Timing: CUDA events around each call (as the PyTorch side), after a warm-up.
//
// Case names carry the shapes: gemm/<dtype>/M/N/K, ln_modulate/<dtype>/rows/width (layer_norm then
// x·(1 + scale) + shift with per-sample scale/shift, as the MMDiT's adaLN, as three ops) and
// ln_modulate_fused (the same through the fused kernel), gated_residual/<dtype>/rows/width (x + gate·y
// as two ops) and gated_residual_fused, softmax/<dtype>/rows/cols,
// adamw/f32/n/tensors (one optimizer step over that many parameters of n elements in all),
// attention/<dtype>/BH/S/d and attention_fwd_bwd (the MMDiT's joint attention), lora_fwd_bwd/<dtype>/M/D/r
// and linear_fwd_bwd/<dtype>/M/D (the LoRA layer and its bare base, forward + backward).
// Memory-bound kernels at the bandwidth roofline (GB/s = bytes read + written once): copy (dense
// device copy, the ceiling), bcast_mul ([B, S, D]·[B, 1, D]), permute ([B, S, H, d] -> [B, H, S, d]
// made contiguous), cast (bf16 -> f32), col_sum (sum over the tokens of [B, S, D], the adaLN
// backward) and row_sum (sum over the last dim), each /<dtype>/rows/width with B = 2.
// sd3_step/<fwd|train>/<pixels>: the SD3-medium-structure MMDiT (random bf16 weights, LoRA r = 8 on
// attn.to_q/k/v/out.0, batch 1, 333 text tokens), forward, or forward + backward of sum(out ⊙ R) to
// the adapters; tools/bench/sd3_step_torch.py is its diffusers + PEFT peer.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/ops.h"
#include "nn/lora.h"
#include "nn/mmdit.h"
#include "nn/optim.h"
#include "tensor/factory.h"
#include "tensor/profile.h"

using namespace vgg;

namespace {

bool gpu_or_skip(benchmark::State& st) {
  if (cuda_device_count() > 0) return true;
  st.SkipWithError(("no GPU: " + cuda_unavailable_reason()).c_str());
  return false;
}

// Times fn with CUDA events around it (the GPU time of the queued work, no host overheads in
// the number), after a warm-up call.
template <class F>
void timed(benchmark::State& st, F fn) {
  fn();
  cuda_synchronize();
  if (profile::enabled()) profile::reset();  // VGG_PROFILE: the table covers the timed calls only
  CudaEvent start, end;
  for (auto _ : st) {
    start.record();
    fn();
    end.record();
    st.SetIterationTime(CudaEvent::elapsed_ms(start, end) * 1e-3);
  }
}

DType dtype_of(int code) { return code == 0 ? DType::F32 : DType::BF16; }

void BM_gemm(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t M = st.range(0), N = st.range(1), K = st.range(2);
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(1);
  Tensor a = randn({M, K}, o, &g), b = randn({K, N}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::matmul(a, b)); });
  st.counters["TFLOP/s"] = benchmark::Counter(2.0 * M * N * K * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_ln_modulate(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(2);
  Tensor x = randn({B, R / B, D}, o, &g), scale = randn({B, 1, D}, o, &g), shift = randn({B, 1, D}, o, &g);
  timed(st, [&] {
    Tensor y = ops::add(ops::mul(ops::layer_norm(x, {D}, Tensor(), Tensor(), 1e-6), ops::add(scale, 1.0)), shift);
    benchmark::DoNotOptimize(y);
  });
  // the fused kernel's traffic: read x, write y (scale/shift are negligible)
  st.counters["GB/s"] = benchmark::Counter(2.0 * R * D * itemsize(dtype_of(dt)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// the same through the fused kernel (ops::layer_norm_modulate)
void BM_ln_modulate_fused(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(2);
  Tensor x = randn({B, R / B, D}, o, &g), scale = randn({B, D}, o, &g), shift = randn({B, D}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::layer_norm_modulate(x, scale, shift, 1e-6)); });
  st.counters["GB/s"] = benchmark::Counter(2.0 * R * D * itemsize(dtype_of(dt)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// the gated residual x + gate·y ([B, 1, D] gate) as two ops, and through the fused kernel
void BM_gated_residual(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(5);
  Tensor x = randn({B, R / B, D}, o, &g), y = randn({B, R / B, D}, o, &g), gate = randn({B, 1, D}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::add(x, ops::mul(gate, y))); });
  // the fused kernel's traffic: read x and y, write the result
  st.counters["GB/s"] = benchmark::Counter(3.0 * R * D * itemsize(dtype_of(dt)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_gated_residual_fused(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(5);
  Tensor x = randn({B, R / B, D}, o, &g), y = randn({B, R / B, D}, o, &g), gate = randn({B, D}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::gated_residual(x, gate, y)); });
  st.counters["GB/s"] = benchmark::Counter(3.0 * R * D * itemsize(dtype_of(dt)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Attention over [B·H, S, d] (the MMDiT's joint attention: B=2, H=24, S=4096+333, d=64): the
// forward alone, and forward + backward. TFLOP/s counts 4·B·H·S²·d for the forward and 2.5× that
// for the backward (the flash-attention papers' convention; no causal mask here).
void BM_attention(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t BH = st.range(0), S = st.range(1), d = st.range(2);
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(6);
  Tensor q = randn({BH, S, d}, o, &g), k = randn({BH, S, d}, o, &g), v = randn({BH, S, d}, o, &g);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  timed(st, [&] { benchmark::DoNotOptimize(ops::attention(q, k, v, scale)); });
  st.counters["TFLOP/s"] = benchmark::Counter(4.0 * BH * S * S * d * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_attention_fwd_bwd(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  const int64_t BH = st.range(0), S = st.range(1), d = st.range(2);
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(6);
  Tensor q = randn({BH, S, d}, o, &g).requires_grad_(true), k = randn({BH, S, d}, o, &g).requires_grad_(true);
  Tensor v = randn({BH, S, d}, o, &g).requires_grad_(true), go = randn({BH, S, d}, o, &g);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  timed(st, [&] {
    auto gr = grad({ops::attention(q, k, v, scale)}, {q, k, v}, {go});
    benchmark::DoNotOptimize(gr);
  });
  st.counters["TFLOP/s"] = benchmark::Counter(3.5 * 4.0 * BH * S * S * d * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

// LoRA linear (r=8 on a 1536×1536 base, M=8192 tokens, bf16), forward + backward with a frozen
// base, as nn::LoRALinear computes it (base GEMM plus the two low-rank GEMMs), next to the bare
// base GEMM forward + its dx GEMM: the peers the fused-LoRA goal is stated against.
void BM_lora_fwd_bwd(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  const int64_t M = st.range(0), D = st.range(1), r = st.range(2);
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(7);
  Tensor x = randn({M, D}, o, &g).requires_grad_(true), w = randn({D, D}, o, &g), go = randn({M, D}, o, &g);
  Tensor a = randn({r, D}, o, &g).requires_grad_(true), b = randn({D, r}, o, &g).requires_grad_(true);
  timed(st, [&] {
    Tensor y = ops::add(ops::matmul(x, ops::transpose(w, 0, 1)),
                        ops::mul(ops::matmul(ops::matmul(x, ops::transpose(a, 0, 1)), ops::transpose(b, 0, 1)), 2.0));
    benchmark::DoNotOptimize(grad({y}, {x, a, b}, {go}));
  });
  st.counters["TFLOP/s"] = benchmark::Counter(4.0 * M * D * D * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_linear_fwd_bwd(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  const int64_t M = st.range(0), D = st.range(1);
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(7);
  Tensor x = randn({M, D}, o, &g).requires_grad_(true), w = randn({D, D}, o, &g), go = randn({M, D}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(grad({ops::matmul(x, ops::transpose(w, 0, 1))}, {x}, {go})); });
  st.counters["TFLOP/s"] = benchmark::Counter(4.0 * M * D * D * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_softmax(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), C = st.range(1);
  Generator g(3);
  Tensor x = randn({R, C}, {dtype_of(dt), Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::softmax(x, 1)); });
  st.counters["GB/s"] = benchmark::Counter(2.0 * R * C * itemsize(dtype_of(dt)) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// One nn::AdamW step over `count` f32 parameters of n elements in all (the multi-tensor CUDA
// kernels: the sum of squares for the gradient norm, then the update). GB/s counts the update's
// traffic: read p, g, m, v and write p, m, v.
void BM_adamw(benchmark::State& st, int) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t n = st.range(0), count = st.range(1);
  const TensorOptions o{DType::F32, Device::cuda()};
  Generator g(4);
  nn::ParamGroup group;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t len = n / count + (i < n % count ? 1 : 0);
    Tensor p = randn({len}, o, &g);
    p.requires_grad_(true);
    p.set_grad(randn({len}, o, &g));
    group.params.push_back(p);
  }
  group.lr = 1e-4;
  nn::AdamW opt({group});
  timed(st, [&] { benchmark::DoNotOptimize(opt.step()); });
  st.counters["GB/s"] = benchmark::Counter(7.0 * n * 4 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// ---- memory-bound kernels -----------------------------------------------------------------

void set_gbs(benchmark::State& st, double bytes) {
  st.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_copy(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1);
  Generator g(8);
  Tensor x = randn({R, D}, {dtype_of(dt), Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::clone(x)); });
  set_gbs(st, 2.0 * R * D * itemsize(dtype_of(dt)));
}

void BM_bcast_mul(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  const TensorOptions o{dtype_of(dt), Device::cuda()};
  Generator g(8);
  Tensor x = randn({B, R / B, D}, o, &g), s = randn({B, 1, D}, o, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::mul(x, s)); });
  set_gbs(st, 2.0 * R * D * itemsize(dtype_of(dt)));
}

// rows = B·S tokens, width = H·d with d = 64
void BM_permute(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2, hd = 64;
  Generator g(8);
  Tensor x = randn({B, R / B, D / hd, hd}, {dtype_of(dt), Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::contiguous(ops::permute(x, {0, 2, 1, 3}))); });
  set_gbs(st, 2.0 * R * D * itemsize(dtype_of(dt)));
}

void BM_cast(benchmark::State& st, int) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1);
  Generator g(8);
  Tensor x = randn({R, D}, {DType::BF16, Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::to(x, DType::F32)); });
  set_gbs(st, 6.0 * R * D);
}

void BM_col_sum(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1), B = 2;
  Generator g(8);
  Tensor x = randn({B, R / B, D}, {dtype_of(dt), Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::sum(x, {1}, true)); });
  set_gbs(st, 1.0 * R * D * itemsize(dtype_of(dt)));
}

void BM_row_sum(benchmark::State& st, int dt) {
  if (!gpu_or_skip(st)) return;
  NoGradGuard ng;
  const int64_t R = st.range(0), D = st.range(1);
  Generator g(8);
  Tensor x = randn({R, D}, {dtype_of(dt), Device::cuda()}, &g);
  timed(st, [&] { benchmark::DoNotOptimize(ops::sum(x, {1}, true)); });
  set_gbs(st, 1.0 * R * D * itemsize(dtype_of(dt)));
}

// ---- the SD3-medium-structure training step ---------------------------------------------------

// FLOPs of one forward (matmuls and attention), as docs/mmdit.md counts them
double sd3_forward_flops(const nn::MMDiTConfig& c, int64_t latent, int64_t T) {
  const double D = static_cast<double>(c.dim()), Ni = static_cast<double>((latent / 2) * (latent / 2));
  const double N = Ni + static_cast<double>(T), L = static_cast<double>(c.num_layers);
  double f = 24.0 * Ni * D * D * L + 24.0 * T * D * D * (L - 1) + 6.0 * T * D * D;
  f += 4.0 * N * N * D * (L - 1) + 4.0 * Ni * N * D;
  return f;
}

void BM_sd3_step(benchmark::State& st, int train) {
  if (!gpu_or_skip(st)) return;
  const int64_t px = st.range(0), latent = px / 8, T = 333;
  auto cfg = nn::MMDiTConfig::named("sd3-medium");
  Generator g(11);
  nn::MMDiT model(cfg, {DType::BF16, Device::cuda(), &g, /*deferred=*/true});
  model.materialize(DType::BF16, Device::cuda(), &g);
  model.requires_grad_(false);
  nn::LoRAConfig lc;
  lc.rank = 8;
  lc.alpha = 8;
  nn::attach_lora(model, lc);
  std::vector<Tensor> adapters;
  for (auto& [name, t] : model.adapter_parameters()) adapters.push_back(t);
  const TensorOptions o{DType::BF16, Device::cuda()};
  Tensor x = randn({1, cfg.in_channels, latent, latent}, o, &g), c = randn({1, T, cfg.joint_attention_dim}, o, &g);
  Tensor y = randn({1, cfg.pooled_projection_dim}, o, &g), R = randn({1, cfg.out_channels, latent, latent}, o, &g);
  Tensor t = full({1}, 500.0, o);
  if (train) {
    timed(st, [&] {
      Tensor out = model.forward(x, t, c, y);
      benchmark::DoNotOptimize(grad({ops::sum(ops::mul(out, R))}, adapters));
    });
  } else {
    NoGradGuard ng;
    timed(st, [&] { benchmark::DoNotOptimize(model.forward(x, t, c, y)); });
  }
  if (profile::enabled()) {  // per step: kernel time, launches, the part outside attention
    double total = 0, attn = 0;
    int64_t calls = 0;
    for (const auto& r : profile::rows()) {
      total += r.ms;
      calls += r.calls;
      if (r.op.rfind("attention", 0) == 0) attn += r.ms;
    }
    const double n = static_cast<double>(st.iterations());
    std::fprintf(stderr, "sd3_step %s %lld px: per step %.2f ms of kernel time, %.2f ms outside attention, %.0f launches\n",
                 train ? "train" : "fwd", static_cast<long long>(px), total / n, (total - attn) / n,
                 static_cast<double>(calls) / n);
  }
  // FLOPs: the forward's products, and for the LoRA step the backward's dx products (~1x more: the
  // frozen weights get no gradient), so 2x the forward
  const double f = sd3_forward_flops(cfg, latent, T) * (train ? 2.0 : 1.0);
  st.counters["TFLOP/s"] = benchmark::Counter(f * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

BENCHMARK_CAPTURE(BM_gemm, f32, 0)->Args({4096, 4096, 4096})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_gemm, bf16, 1)
    ->Args({4096, 4096, 4096})
    ->Args({8192, 8192, 8192})
    ->Args({8192, 1536, 1536})
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ln_modulate, f32, 0)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ln_modulate, bf16, 1)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ln_modulate_fused, f32, 0)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_ln_modulate_fused, bf16, 1)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gated_residual, f32, 0)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gated_residual, bf16, 1)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gated_residual_fused, f32, 0)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_gated_residual_fused, bf16, 1)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_attention, bf16, 1)->Args({48, 4429, 64})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention, bf16, 1)->Args({48, 4429, 128})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_attention_fwd_bwd, bf16, 1)->Args({48, 4429, 64})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_lora_fwd_bwd, bf16, 1)->Args({8192, 1536, 8})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_linear_fwd_bwd, bf16, 1)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_softmax, f32, 0)->Args({8192, 4096})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_softmax, bf16, 1)->Args({8192, 4096})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_adamw, f32, 0)->Args({1 << 24, 64})->UseManualTime()->Unit(benchmark::kMillisecond);
#define VGG_MEM_CASE(fn, dt, code) \
  BENCHMARK_CAPTURE(fn, dt, code)->Args({8192, 1536})->UseManualTime()->Unit(benchmark::kMicrosecond)
VGG_MEM_CASE(BM_copy, bf16, 1);
VGG_MEM_CASE(BM_bcast_mul, f32, 0);
VGG_MEM_CASE(BM_bcast_mul, bf16, 1);
VGG_MEM_CASE(BM_permute, bf16, 1);
VGG_MEM_CASE(BM_cast, bf16, 1);
VGG_MEM_CASE(BM_col_sum, f32, 0);
VGG_MEM_CASE(BM_col_sum, bf16, 1);
VGG_MEM_CASE(BM_row_sum, bf16, 1);
BENCHMARK_CAPTURE(BM_sd3_step, fwd, 0)->Arg(512)->Arg(1024)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_sd3_step, train, 1)->Arg(512)->Arg(1024)->UseManualTime()->Iterations(5)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  benchmark::AddCustomContext("gpu", cuda_device_name(0).empty() ? "none" : cuda_device_name(0));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
