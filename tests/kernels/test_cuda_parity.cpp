// CPU vs CUDA parity for the device kernels (elementwise, GEMM, indexing, convolution pieces,
// reductions, softmax, norms, fused backwards), the op table's kCuda cases (tests/support/op_table.cpp) (DESIGN.md §4: f32 within a few
// ulps of the CPU, bf16 within one bf16 ulp, f64 and integers to 1e-12 / exactly). Every case runs
// at its own sizes (the `*_odd` cases: 37 x 29, not a multiple of any vector width) in f32, bf16 and
// f64, with contiguous and strided (column-major) inputs. A kernel-level check writes into a poisoned
// device buffer with guard elements on both sides that must stay untouched. Without a GPU every test
// skips with the CUDA error string.
#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "tensor/dispatch.h"
#include "tests/support/op_table.h"
#include "tests/support/test_support.h"

using namespace vgg;

namespace {

using test::OpCase;

// the op table's cases flagged kCuda (tests/support/op_table.cpp): the cases at odd sizes written
// for this suite (`*_odd`) and every other case that asks for it
std::vector<OpCase> cases() { return test::op_cases_with(test::kCuda); }

// the same values in a strided layout: column-major in the last two dims (floating inputs of 2 dims
// or more)
Tensor strided(const Tensor& x) {
  if (!is_floating(x.dtype()) || x.dim() < 2) return x;
  return ops::transpose(ops::contiguous(ops::transpose(x, -1, -2)), -1, -2);
}

// tolerance by dtype (docs/testing.md, "CUDA parity"): |got - ref| <= rtol·|ref| + rtol·atol·scale with
// rtol f32 2e-6 (a few ulps of the CPU libm), bf16 one bf16 ulp, f64 1e-12
double rtol(DType d) { return d == DType::BF16 ? 1.0 / 128 : d == DType::F32 ? 2e-6 : 1e-12; }

class CudaParity : public ::testing::TestWithParam<OpCase> {};

TEST_P(CudaParity, MatchesTheCpu) {
  VGG_REQUIRE_CUDA();
  const OpCase& c = GetParam();
  const std::vector<Tensor> inputs = c.inputs();
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    for (bool transposed : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (transposed ? " strided" : " contiguous"));
      std::vector<Tensor> cpu, gpu;
      for (const Tensor& in : inputs) {
        Tensor x = is_floating(in.dtype()) ? ops::to(in, dt) : in;
        if (transposed) x = strided(x);
        cpu.push_back(x);
        gpu.push_back(ops::to(x, Device::cuda()));
      }
      Tensor ref = c.fn(cpu), got = c.fn(gpu);
      ASSERT_TRUE(got.device().is_cuda());
      ASSERT_EQ(got.dtype(), ref.dtype());
      Tensor back = ops::to(ops::to(got, Device::cpu()), DType::F64), r = ops::to(ref, DType::F64);
      double scale = 0;
      for (double v : r.to_vector())
        if (std::isfinite(v)) scale = std::max(scale, std::abs(v));
      EXPECT_TRUE(test::all_close(back, r, rtol(dt) * c.cuda_atol * scale, rtol(dt)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaParity, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<OpCase>& i) { return i.param.name; });

// The unary and binary kernels write exactly their n outputs: a poisoned buffer with 64 guard
// elements on each side keeps its guards, and every output is overwritten.
TEST(CudaKernels, OutputsStayInsideTheirBuffersAndOverwriteThePoison) {
  VGG_REQUIRE_CUDA();
  const int64_t n = 1001, g = 64;
  const double poison = -12345.0;
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    SCOPED_TRACE(dtype_name(dt));
    // the poison as the dtype stores it (-12345 is not a bf16 value: bf16 holds -12352)
    const double stored = full({1}, poison, opts(dt)).item();
    Tensor x = ops::to(ops::to(test::rnd({n}, 7), dt), Device::cuda());
    Tensor buf = full({n + 2 * g}, poison, {dt, Device::cuda()});
    Tensor out = ops::narrow(buf, 0, g, n);  // offset by g elements
    auto layout = kernels::make_layout(x.shape(), x.strides());
    kernels::UnaryParams p{kernels::UnaryOp::Exp};
    get_kernel<kernels::UnaryKernel>(Device::cuda(), dt)(p, layout, x.data_ptr(), out.data_ptr());
    Tensor host = ops::to(ops::to(buf, Device::cpu()), DType::F64);
    std::vector<double> v = host.to_vector();
    for (int64_t i = 0; i < g; ++i) {
      ASSERT_EQ(v[static_cast<size_t>(i)], stored) << "guard before, element " << i;
      ASSERT_EQ(v[static_cast<size_t>(n + g + i)], stored) << "guard after, element " << i;
    }
    Tensor ref = ops::to(ops::exp(ops::to(x, Device::cpu())), DType::F64);
    EXPECT_TRUE(test::all_close(ops::narrow(host, 0, g, n), ref, 0, rtol(dt)));
    // binary into the same poisoned buffer
    fill_(buf, poison);
    get_kernel<kernels::BinaryKernel>(Device::cuda(), dt)(kernels::BinaryOp::Mul, layout, x.data_ptr(), layout,
                                                                x.data_ptr(), out.data_ptr());
    v = ops::to(ops::to(buf, Device::cpu()), DType::F64).to_vector();
    EXPECT_EQ(v[static_cast<size_t>(g - 1)], stored);
    EXPECT_EQ(v[static_cast<size_t>(n + g)], stored);
    EXPECT_NE(v[static_cast<size_t>(g)], stored);
    EXPECT_NE(v[static_cast<size_t>(n + g - 1)], stored);
  }
}

}  // namespace

// Attention forward and backward (the straightforward CUDA kernels) against the CPU's tiled
// kernels: sequence lengths that are not tile or warp multiples, head sizes 64 and 40 (dv 24).
TEST(CudaAttention, ForwardAndBackwardMatchTheCpu) {
  VGG_REQUIRE_CUDA();
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    for (int64_t d : {64, 40}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " d=" + std::to_string(d));
      const int64_t dv = d == 64 ? 64 : 24;
      Tensor q0 = ops::to(test::rnd({3, 37, d}, 11), dt), k0 = ops::to(test::rnd({3, 45, d}, 12), dt);
      Tensor v0 = ops::to(test::rnd({3, 45, dv}, 13), dt), w = ops::to(test::rnd({3, 37, dv}, 14), dt);
      std::vector<Tensor> grads[2], outs;
      for (int dev = 0; dev < 2; ++dev) {
        const Device D = dev ? Device::cuda() : Device::cpu();
        Tensor q = ops::to(q0, D).detach().requires_grad_(true), k = ops::to(k0, D).detach().requires_grad_(true);
        Tensor v = ops::to(v0, D).detach().requires_grad_(true);
        Tensor o = ops::attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(d)));
        backward(ops::sum(ops::mul(o, ops::to(w, D))));
        outs.push_back(ops::to(ops::to(o.detach(), Device::cpu()), DType::F64));
        for (const Tensor& t : {q, k, v}) grads[dev].push_back(ops::to(ops::to(t.grad(), Device::cpu()), DType::F64));
      }
      const double tol = dt == DType::BF16 ? 2e-2 : dt == DType::F32 ? 2e-5 : 1e-11;
      EXPECT_TRUE(test::all_close(outs[1], outs[0], tol, tol));
      for (int i = 0; i < 3; ++i) EXPECT_TRUE(test::all_close(grads[1][i], grads[0][i], tol, tol)) << "gradient " << i;
    }
  }
}

// conv2d on the GPU (cuDNN's forward when built in, with the composite backward; im2col + GEMM
// otherwise) against the CPU: forward, first derivatives for x, w, b, and a second derivative (the
// gradient of ⟨∇ₓ, v⟩ for w), over strides, paddings and non-square kernels.
TEST(CudaConv, ForwardFirstAndSecondDerivativesMatchTheCpu) {
  VGG_REQUIRE_CUDA();
  struct Geom {
    Shape x, w;
    ops::Conv2dOptions o;
  };
  const std::vector<Geom> geoms = {{{2, 3, 9, 11}, {5, 3, 3, 3}, {1, 1, 1, 1}},
                                   {{1, 4, 12, 20}, {6, 4, 2, 2}, {2, 2, 0, 0}},  // the MMDiT's patchify
                                   {{3, 2, 7, 8}, {4, 2, 3, 2}, {2, 1, 1, 0}}};
  for (DType dt : {DType::F64, DType::F32}) {
    for (size_t gi = 0; gi < geoms.size(); ++gi) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + " geometry " + std::to_string(gi));
      const Geom& G = geoms[gi];
      Tensor x0 = ops::to(test::rnd(G.x, 21), dt), w0 = ops::to(test::rnd(G.w, 22), dt);
      Tensor b0 = ops::to(test::rnd({G.w[0]}, 23), dt);
      std::vector<Tensor> res[2];
      for (int dev = 0; dev < 2; ++dev) {
        const Device D = dev ? Device::cuda() : Device::cpu();
        Tensor x = ops::to(x0, D).detach().requires_grad_(true), w = ops::to(w0, D).detach().requires_grad_(true);
        Tensor b = ops::to(b0, D).detach().requires_grad_(true);
        Tensor y = ops::conv2d(x, w, b, G.o);
        Tensor r = ops::to(test::rnd(y.shape(), 24), dt);
        auto g = grad({ops::sum(ops::mul(y, ops::to(r, D)))}, {x, w, b}, {}, /*create_graph=*/true);
        Tensor v = ops::to(ops::to(test::rnd(x.shape(), 25), dt), D);
        auto gg = grad({ops::sum(ops::mul(g[0], v))}, {w});
        for (const Tensor& t : {y, g[0], g[1], g[2], gg[0]})
          res[dev].push_back(ops::to(ops::to(t.detach(), Device::cpu()), DType::F64));
      }
      const double tol = dt == DType::F32 ? 2e-5 : 1e-11;
      const char* what[] = {"output", "grad x", "grad w", "grad b", "second derivative"};
      for (int i = 0; i < 5; ++i) EXPECT_TRUE(test::all_close(res[1][i], res[0][i], tol, tol)) << what[i];
    }
  }
}
