// CUDA elementwise kernels (contracts in kernels/elementwise.h): unary, binary with broadcasting,
// where, copy/cast and fill, registered for the same dtypes as the CPU ones.
//
// One kernel per family and dtype; the op is a runtime switch inside it (a uniform branch: every
// thread takes the same case), which keeps the number of template instantiations to the dtypes.
// Arithmetic runs in f32 for f32/bf16 (bf16 rounds to nearest even on store, as on the CPU), in f64
// for f64 and the integer types.
//
// Every launch goes through an iteration plan (iter.cuh): size-1 dims dropped, mergeable dims
// merged, 32-bit multiply-shift index arithmetic, and 16-byte vector loads and stores whenever the
// innermost dim is contiguous or broadcast in every operand (the common cases of the MMDiT:
// [B, S, C] against a [B, 1, C] modulation, permuted [B, S, H, d] views with d innermost, casts).
// Each thread handles kUnroll vectors per loop trip, loads first, so enough bytes are in flight to
// cover the memory latency. Same-dtype copies move raw bits (one kernel per element size).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/iter.cuh"
#include "kernels/elementwise.h"
#include "tensor/dispatch.h"
#include "tensor/error.h"

namespace vgg::kernels::cuda {

IterPlan make_plan(int n, const Layout* const* layouts, const int* elem_bytes, const void* const* ptrs, bool vectorise,
                   int* vec_width) {
  IterPlan p;
  p.nops = n;
  *vec_width = 1;
  const Layout& l0 = *layouts[0];
  int nd = 0;
  int64_t numel = 1;
  for (int d = l0.ndim - 1; d >= 0; --d) {
    const int64_t s = l0.shape[d];
    numel *= s;
    if (s == 1) continue;
    bool merge = nd > 0;
    for (int k = 0; k < n && merge; ++k) merge = layouts[k]->stride[d] == p.stride[k][nd - 1] * p.shape[nd - 1];
    if (merge) {
      p.shape[nd - 1] *= s;
      continue;
    }
    p.shape[nd] = s;
    for (int k = 0; k < n; ++k) p.stride[k][nd] = layouts[k]->stride[d];
    ++nd;
  }
  if (nd == 0) {  // one element (or none)
    p.shape[0] = 1;
    nd = 1;
  }
  p.ndim = nd;
  p.numel = numel;
  if (numel == 0) return p;
  int widest = 1;
  for (int k = 0; k < n; ++k) widest = std::max(widest, elem_bytes[k]);
  const int w = 16 / widest;
  bool vec = vectorise && w > 1 && p.shape[0] % w == 0 && p.stride[0][0] == 1;
  for (int k = 0; k < n && vec; ++k) {
    const int64_t s0 = p.stride[k][0];
    if (s0 == 0) continue;
    if (s0 != 1) {
      vec = false;
      break;
    }
    for (int d = 1; d < nd; ++d) vec = vec && p.stride[k][d] % w == 0;
    vec = vec && reinterpret_cast<uintptr_t>(ptrs[k]) % static_cast<uintptr_t>(w * elem_bytes[k]) == 0;
  }
  if (vec) {
    *vec_width = w;
    p.shape[0] /= w;
    p.numel = numel / w;
    for (int k = 0; k < n; ++k) {
      p.bcast_inner[k] = p.stride[k][0] == 0;
      p.stride[k][0] = p.stride[k][0] == 0 ? 0 : w;
    }
  }
  for (int d = 0; d < nd; ++d)
    p.size[d] = FastDiv(static_cast<uint32_t>(std::min<int64_t>(p.shape[d], INT32_MAX)));
  return p;
}

namespace {

constexpr int kThreads = 256;
constexpr int kUnroll = 2;

template <int B>
struct Bits;
template <>
struct Bits<16> {
  using type = uint4;
};
template <>
struct Bits<8> {
  using type = uint2;
};
template <>
struct Bits<4> {
  using type = uint32_t;
};
template <>
struct Bits<2> {
  using type = uint16_t;
};
template <>
struct Bits<1> {
  using type = uint8_t;
};

// W elements of T moved as one access
template <class T, int W>
union Pack {
  typename Bits<sizeof(T) * W>::type v;
  T t[W];
};

template <class T, int W>
__device__ __forceinline__ Pack<T, W> load_pack(const T* p, bool bcast) {
  Pack<T, W> r;
  if (bcast) {
    const T v = *p;
#pragma unroll
    for (int k = 0; k < W; ++k) r.t[k] = v;
  } else {
    r.v = *reinterpret_cast<const typename Bits<sizeof(T) * W>::type*>(p);
  }
  return r;
}
template <class T, int W>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, W>& r) {
  *reinterpret_cast<typename Bits<sizeof(T) * W>::type*>(p) = r.v;
}

template <int N>
__device__ __forceinline__ void offsets_any(const IterPlan& p, bool big, int64_t i, int64_t (&off)[N]) {
  if (big)
    plan_offsets64<N>(p, i, off);
  else
    plan_offsets<N>(p, static_cast<uint32_t>(i), off);
}

// the plan of an op whose operand 0 is a contiguous output of the shape of `in[0]`
IterPlan plan_with_output(int nin, const Layout* const* in, const void* const* in_ptrs, const int* in_bytes, void* out,
                          int out_bytes, bool vectorise, int* w) {
  Layout ol = *in[0];
  int64_t acc = 1;
  for (int d = ol.ndim - 1; d >= 0; --d) {
    ol.stride[d] = acc;
    acc *= ol.shape[d];
  }
  const Layout* ls[kMaxOperands] = {&ol};
  const void* ps[kMaxOperands] = {out};
  int bytes[kMaxOperands] = {out_bytes};
  for (int k = 0; k < nin; ++k) ls[k + 1] = in[k], ps[k + 1] = in_ptrs[k], bytes[k + 1] = in_bytes[k];
  return make_plan(nin + 1, ls, bytes, ps, vectorise, w);
}

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

// ---- unary ----------------------------------------------------------------------------------

template <class T>
__global__ void unary_vec(UnaryParams p, IterPlan pl, const T* x, T* y) {
  using V = Cmp<T>;
  constexpr int W = 16 / sizeof(T);
  const V a = static_cast<V>(p.a), b = static_cast<V>(p.b);
  const int64_t n = pl.numel, step = int64_t(gridDim.x) * blockDim.x * kUnroll;
  for (int64_t base = blockIdx.x * int64_t(blockDim.x) * kUnroll + threadIdx.x; base < n; base += step) {
    Pack<T, W> in[kUnroll];
    int64_t oy[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * int64_t(blockDim.x);
      if (i < n) {
        int64_t off[2];
        plan_offsets<2>(pl, static_cast<uint32_t>(i), off);
        oy[u] = off[0];
        in[u] = load_pack<T, W>(x + off[1], pl.bcast_inner[1]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * int64_t(blockDim.x) < n) {
        Pack<T, W> o;
#pragma unroll
        for (int k = 0; k < W; ++k) o.t[k] = st<T>(unary_op<V>(p.op, ldv(in[u].t[k]), a, b));
        store_pack<T, W>(y + oy[u], o);
      }
    }
  }
}

template <class T>
__global__ void unary_gen(UnaryParams p, IterPlan pl, bool big, const T* x, T* y) {
  using V = Cmp<T>;
  const V a = static_cast<V>(p.a), b = static_cast<V>(p.b);
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pl.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    offsets_any<2>(pl, big, i, off);
    y[off[0]] = st<T>(unary_op<V>(p.op, ld(x + off[1]), a, b));
  }
}

template <class T>
void unary_kernel(const UnaryParams& p, const Layout& xl, const void* xp, void* yp) {
  const Layout* in[] = {&xl};
  const void* ptrs[] = {xp};
  const int bytes[] = {int(sizeof(T))};
  int w = 1;
  IterPlan pl = plan_with_output(1, in, ptrs, bytes, yp, sizeof(T), true, &w);
  if (pl.numel == 0) return;
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  if (w > 1 && plan_is_32bit(pl))
    unary_vec<T><<<grid_for(pl.numel, kThreads * kUnroll), kThreads>>>(p, pl, x, y);
  else
    unary_gen<T><<<grid_for(pl.numel, kThreads), kThreads>>>(p, pl, !plan_is_32bit(pl), x, y);
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
    case BinaryOp::GeluTanhBwd: {  // x: the upstream gradient, y: the input
      const V one = V(1), k2 = V(2 * 0.7978845608028654);
      const V s = one / (one + exp(-k2 * (y + V(0.044715) * y * y * y)));
      return x * (s + y * s * (one - s) * k2 * (one + V(3 * 0.044715) * y * y));
    }
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
__global__ void binary_vec(BinaryOp op, IterPlan pl, const T* a, const T* b, O* out) {
  using V = Cmp<T>;
  constexpr int W = 16 / sizeof(T);
  const int64_t n = pl.numel, step = int64_t(gridDim.x) * blockDim.x * kUnroll;
  for (int64_t base = blockIdx.x * int64_t(blockDim.x) * kUnroll + threadIdx.x; base < n; base += step) {
    Pack<T, W> va[kUnroll], vb[kUnroll];
    int64_t oo[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * int64_t(blockDim.x);
      if (i < n) {
        int64_t off[3];
        plan_offsets<3>(pl, static_cast<uint32_t>(i), off);
        oo[u] = off[0];
        va[u] = load_pack<T, W>(a + off[1], pl.bcast_inner[1]);
        vb[u] = load_pack<T, W>(b + off[2], pl.bcast_inner[2]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * int64_t(blockDim.x) < n) {
        Pack<O, W> o;
#pragma unroll
        for (int k = 0; k < W; ++k) o.t[k] = st<O>(binary_op<V>(op, ldv(va[u].t[k]), ldv(vb[u].t[k])));
        store_pack<O, W>(out + oo[u], o);
      }
    }
  }
}

template <class T, class O>
__global__ void binary_gen(BinaryOp op, IterPlan pl, bool big, const T* a, const T* b, O* out) {
  using V = Cmp<T>;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pl.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[3];
    offsets_any<3>(pl, big, i, off);
    out[off[0]] = st<O>(binary_op<V>(op, ld(a + off[1]), ld(b + off[2])));
  }
}

template <class T, class O>
void binary_launch(BinaryOp op, const Layout& al, const T* a, const Layout& bl, const T* b, O* out) {
  const Layout* in[] = {&al, &bl};
  const void* ptrs[] = {a, b};
  const int bytes[] = {int(sizeof(T)), int(sizeof(T))};
  int w = 1;
  IterPlan pl = plan_with_output(2, in, ptrs, bytes, out, sizeof(O), true, &w);
  if (pl.numel == 0) return;
  if (w > 1 && plan_is_32bit(pl))
    binary_vec<T, O><<<grid_for(pl.numel, kThreads * kUnroll), kThreads>>>(op, pl, a, b, out);
  else
    binary_gen<T, O><<<grid_for(pl.numel, kThreads), kThreads>>>(op, pl, !plan_is_32bit(pl), a, b, out);
}

template <class T>
void binary_kernel(BinaryOp op, const Layout& al, const void* ap, const Layout& bl, const void* bp, void* out) {
  const T* a = static_cast<const T*>(ap);
  const T* b = static_cast<const T*>(bp);
  if (is_comparison(op))
    binary_launch<T, bool>(op, al, a, bl, b, static_cast<bool*>(out));
  else
    binary_launch<T, T>(op, al, a, bl, b, static_cast<T*>(out));
  check_launch(binary_name(op));
}

// ---- where, copy/cast, fill -----------------------------------------------------------------

template <class T>
__global__ void where_gen(IterPlan pl, bool big, const bool* c, const T* a, const T* b, T* out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pl.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[4];
    offsets_any<4>(pl, big, i, off);
    out[off[0]] = c[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <class T>
void where_kernel(const Layout& cl, const bool* cp, const Layout& al, const void* ap, const Layout& bl, const void* bp,
                  void* out) {
  const Layout* in[] = {&cl, &al, &bl};
  const void* ptrs[] = {cp, ap, bp};
  const int bytes[] = {1, int(sizeof(T)), int(sizeof(T))};
  int w = 1;
  IterPlan pl = plan_with_output(3, in, ptrs, bytes, out, sizeof(T), false, &w);
  if (pl.numel == 0) return;
  where_gen<T><<<grid_for(pl.numel, kThreads), kThreads>>>(pl, !plan_is_32bit(pl), cp, static_cast<const T*>(ap),
                                                          static_cast<const T*>(bp), static_cast<T*>(out));
  check_launch("where");
}

// dst (operand 0) = cast(src) (operand 1), both strided
template <class D, class S>
__global__ void copy_vec(IterPlan pl, D* d, const S* s) {
  constexpr int W = 16 / (sizeof(D) > sizeof(S) ? sizeof(D) : sizeof(S));
  const int64_t n = pl.numel, step = int64_t(gridDim.x) * blockDim.x * kUnroll;
  for (int64_t base = blockIdx.x * int64_t(blockDim.x) * kUnroll + threadIdx.x; base < n; base += step) {
    Pack<S, W> in[kUnroll];
    int64_t od[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * int64_t(blockDim.x);
      if (i < n) {
        int64_t off[2];
        plan_offsets<2>(pl, static_cast<uint32_t>(i), off);
        od[u] = off[0];
        in[u] = load_pack<S, W>(s + off[1], pl.bcast_inner[1]);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      if (base + u * int64_t(blockDim.x) < n) {
        Pack<D, W> o;
#pragma unroll
        for (int k = 0; k < W; ++k) {
          if constexpr (std::is_same_v<D, S>)
            o.t[k] = in[u].t[k];
          else
            o.t[k] = st<D>(ldv(in[u].t[k]));
        }
        store_pack<D, W>(d + od[u], o);
      }
    }
  }
}

template <class D, class S>
__global__ void copy_gen(IterPlan pl, bool big, D* d, const S* s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < pl.numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t off[2];
    offsets_any<2>(pl, big, i, off);
    if constexpr (std::is_same_v<D, S>)
      d[off[0]] = s[off[1]];
    else
      d[off[0]] = st<D>(ld(s + off[1]));
  }
}

template <class T>
constexpr bool is_float_type = std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, bf16>;

template <class D, class S>
void copy_launch(const Layout& dl, void* dp, const Layout& sl, const void* sp) {
  const Layout* ls[] = {&dl, &sl};
  const void* ps[] = {dp, sp};
  const int bytes[] = {int(sizeof(D)), int(sizeof(S))};
  constexpr bool can_vec = std::is_same_v<D, S> || (is_float_type<D> && is_float_type<S>);
  int w = 1;
  IterPlan pl = make_plan(2, ls, bytes, ps, can_vec, &w);
  if (pl.numel == 0) return;
  if constexpr (can_vec) {
    if (w > 1 && plan_is_32bit(pl)) {
      copy_vec<D, S><<<grid_for(pl.numel, kThreads * kUnroll), kThreads>>>(pl, static_cast<D*>(dp), static_cast<const S*>(sp));
      return;
    }
  }
  copy_gen<D, S><<<grid_for(pl.numel, kThreads), kThreads>>>(pl, !plan_is_32bit(pl), static_cast<D*>(dp),
                                                            static_cast<const S*>(sp));
}

bool dense(const Layout& l) {
  int64_t acc = 1;
  for (int d = l.ndim - 1; d >= 0; --d) {
    if (l.shape[d] != 1 && l.stride[d] != acc) return false;
    acc *= l.shape[d];
  }
  return true;
}

template <int B>
using RawBits = std::conditional_t<B == 1, uint8_t, std::conditional_t<B == 2, uint16_t, std::conditional_t<B == 4, uint32_t, uint64_t>>>;

template <class D, class S>
void copy_typed(const Layout& dl, void* dp, const Layout& sl, const void* sp) {
  if constexpr (std::is_same_v<D, S>) {
    if (dense(dl) && dense(sl)) {
      int64_t n = 1;
      for (int d = 0; d < dl.ndim; ++d) n *= dl.shape[d];
      if (n > 0 && cudaMemcpyAsync(dp, sp, static_cast<size_t>(n) * sizeof(D), cudaMemcpyDeviceToDevice, 0) != cudaSuccess)
        check_launch("copy (cudaMemcpyAsync)");
      return;
    }
    using R = RawBits<sizeof(D)>;  // a same-dtype copy moves bits: one kernel per element size
    copy_launch<R, R>(dl, dp, sl, sp);
  } else {
    copy_launch<D, S>(dl, dp, sl, sp);
  }
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

// n contiguous elements set to v: 16-byte stores from a 16-byte-aligned start, the ragged ends
// element by element
template <class T>
__global__ void fill_dense(T* out, T v, int64_t head, int64_t nvec, int64_t n) {
  constexpr int W = 16 / sizeof(T);
  Pack<T, W> pk;
#pragma unroll
  for (int k = 0; k < W; ++k) pk.t[k] = v;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  for (int64_t i = t; i < nvec; i += stride) store_pack<T, W>(out + head + i * W, pk);
  for (int64_t i = t; i < head; i += stride) out[i] = v;
  for (int64_t i = head + nvec * W + t; i < n; i += stride) out[i] = v;
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
  constexpr int W = 16 / sizeof(T);
  const uintptr_t addr = reinterpret_cast<uintptr_t>(out);
  int64_t head = addr % 16 == 0 ? 0 : static_cast<int64_t>((16 - addr % 16) / sizeof(T));
  if (addr % sizeof(T) != 0 || head > n) head = n;  // misaligned elements: all element by element
  const int64_t nvec = (n - head) / W;
  fill_dense<T><<<grid_for(std::max({nvec, n - head - nvec * W, head}), kThreads), kThreads>>>(static_cast<T*>(out), val,
                                                                                               head, nvec, n);
  check_launch("fill");
}

}  // namespace

VGG_REGISTER_KERNEL(UnaryKernel, CUDA, F32, (&unary_kernel<float>));
VGG_REGISTER_KERNEL(UnaryKernel, CUDA, F64, (&unary_kernel<double>));
VGG_REGISTER_KERNEL(UnaryKernel, CUDA, BF16, (&unary_kernel<bf16>));
VGG_REGISTER_KERNEL(UnaryKernel, CUDA, I32, (&unary_kernel<int32_t>));
VGG_REGISTER_KERNEL(UnaryKernel, CUDA, I64, (&unary_kernel<int64_t>));
VGG_REGISTER_KERNEL(BinaryKernel, CUDA, F32, (&binary_kernel<float>));
VGG_REGISTER_KERNEL(BinaryKernel, CUDA, F64, (&binary_kernel<double>));
VGG_REGISTER_KERNEL(BinaryKernel, CUDA, BF16, (&binary_kernel<bf16>));
VGG_REGISTER_KERNEL(BinaryKernel, CUDA, I32, (&binary_kernel<int32_t>));
VGG_REGISTER_KERNEL(BinaryKernel, CUDA, I64, (&binary_kernel<int64_t>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, F32, (&where_kernel<float>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, F64, (&where_kernel<double>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, BF16, (&where_kernel<bf16>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, I32, (&where_kernel<int32_t>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, I64, (&where_kernel<int64_t>));
VGG_REGISTER_KERNEL(WhereKernel, CUDA, Bool, (&where_kernel<bool>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, F32, (&copy_kernel<float>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, F64, (&copy_kernel<double>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, BF16, (&copy_kernel<bf16>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, I32, (&copy_kernel<int32_t>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, I64, (&copy_kernel<int64_t>));
VGG_REGISTER_KERNEL(CopyKernel, CUDA, Bool, (&copy_kernel<bool>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, F32, (&fill_kernel<float>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, F64, (&fill_kernel<double>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, BF16, (&fill_kernel<bf16>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, I32, (&fill_kernel<int32_t>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, I64, (&fill_kernel<int64_t>));
VGG_REGISTER_KERNEL(FillKernel, CUDA, Bool, (&fill_kernel<bool>));

}  // namespace vgg::kernels::cuda
