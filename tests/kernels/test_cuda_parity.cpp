// CPU vs CUDA parity for the device kernels (elementwise, GEMM, indexing, convolution pieces, reductions, softmax, norms), one table of op cases (DESIGN.md §4: f32 within a few
// ulps of the CPU, bf16 within one bf16 ulp, f64 and integers to 1e-12 / exactly). Every case runs
// at an odd size (not a multiple of the 16-byte vector width) in f32, bf16 and f64, with a
// contiguous and a non-contiguous (transposed) input. A kernel-level check writes into a poisoned
// device buffer with guard elements on both sides that must stay untouched. Without a GPU every test
// skips with the CUDA error string.
#include <algorithm>
#include <cmath>
#include <functional>

#include "autograd/engine.h"
#include "autograd/ops.h"
#include "kernels/elementwise.h"
#include "tensor/dispatch.h"
#include "tests/support/test_support.h"

using namespace vgg;

namespace {

struct ParityCase {
  std::string name;
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  int inputs = 1;
  double lo = -2, hi = 2;  // input range
  // absolute tolerance, as a fraction of the output's scale (max |ref|) times the dtype's rtol: a
  // result near zero by cancellation carries the rounding of the terms that cancelled (sums of many
  // terms: larger)
  double atol = 0.5;
};
std::ostream& operator<<(std::ostream& os, const ParityCase& c) { return os << c.name; }

std::vector<ParityCase> cases() {
  using namespace ops;
  auto U = [](std::string n, std::function<Tensor(const Tensor&)> f, double lo = -2, double hi = 2, double atol = 0.5) {
    return ParityCase{n, [f](const std::vector<Tensor>& in) { return f(in[0]); }, 1, lo, hi, atol};
  };
  auto B = [](std::string n, std::function<Tensor(const Tensor&, const Tensor&)> f, double lo = -2, double hi = 2,
              double atol = 0.5) {
    return ParityCase{n, [f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, 2, lo, hi, atol};
  };
  return {
      U("neg", [](const Tensor& x) { return neg(x); }),
      U("abs", [](const Tensor& x) { return abs(x); }),
      U("exp", [](const Tensor& x) { return exp(x); }),
      U("log", [](const Tensor& x) { return log(x); }, 0.1, 3),
      U("sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1, 3),
      U("rsqrt", [](const Tensor& x) { return rsqrt(x); }, 0.1, 3),
      U("square", [](const Tensor& x) { return square(x); }),
      U("sin", [](const Tensor& x) { return sin(x); }),
      U("cos", [](const Tensor& x) { return cos(x); }),
      U("tanh", [](const Tensor& x) { return tanh(x); }),
      U("sigmoid", [](const Tensor& x) { return sigmoid(x); }),
      U("silu", [](const Tensor& x) { return silu(x); }),
      U("relu", [](const Tensor& x) { return relu(x); }),
      U("gelu", [](const Tensor& x) { return gelu(x); }),
      U("gelu_tanh", [](const Tensor& x) { return gelu(x, true); }),
      U("sign", [](const Tensor& x) { return sign(x); }),
      U("reciprocal", [](const Tensor& x) { return reciprocal(x); }, 0.2, 3),
      U("pow_scalar", [](const Tensor& x) { return pow(x, 1.5); }, 0.1, 3),
      U("clamp", [](const Tensor& x) { return clamp(x, -0.5, 0.7); }),
      U("add_mul_scalar", [](const Tensor& x) { return mul(add(x, 0.25), -3.0); }),
      B("add", [](const Tensor& a, const Tensor& b) { return add(a, b); }),
      B("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }),
      B("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }),
      B("div", [](const Tensor& a, const Tensor& b) { return div(a, b); }, 0.2, 3),
      B("pow", [](const Tensor& a, const Tensor& b) { return pow(a, b); }, 0.2, 2),
      B("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }),
      B("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }),
      B("add_broadcast_row", [](const Tensor& a, const Tensor& b) { return add(a, narrow(b, 0, 0, 1)); }),
      B("mul_broadcast_col", [](const Tensor& a, const Tensor& b) { return mul(a, narrow(b, 1, 2, 1)); }),
      B("compare_where", [](const Tensor& a, const Tensor& b) { return where(gt(a, b), a, mul(b, 2.0)); }),
      B("eq_le_cast", [](const Tensor& a, const Tensor& b) { return add(to(le(a, b), a.dtype()), to(eq(a, a), a.dtype())); }),
      U("cast_roundtrip", [](const Tensor& x) { return to(to(to(x, DType::BF16), DType::F64), x.dtype()); }),
      U("cast_int", [](const Tensor& x) { return to(to(mul(x, 10.0), DType::I64), x.dtype()); }),
      // GEMM (gemm.cu, cuBLASLt): both transpose flags, a broadcast batch
      B("matmul_nt", [](const Tensor& a, const Tensor& b) { return matmul(a, transpose(b, 0, 1)); }, -2, 2, 2),
      B("matmul_tn", [](const Tensor& a, const Tensor& b) { return matmul(transpose(a, 0, 1), b); }, -2, 2, 2),
      B("matmul_batched", [](const Tensor& a, const Tensor& b) {
        Tensor a3 = reshape(contiguous(narrow(a, 0, 0, 28)), {4, 7, a.size(1)});
        return matmul(a3, transpose(b, 0, 1));
      }, -2, 2, 2),
      // indexing (index_rng.cu); the indices live on the input's device
      U("index_select_add", [](const Tensor& x) {
        Tensor i = to(from_vector(std::vector<int64_t>{3, 0, 3, 7}, {4}), x.device());
        Tensor sel = index_select(x, 1, i);  // [rows, 4], column 3 twice
        return index_add(mul(x, 0.5), 1, i, sel);  // repeated index: the sums in order
      }),
      U("gather_scatter_add", [](const Tensor& x) {
        std::vector<int64_t> iv;
        for (int64_t r = 0; r < x.size(0); ++r)
          for (int64_t j = 0; j < 3; ++j) iv.push_back((r * 7 + j * 5) % x.size(1));
        Tensor i = to(from_vector(iv, {x.size(0), 3}), x.device());
        return scatter_add(x, 1, i, mul(gather(x, 1, i), 2.0));
      }),
      U("embedding", [](const Tensor& x) {
        Tensor i = to(from_vector(std::vector<int64_t>{1, 5, 1, 0, 9, 2}, {2, 3}), x.device());
        return embedding(x, i);
      }),
      // convolution pieces (conv.cu): im2col + GEMM, pooling with stride and padding, the adjoints
      U("conv2d", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 10 * 12)), {2, 3, 10, 12});
        Tensor w = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 720, 4 * 3 * 3 * 3)), {4, 3, 3, 3});
        return conv2d(img, w, Tensor(), {2, 1, 1, 0});
      }, -2, 2, 2),
      U("col2im_adjoint", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 7 * 9)), {2, 3, 7, 9});
        return col2im(im2col(img, 3, 2, {2, 1, 1, 1}), {2, 3, 7, 9}, 3, 2, {2, 1, 1, 1});
      }),
      // non-overlapping patches (the MMDiT's patch embedding): one GEMM over a permuted view on the GPU
      U("conv2d_patch", [](const Tensor& x) {
        Tensor xx = reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 24), {2, 3, 12, 8});
        Tensor w = reshape(narrow(narrow(x, 0, 24, 5), 1, 0, 24), {10, 3, 2, 2});
        Tensor b = reshape(narrow(narrow(x, 1, 24, 1), 0, 0, 10), {10});
        return conv2d(xx, w, b, {2, 2, 0, 0});
      }, -2, 2, 2),
      U("avg_pool2d_adjoint", [](const Tensor& x) {
        Tensor img = reshape(contiguous(narrow(reshape(contiguous(x), {-1}), 0, 0, 2 * 3 * 11 * 9)), {2, 3, 11, 9});
        Tensor y = avg_pool2d(img, 3, 2, {2, 1, 1, 0});
        return avg_pool2d_adjoint(y, {2, 3, 11, 9}, 3, 2, {2, 1, 1, 0});
      }),
      // rows (reduce.cu): the inner == 1 block-per-row path and the strided-column path
      U("sum_all", [](const Tensor& x) { return sum(x); }, -2, 2, 2),
      U("sum_rows_cols", [](const Tensor& x) { return add(sum(x, {1}, true), sum(x, {0}, true)); }),
      U("mean_amax_amin", [](const Tensor& x) { return add(mean(x, {1}, true), sub(amax(x, {0}, true), amin(x, {1}, true))); }),
      U("argmax_argmin", [](const Tensor& x) { return to(add(argmax(x, 1), argmin(x, 1)), x.dtype()); }),
      U("softmax_last", [](const Tensor& x) { return softmax(x, 1); }),
      U("softmax_first", [](const Tensor& x) { return softmax(x, 0); }),
      U("log_softmax", [](const Tensor& x) { return add(log_softmax(x, 1), log_softmax(x, 0)); }),
      U("layer_norm", [](const Tensor& x) { return layer_norm(x, {x.size(1)}); }),
      U("layer_norm_affine", [](const Tensor& x) {
        Tensor w = mul(narrow(x, 0, 0, 1), 0.5), b = narrow(x, 0, 1, 1);
        return layer_norm(x, {x.size(1)}, reshape(contiguous(w), {x.size(1)}), reshape(contiguous(b), {x.size(1)}));
      }),
      // x, y [2, T, C] and scale, shift, gate [2, C] are row ranges of the [R, C] input (R is 29 when
      // transposed): views, so the transposed case hands the ops strided inputs of the right shapes
      U("layer_norm_modulate", [](const Tensor& x) {
        Tensor x3 = reshape(narrow(x, 0, 0, 24), {2, 12, x.size(1)});
        Tensor sc = narrow(x, 0, 24, 2), sh = mul(narrow(x, 0, 26, 2), 0.5);
        return layer_norm_modulate(x3, sc, sh);
      }),
      U("gated_residual", [](const Tensor& x) {
        Tensor x3 = reshape(narrow(x, 0, 0, 12), {2, 6, x.size(1)});
        Tensor y3 = reshape(narrow(x, 0, 12, 12), {2, 6, x.size(1)});
        return gated_residual(x3, narrow(x, 0, 24, 2), y3);
      }),
      // the fused backwards on the GPU against the CPU's composed ones: gradients of sum(y ⊙ R) for
      // every input (bf16: the CPU rounds each composed step, hence the wider band)
      U("layer_norm_modulate_backward", [](const Tensor& x) {
        Tensor x3 = contiguous(reshape(narrow(x, 0, 0, 24), {2, 12, x.size(1)})).detach().requires_grad_(true);
        Tensor sc = contiguous(narrow(x, 0, 24, 2)).detach().requires_grad_(true);
        Tensor sh = contiguous(narrow(x, 0, 26, 2)).detach().requires_grad_(true);
        Tensor R = contiguous(reshape(narrow(x, 0, 3, 24), {2, 12, x.size(1)})).detach();
        auto g = grad({sum(mul(layer_norm_modulate(x3, sc, sh), R))}, {x3, sc, sh});
        return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
      }, -2, 2, 4),
      // a linear layer with its bias in the GEMM's epilogue on the GPU (matmul + add on the CPU), and
      // its gradients
      U("linear_bias", [](const Tensor& x) {
        Tensor xx = reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 28), {2, 12, 28});
        Tensor w = narrow(narrow(x, 0, 3, 20), 1, 1, 28), b = reshape(narrow(narrow(x, 1, 5, 1), 0, 0, 20), {20});
        return linear(xx, w, b);
      }, -2, 2, 2),
      U("linear_bias_backward", [](const Tensor& x) {
        Tensor xx = contiguous(reshape(narrow(narrow(x, 0, 0, 24), 1, 0, 28), {2, 12, 28})).detach().requires_grad_(true);
        Tensor w = contiguous(narrow(narrow(x, 0, 3, 20), 1, 1, 28)).detach().requires_grad_(true);
        Tensor b = contiguous(reshape(narrow(narrow(x, 1, 5, 1), 0, 0, 20), {20})).detach().requires_grad_(true);
        Tensor R = contiguous(reshape(narrow(narrow(x, 0, 1, 24), 1, 2, 20), {2, 12, 20})).detach();
        auto g = grad({sum(mul(linear(xx, w, b), R))}, {xx, w, b});
        return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
      }, -2, 2, 2),
      U("gelu_tanh_backward", [](const Tensor& x) {  // one fused pass on the GPU, composed on the CPU
        Tensor xv = contiguous(x).detach().requires_grad_(true);
        Tensor R = contiguous(transpose(contiguous(transpose(x, 0, 1)), 0, 1)).detach();
        return grad({sum(mul(gelu(xv, true), mul(R, 0.5)))}, {xv})[0];
      }, -3, 3, 2),
      U("gated_residual_backward", [](const Tensor& x) {
        Tensor x3 = contiguous(reshape(narrow(x, 0, 0, 12), {2, 6, x.size(1)})).detach().requires_grad_(true);
        Tensor y3 = contiguous(reshape(narrow(x, 0, 12, 12), {2, 6, x.size(1)})).detach().requires_grad_(true);
        Tensor gt = contiguous(narrow(x, 0, 24, 2)).detach().requires_grad_(true);
        Tensor R = contiguous(reshape(narrow(x, 0, 5, 12), {2, 6, x.size(1)})).detach();
        auto g = grad({sum(mul(gated_residual(x3, gt, y3), R))}, {x3, gt, y3});
        return cat({reshape(g[0], {-1}), reshape(g[1], {-1}), reshape(g[2], {-1})}, 0);
      }, -2, 2, 4),
      U("rms_norm", [](const Tensor& x) { return rms_norm(x, {x.size(1)}, reshape(contiguous(narrow(x, 0, 2, 1)), {x.size(1)})); }),
  };
}

// tolerance by dtype (docs/testing.md, "CUDA parity"): |got - ref| <= rtol·|ref| + rtol·atol·scale with
// rtol f32 2e-6 (a few ulps of the CPU libm), bf16 one bf16 ulp, f64 1e-12
double rtol(DType d) { return d == DType::BF16 ? 1.0 / 128 : d == DType::F32 ? 2e-6 : 1e-12; }

class CudaParity : public ::testing::TestWithParam<ParityCase> {};

TEST_P(CudaParity, MatchesTheCpu) {
  VGG_REQUIRE_CUDA();
  const ParityCase& c = GetParam();
  for (DType dt : {DType::F32, DType::BF16, DType::F64}) {
    for (bool transposed : {false, true}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + (transposed ? " transposed" : " contiguous"));
      std::vector<Tensor> cpu, gpu;
      for (int i = 0; i < c.inputs; ++i) {
        Tensor x = ops::to(test::rnd_uniform({37, 29}, c.lo, c.hi, 100 + i), dt);  // 1073 elements
        if (transposed) x = ops::transpose(x, 0, 1);
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
      EXPECT_TRUE(test::all_close(back, r, rtol(dt) * c.atol * scale, rtol(dt)));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaParity, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<ParityCase>& i) { return i.param.name; });

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
