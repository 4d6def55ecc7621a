// CUDA elementwise kernels (contracts in kernels/elementwise.h): unary, binary with broadcasting,
// where, copy/cast and fill, registered for the same dtypes as the CPU ones.
//
// One kernel per family and dtype; the op is a runtime switch inside it (a uniform branch: every
// thread takes the same case), which keeps the number of template instantiations to the dtypes.
// Arithmetic runs in f32 for f32/bf16 (bf16 rounds to nearest even on store, as on the CPU), in f64
// for f64 and the integer types. Inputs are strided (stride 0 broadcasts); outputs are contiguous.
// When every operand is dense, each thread moves 16 bytes at a time (vector loads and stores) if
// the pointers are 16-byte aligned; otherwise indices are decomposed per dimension.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/elementwise.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

// Element offset of row-major linear index i in a strided layout.
__device__ __forceinline__ int64_t offset_of(int64_t i, const Layout& l) {
  int64_t off = 0;
  for (int d = l.ndim - 1; d >= 0; --d) {
    const int64_t s = l.shape[d];
    off += (i % s) * l.stride[d];
    i /= s;
  }
  return off;
}

bool dense(const Layout& l) {
  int64_t acc = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    if (l.shape[d] != 1 && l.stride[d] != acc) return false;
    acc *= l.shape[d];
  }
  return true;
}

int64_t numel(const Layout& l) {
  int64_t n = 1;
  for (int d = 0; d < l.ndim; ++d) n *= l.shape[d];
  return n;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

unsigned blocks_for(int64_t n, int per_thread = 1) {
  const int64_t b = (n / per_thread + 255) / 256;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 16 ? 65535 * 16 : b));
}

// ---- unary ----------------------------------------------------------------------------------

template <class V>
__device__ __forceinline__ V unary_op(UnaryOp op, V x, V a, V b) {
  const V one = V(1);
  switch (op) {
    case UnaryOp::Neg: return -x;
    case UnaryOp::Abs: return fabs(x);
    case UnaryOp::Exp: return exp(x);
    case UnaryOp::Log: return log(x);
    case UnaryOp::Sqrt: return sqrt(x);
    case UnaryOp::Rsqrt: return one / sqrt(x);
    case UnaryOp::Square: return x * x;
    case UnaryOp::Sin: return sin(x);
    case UnaryOp::Cos: return cos(x);
    case UnaryOp::Tanh: return tanh(x);
    case UnaryOp::Sigmoid: return one / (one + exp(-x));
    case UnaryOp::Silu: return x / (one + exp(-x));
    case UnaryOp::Relu: return x > V(0) ? x : V(0);
    case UnaryOp::GeluErf: return V(0.5) * x * (one + erf(x * V(0.70710678118654752440)));
    case UnaryOp::GeluTanh: return x / (one + exp(-V(2 * 0.7978845608028654) * (x + V(0.044715) * x * x * x)));
    case UnaryOp::GeluTanhGrad: {
      const V k2 = V(2 * 0.7978845608028654);
      const V s = one / (one + exp(-k2 * (x + V(0.044715) * x * x * x)));
      return s + x * s * (one - s) * k2 * (one + V(3 * 0.044715) * x * x);
    }
    case UnaryOp::Erf: return erf(x);
    case UnaryOp::Sign: return V((x > V(0)) - (x < V(0)));
    case UnaryOp::Reciprocal: return one / x;
    case UnaryOp::PowScalar: return a == V(2) ? x * x : pow(x, a);
    case UnaryOp::Clamp: return x < a ? a : (x > b ? b : x);
    case UnaryOp::AddScalar: return x + a;
    case UnaryOp::MulScalar: return x * a;
    case UnaryOp::Step: return x > V(0) ? V(1) : V(0);
    case UnaryOp::InRange: return (x >= a && x <= b) ? V(1) : V(0);
  }
  return x;
}

template <class T>
__global__ void unary_strided(UnaryParams p, Layout xl, const T* x, T* y, int64_t n) {
  using V = Cmp<T>;
  const V a = static_cast<V>(p.a), b = static_cast<V>(p.b);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = st<T>(unary_op<V>(p.op, ld(x + offset_of(i, xl)), a, b));
}

// Dense operands, 16 bytes per thread per iteration (W elements), the tail element by element.
template <class T>
__global__ void unary_dense(UnaryParams p, const T* x, T* y, int64_t n) {
  using V = Cmp<T>;
  constexpr int W = 16 / sizeof(T);
  const V a = static_cast<V>(p.a), b = static_cast<V>(p.b);
  const int64_t nv = n / W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nv; i += stride) {
    union {
      uint4 u;
      T t[W];
    } in, out;
    in.u = reinterpret_cast<const uint4*>(x)[i];
#pragma unroll
    for (int k = 0; k < W; ++k) out.t[k] = st<T>(unary_op<V>(p.op, ld(&in.t[k]), a, b));
    reinterpret_cast<uint4*>(y)[i] = out.u;
  }
  for (int64_t i = nv * W + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    y[i] = st<T>(unary_op<V>(p.op, ld(x + i), a, b));
}

template <class T>
void unary_kernel(const UnaryParams& p, const Layout& xl, const void* xp, void* yp) {
  const int64_t n = numel(xl);
  if (n == 0) return;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if (dense(xl) && aligned16(x) && aligned16(y))
    unary_dense<T><<<blocks_for(n, 16 / sizeof(T)), 256>>>(p, x, y, n);
  else
    unary_strided<T><<<blocks_for(n), 256>>>(p, xl, x, y, n);
  check_launch(unary_name(p.op));
}

// ---- binary ---------------------------------------------------------------------------------

template <class V>
__device__ __forceinline__ V binary_op(BinaryOp op, V x, V y) {
  switch (op) {
    case BinaryOp::Add: return x + y;
    case BinaryOp::Sub: return x - y;
    case BinaryOp::Mul: return x * y;
    case BinaryOp::Div: return x / y;
    case BinaryOp::Pow: return pow(x, y);
    case BinaryOp::Maximum: return (x != x || x > y) ? x : y;
    case BinaryOp::Minimum: return (x != x || x < y) ? x : y;
    case BinaryOp::Eq: return V(x == y);
    case BinaryOp::Ne: return V(x != y);
    case BinaryOp::Lt: return V(x < y);
    case BinaryOp::Le: return V(x <= y);
    case BinaryOp::Gt: return V(x > y);
    case BinaryOp::Ge: return V(x >= y);
  }
  return x;
}

template <class T, class O>
__global__ void binary_strided(BinaryOp op, Layout al, const T* a, Layout bl, const T* b, O* out, int64_t n) {
  using V = Cmp<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = st<O>(binary_op<V>(op, ld(a + offset_of(i, al)), ld(b + offset_of(i, bl))));
}

template <class T>
__global__ void binary_dense(BinaryOp op, const T* a, const T* b, T* out, int64_t n) {
  using V = Cmp<T>;
  constexpr int W = 16 / sizeof(T);
  const int64_t nv = n / W;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nv; i += stride) {
    union {
      uint4 u;
      T t[W];
    } va, vb, vo;
    va.u = reinterpret_cast<const uint4*>(a)[i];
    vb.u = reinterpret_cast<const uint4*>(b)[i];
#pragma unroll
    for (int k = 0; k < W; ++k) vo.t[k] = st<T>(binary_op<V>(op, ld(&va.t[k]), ld(&vb.t[k])));
    reinterpret_cast<uint4*>(out)[i] = vo.u;
  }
  for (int64_t i = nv * W + blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride)
    out[i] = st<T>(binary_op<V>(op, ld(a + i), ld(b + i)));
}

template <class T>
void binary_kernel(BinaryOp op, const Layout& al, const void* ap, const Layout& bl, const void* bp, void* out) {
  const int64_t n = numel(al);
  if (n == 0) return;
  const T* a = static_cast<const T*>(ap);
  const T* b = static_cast<const T*>(bp);
  if (is_comparison(op)) {
    binary_strided<T, bool><<<blocks_for(n), 256>>>(op, al, a, bl, b, static_cast<bool*>(out), n);
  } else if (dense(al) && dense(bl) && aligned16(a) && aligned16(b) && aligned16(out)) {
    binary_dense<T><<<blocks_for(n, 16 / sizeof(T)), 256>>>(op, a, b, static_cast<T*>(out), n);
  } else {
    binary_strided<T, T><<<blocks_for(n), 256>>>(op, al, a, bl, b, static_cast<T*>(out), n);
  }
  check_launch(binary_name(op));
}

// ---- where, copy/cast, fill -----------------------------------------------------------------

template <class T>
__global__ void where_strided(Layout cl, const bool* c, Layout al, const T* a, Layout bl, const T* b, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = c[offset_of(i, cl)] ? a[offset_of(i, al)] : b[offset_of(i, bl)];
}

template <class T>
void where_kernel(const Layout& cl, const bool* cp, const Layout& al, const void* ap, const Layout& bl, const void* bp,
                  void* out) {
  const int64_t n = numel(al);
  if (n == 0) return;
  where_strided<T><<<blocks_for(n), 256>>>(cl, cp, al, static_cast<const T*>(ap), bl, static_cast<const T*>(bp),
                                            static_cast<T*>(out), n);
  check_launch("where");
}

template <class D, class S>
__global__ void copy_strided(Layout dl, D* d, Layout sl, const S* s, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<D, S>)
      d[offset_of(i, dl)] = s[offset_of(i, sl)];
    else
      d[offset_of(i, dl)] = st<D>(ld(s + offset_of(i, sl)));
  }
}

template <class D, class S>
void copy_typed(const Layout& dl, void* dp, const Layout& sl, const void* sp) {
  const int64_t n = numel(dl);
  if (n == 0) return;
  if constexpr (std::is_same_v<D, S>) {
    if (dense(dl) && dense(sl)) {
      if (cudaMemcpyAsync(dp, sp, static_cast<size_t>(n) * sizeof(D), cudaMemcpyDeviceToDevice, 0) != cudaSuccess)
        check_launch("copy (cudaMemcpyAsync)");
      return;
    }
  }
  copy_strided<D, S><<<blocks_for(n), 256>>>(dl, static_cast<D*>(dp), sl, static_cast<const S*>(sp), n);
  check_launch("copy");
}

template <class D>
void copy_kernel(const Layout& dl, void* dp, const Layout& sl, const void* sp, DType src) {
  switch (src) {
    case DType::F32: return copy_typed<D, float>(dl, dp, sl, sp);
    case DType::F64: return copy_typed<D, double>(dl, dp, sl, sp);
    case DType::BF16: return copy_typed<D, bf16>(dl, dp, sl, sp);
    case DType::I32: return copy_typed<D, int32_t>(dl, dp, sl, sp);
    case DType::I64: return copy_typed<D, int64_t>(dl, dp, sl, sp);
    case DType::Bool: return copy_typed<D, bool>(dl, dp, sl, sp);
  }
}

template <class T>
__global__ void fill_dense(T* out, T v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) out[i] = v;
}

template <class T>
void fill_kernel(int64_t n, void* out, double v) {
  if (n <= 0) return;
  T val;
  if constexpr (std::is_same_v<T, bf16>)
    val = __float2bfloat16_rn(static_cast<float>(v));
  else if constexpr (std::is_same_v<T, bool>)
    val = v != 0;
  else
    val = static_cast<T>(v);
  fill_dense<T><<<blocks_for(n), 256>>>(static_cast<T*>(out), val, n);
  check_launch("fill");
}

}  // namespace

VGG_REGISTER_KERNEL("unary", CUDA, F32, (&unary_kernel<float>));
VGG_REGISTER_KERNEL("unary", CUDA, F64, (&unary_kernel<double>));
VGG_REGISTER_KERNEL("unary", CUDA, BF16, (&unary_kernel<bf16>));
VGG_REGISTER_KERNEL("unary", CUDA, I32, (&unary_kernel<int32_t>));
VGG_REGISTER_KERNEL("unary", CUDA, I64, (&unary_kernel<int64_t>));
VGG_REGISTER_KERNEL("binary", CUDA, F32, (&binary_kernel<float>));
VGG_REGISTER_KERNEL("binary", CUDA, F64, (&binary_kernel<double>));
VGG_REGISTER_KERNEL("binary", CUDA, BF16, (&binary_kernel<bf16>));
VGG_REGISTER_KERNEL("binary", CUDA, I32, (&binary_kernel<int32_t>));
VGG_REGISTER_KERNEL("binary", CUDA, I64, (&binary_kernel<int64_t>));
VGG_REGISTER_KERNEL("where", CUDA, F32, (&where_kernel<float>));
VGG_REGISTER_KERNEL("where", CUDA, F64, (&where_kernel<double>));
VGG_REGISTER_KERNEL("where", CUDA, BF16, (&where_kernel<bf16>));
VGG_REGISTER_KERNEL("where", CUDA, I32, (&where_kernel<int32_t>));
VGG_REGISTER_KERNEL("where", CUDA, I64, (&where_kernel<int64_t>));
VGG_REGISTER_KERNEL("where", CUDA, Bool, (&where_kernel<bool>));
VGG_REGISTER_KERNEL("copy", CUDA, F32, (&copy_kernel<float>));
VGG_REGISTER_KERNEL("copy", CUDA, F64, (&copy_kernel<double>));
VGG_REGISTER_KERNEL("copy", CUDA, BF16, (&copy_kernel<bf16>));
VGG_REGISTER_KERNEL("copy", CUDA, I32, (&copy_kernel<int32_t>));
VGG_REGISTER_KERNEL("copy", CUDA, I64, (&copy_kernel<int64_t>));
VGG_REGISTER_KERNEL("copy", CUDA, Bool, (&copy_kernel<bool>));
VGG_REGISTER_KERNEL("fill", CUDA, F32, (&fill_kernel<float>));
VGG_REGISTER_KERNEL("fill", CUDA, F64, (&fill_kernel<double>));
VGG_REGISTER_KERNEL("fill", CUDA, BF16, (&fill_kernel<bf16>));
VGG_REGISTER_KERNEL("fill", CUDA, I32, (&fill_kernel<int32_t>));
VGG_REGISTER_KERNEL("fill", CUDA, I64, (&fill_kernel<int64_t>));
VGG_REGISTER_KERNEL("fill", CUDA, Bool, (&fill_kernel<bool>));

}  // namespace vgg::kernels::cuda
