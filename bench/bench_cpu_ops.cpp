// vgg_bench_cpu: forward-pass microbenchmarks of the CPU ops a tiny SD3-style MMDiT on
// Fashion-MNIST spends its time in (hidden 64-256, 64-256 image tokens plus text tokens,
// 2-4 heads of dim 32-64, batch 8-32), f32, under NoGradGuard.
//
// Every benchmark is named "<op>/<d0>x<d1>x..." (plus Google Benchmark's "/real_time"
// suffix); tools/bench/torch_cpu_ops.py parses these names to time the same shapes in
// PyTorch, so the case list below is the single source of truth for both sides:
//   matmul/MxKxN           [M, K] @ [K, N]
//   bmm/BxMxKxN            [B, M, K] @ [B, K, N]
//   softmax/RxC            softmax over the last dim of [R, C]
//   layer_norm/RxD         layer_norm over D of [R, D], with weight and bias (eps 1e-5)
//   attention_naive/BxHxSxD, attention_tiled/BxHxSxD
//                          softmax(Q K^T / sqrt(D)) V, q = k = v shape [B, H, S, D]
//   attention_jvp_fused/BxHxSxD, attention_jvp_composed/BxHxSxD
//                          forward mode of the tiled attention along tangents of q, k, v: the fused
//                          one-pass JVP kernel, or the composed rule (P materialised)
// Times are wall-clock (UseRealTime): the kernels run on OpenMP / OpenBLAS threads.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "autograd/forward_ad.h"
#include "autograd/ops.h"
#include "bench/bench_common.h"

namespace {

using vgg::Tensor;
namespace ops = vgg::ops;

std::string case_name(const std::string& op, const std::vector<int64_t>& dims) {
  std::string s = op + "/";
  for (size_t i = 0; i < dims.size(); ++i) {
    if (i) s += 'x';
    s += std::to_string(dims[i]);
  }
  return s;
}

Tensor randn(const vgg::Shape& shape, uint64_t seed) {
  vgg::Generator g(seed);
  return vgg::randn(shape, {}, &g);
}

constexpr double kF32 = sizeof(float);

// Reports FLOP/s (and the bytes the operands and result occupy, once each, per call).
void set_counters(benchmark::State& st, double flops, double bytes, double items) {
  st.counters["FLOP/s"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate,
                                             benchmark::Counter::kIs1000);
  st.SetBytesProcessed(static_cast<int64_t>(bytes * static_cast<double>(st.iterations())));
  st.SetItemsProcessed(static_cast<int64_t>(items * static_cast<double>(st.iterations())));
}

void bm_matmul(benchmark::State& st, int64_t m, int64_t k, int64_t n) {
  vgg::NoGradGuard ng;
  Tensor a = randn({m, k}, 1), b = randn({k, n}, 2);
  for (auto _ : st) {
    Tensor c = ops::matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
    benchmark::ClobberMemory();
  }
  const double mnk = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  set_counters(st, 2.0 * mnk, kF32 * static_cast<double>(m * k + k * n + m * n), static_cast<double>(m * n));
}

void bm_bmm(benchmark::State& st, int64_t bt, int64_t m, int64_t k, int64_t n) {
  vgg::NoGradGuard ng;
  Tensor a = randn({bt, m, k}, 1), b = randn({bt, k, n}, 2);
  for (auto _ : st) {
    Tensor c = ops::matmul(a, b);
    benchmark::DoNotOptimize(c.data_ptr());
    benchmark::ClobberMemory();
  }
  const double mnk = static_cast<double>(bt) * static_cast<double>(m) * static_cast<double>(n) *
                     static_cast<double>(k);
  set_counters(st, 2.0 * mnk, kF32 * static_cast<double>(bt * (m * k + k * n + m * n)),
               static_cast<double>(bt * m * n));
}

void bm_softmax(benchmark::State& st, int64_t r, int64_t c) {
  vgg::NoGradGuard ng;
  Tensor x = randn({r, c}, 1);
  for (auto _ : st) {
    Tensor y = ops::softmax(x, -1);
    benchmark::DoNotOptimize(y.data_ptr());
    benchmark::ClobberMemory();
  }
  const double n = static_cast<double>(r * c);
  // max, exp-subtract, sum, divide: ~4 FLOP per element (exp counted as one)
  set_counters(st, 4.0 * n, 2.0 * kF32 * n, n);
}

void bm_layer_norm(benchmark::State& st, int64_t r, int64_t d) {
  vgg::NoGradGuard ng;
  Tensor x = randn({r, d}, 1), w = randn({d}, 2), b = randn({d}, 3);
  for (auto _ : st) {
    Tensor y = ops::layer_norm(x, {d}, w, b, 1e-5);
    benchmark::DoNotOptimize(y.data_ptr());
    benchmark::ClobberMemory();
  }
  const double n = static_cast<double>(r * d);
  // mean, centred square sum, normalise, scale, shift: ~7 FLOP per element
  set_counters(st, 7.0 * n, 2.0 * kF32 * n, n);
}

void bm_attention(benchmark::State& st, ops::AttentionImpl impl, int64_t b, int64_t h, int64_t s, int64_t d) {
  vgg::NoGradGuard ng;
  Tensor q = randn({b, h, s, d}, 1), k = randn({b, h, s, d}, 2), v = randn({b, h, s, d}, 3);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto _ : st) {
    Tensor o = ops::attention(q, k, v, scale, impl);
    benchmark::DoNotOptimize(o.data_ptr());
    benchmark::ClobberMemory();
  }
  // the two matmuls (QK^T and PV); the softmax is not counted
  const double bh = static_cast<double>(b * h), ss = static_cast<double>(s) * static_cast<double>(s);
  set_counters(st, 4.0 * bh * ss * static_cast<double>(d), 4.0 * kF32 * static_cast<double>(b * h * s * d),
               static_cast<double>(b * h * s * d));
}

// Forward mode through the tiled attention along tangents of q, k and v: the fused one-pass JVP
// kernel or the composed reference rule (P materialised).
void bm_attention_jvp(benchmark::State& st, bool fused, int64_t b, int64_t h, int64_t s, int64_t d) {
  vgg::NoGradGuard ng;
  const ops::AttentionJvp prev = ops::attention_jvp_mode();
  ops::set_attention_jvp(fused ? ops::AttentionJvp::Fused : ops::AttentionJvp::Composed);
  Tensor q = randn({b, h, s, d}, 1), k = randn({b, h, s, d}, 2), v = randn({b, h, s, d}, 3);
  Tensor tq = randn({b, h, s, d}, 4), tk = randn({b, h, s, d}, 5), tv = randn({b, h, s, d}, 6);
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto _ : st) {
    vgg::fwad::DualLevel level;
    Tensor o = ops::attention(vgg::fwad::make_dual(q, tq), vgg::fwad::make_dual(k, tk), vgg::fwad::make_dual(v, tv), scale);
    Tensor t = vgg::fwad::tangent(o);
    benchmark::DoNotOptimize(t.data_ptr());
    benchmark::ClobberMemory();
  }
  ops::set_attention_jvp(prev);
  // QKᵀ, PV, tQKᵀ + QtKᵀ, P·tV + (P∘tS)·V: six S x S x D matmuls of 2 FLOP per multiply-add
  const double bh = static_cast<double>(b * h), ss = static_cast<double>(s) * static_cast<double>(s);
  set_counters(st, 12.0 * bh * ss * static_cast<double>(d), 8.0 * kF32 * static_cast<double>(b * h * s * d),
               static_cast<double>(b * h * s * d));
}

benchmark::internal::Benchmark* configure(benchmark::internal::Benchmark* bm) {
  return bm->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void register_all() {
  // [B*S, D] x [D, n*D] linear layers of the model, then square GEMMs.
  const std::vector<std::vector<int64_t>> matmuls = {
      {512, 64, 256},     // D=64, B=8, S=64: MLP up-projection
      {4096, 128, 384},   // D=128, B=16, S=256: fused QKV projection
      {4096, 128, 512},   // D=128, B=16, S=256: MLP up-projection
      {4096, 512, 128},   // D=128, B=16, S=256: MLP down-projection
      {8192, 256, 1024},  // D=256, B=32, S=256: MLP up-projection
      {256, 256, 256},    {512, 512, 512}, {1024, 1024, 1024},
  };
  for (const auto& c : matmuls)
    configure(benchmark::RegisterBenchmark(case_name("matmul", c).c_str(),
                                           [c](benchmark::State& st) { bm_matmul(st, c[0], c[1], c[2]); }));
  // attention-shaped batched GEMMs, B*H = 8*4 heads, S = 256, head dim 64
  const std::vector<std::vector<int64_t>> bmms = {
      {32, 256, 64, 256},  // Q K^T
      {32, 256, 256, 64},  // P V
  };
  for (const auto& c : bmms)
    configure(benchmark::RegisterBenchmark(case_name("bmm", c).c_str(),
                                           [c](benchmark::State& st) { bm_bmm(st, c[0], c[1], c[2], c[3]); }));
  // attention score rows: B*H*S rows of S keys
  const std::vector<std::vector<int64_t>> softmaxes = {{8192, 256}, {8192, 1024}};
  for (const auto& c : softmaxes)
    configure(benchmark::RegisterBenchmark(case_name("softmax", c).c_str(),
                                           [c](benchmark::State& st) { bm_softmax(st, c[0], c[1]); }));
  // [B*S, D] token rows
  const std::vector<std::vector<int64_t>> norms = {{512, 64}, {4096, 128}, {8192, 256}};
  for (const auto& c : norms)
    configure(benchmark::RegisterBenchmark(case_name("layer_norm", c).c_str(),
                                           [c](benchmark::State& st) { bm_layer_norm(st, c[0], c[1]); }));
  // [B, H, S, D]
  const std::vector<std::vector<int64_t>> attns = {{8, 2, 64, 32}, {8, 4, 256, 64}, {8, 4, 1024, 64}};
  for (const auto& c : attns) {
    configure(benchmark::RegisterBenchmark(case_name("attention_naive", c).c_str(), [c](benchmark::State& st) {
      bm_attention(st, ops::AttentionImpl::Naive, c[0], c[1], c[2], c[3]);
    }));
    configure(benchmark::RegisterBenchmark(case_name("attention_tiled", c).c_str(), [c](benchmark::State& st) {
      bm_attention(st, ops::AttentionImpl::Tiled, c[0], c[1], c[2], c[3]);
    }));
    for (bool fused : {true, false})
      configure(benchmark::RegisterBenchmark(case_name(fused ? "attention_jvp_fused" : "attention_jvp_composed", c).c_str(),
                                             [c, fused](benchmark::State& st) { bm_attention_jvp(st, fused, c[0], c[1], c[2], c[3]); }));
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  vgg::bench::add_engine_context();
  register_all();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
