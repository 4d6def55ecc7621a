// CPU tiled attention with online softmax (the flash-attention algorithm). The S x S score
// matrix is never materialised: each task owns (one batch*head, a block of kBr queries) and
// walks the keys in blocks of kBc, keeping a running row max m, row sum l and an unnormalised
// output accumulator that is rescaled when m grows. The two products per tile
// (S = scale·Q Kᵀ and acc += P V) are single-threaded OpenBLAS GEMMs inside our OpenMP tasks.
// Extra memory per task: kBr x (kBc + dv) values, independent of the sequence length.
// Backward recomputes P = exp(S - lse) per tile; one task per batch*head owns dQ, dK and dV,
// so no atomics are needed and results do not depend on the thread count.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/loops.h"
#include "kernels/cpu/vec_math.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

constexpr int64_t kBr = 64;   // queries per tile
constexpr int64_t kBc = 256;  // keys per tile

// Row-major C = alpha·op(A)·op(B) + beta·C.
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}
inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(m), int(n), int(k),
              alpha, a, int(lda), b, int(ldb), beta, c, int(ldc));
}

// A [rows, cols] slice in the compute type: the data itself for f32/f64, a widened copy for bf16.
template <typename T, typename V>
struct Slice {
  std::vector<V> buf;
  const V* p;
  Slice(const T* src, int64_t count) {
    if constexpr (std::is_same_v<T, V>) {
      p = src;
    } else {
      buf.resize(count);
      for (int64_t i = 0; i < count; ++i) buf[i] = static_cast<V>(load(src[i]));
      p = buf.data();
    }
  }
};

template <typename T>
void attn_fwd(const AttnArgs& a, const void* qp, const void* kp, const void* vp, void* op, void* lsep) {
  using V = typename compute_type<T>::type;
  const T* Q = static_cast<const T*>(qp);
  const T* K = static_cast<const T*>(kp);
  const T* Vv = static_cast<const T*>(vp);
  T* O = static_cast<T*>(op);
  V* LSE = static_cast<V*>(lsep);
  const int64_t nqb = (a.sq + kBr - 1) / kBr;
  const V scale = static_cast<V>(a.scale);
  parallel_for(a.bh * nqb, kBr * a.sk * (a.d + a.dv), [&](int64_t job) {
    const int64_t b = job / nqb, q0 = (job % nqb) * kBr, br = std::min(kBr, a.sq - q0);
    Slice<T, V> q(Q + (b * a.sq + q0) * a.d, br * a.d);
    std::vector<V> s(kBr * kBc), acc(br * a.dv, V(0)), m(br, -INFINITY), l(br, V(0));
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      Slice<T, V> kb(K + (b * a.sk + k0) * a.d, bc * a.d), vb(Vv + (b * a.sk + k0) * a.dv, bc * a.dv);
      gemm(false, true, br, bc, a.d, scale, q.p, a.d, kb.p, a.d, V(0), s.data(), bc);
      for (int64_t i = 0; i < br; ++i) {
        V* si = s.data() + i * bc;
        V mx = m[i];
#pragma omp simd reduction(max : mx)
        for (int64_t j = 0; j < bc; ++j) mx = si[j] > mx ? si[j] : mx;
        const V corr = vexp(m[i] - mx);
        V sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < bc; ++j) {
          const V e = vexp(si[j] - mx);
          si[j] = e;
          sum += e;
        }
        if (corr != V(1)) {
          V* ai = acc.data() + i * a.dv;
#pragma omp simd
          for (int64_t t = 0; t < a.dv; ++t) ai[t] *= corr;
        }
        l[i] = l[i] * corr + sum;
        m[i] = mx;
      }
      gemm(false, false, br, a.dv, bc, V(1), s.data(), bc, vb.p, a.dv, V(1), acc.data(), a.dv);
    }
    for (int64_t i = 0; i < br; ++i) {
      const V inv = V(1) / l[i];
      T* oi = O + (b * a.sq + q0 + i) * a.dv;
      for (int64_t t = 0; t < a.dv; ++t) oi[t] = store<T>(acc[i * a.dv + t] * inv);
      LSE[b * a.sq + q0 + i] = m[i] + std::log(l[i]);
    }
  });
}

template <typename T>
void attn_bwd(const AttnArgs& a, const void* qp, const void* kp, const void* vp, const void* op, const void* lsep,
              const void* dop, void* dqp, void* dkp, void* dvp) {
  using V = typename compute_type<T>::type;
  const V* LSE = static_cast<const V*>(lsep);
  const V scale = static_cast<V>(a.scale);
  parallel_for(a.bh, a.sq * a.sk * (a.d + a.dv) * 2, [&](int64_t b) {
    Slice<T, V> q(static_cast<const T*>(qp) + b * a.sq * a.d, a.sq * a.d);
    Slice<T, V> k(static_cast<const T*>(kp) + b * a.sk * a.d, a.sk * a.d);
    Slice<T, V> v(static_cast<const T*>(vp) + b * a.sk * a.dv, a.sk * a.dv);
    Slice<T, V> o(static_cast<const T*>(op) + b * a.sq * a.dv, a.sq * a.dv);
    Slice<T, V> dout(static_cast<const T*>(dop) + b * a.sq * a.dv, a.sq * a.dv);
    const V* lse = LSE + b * a.sq;
    std::vector<V> D(a.sq), dq(a.sq * a.d, V(0)), dk(a.sk * a.d, V(0)), dv(a.sk * a.dv, V(0));
    for (int64_t i = 0; i < a.sq; ++i) {  // D_i = rowsum(dO ∘ O)
      V s = 0;
      const V* oi = o.p + i * a.dv;
      const V* gi = dout.p + i * a.dv;
#pragma omp simd reduction(+ : s)
      for (int64_t t = 0; t < a.dv; ++t) s += oi[t] * gi[t];
      D[i] = s;
    }
    std::vector<V> p(kBr * kBc), dp(kBr * kBc);
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      const V* kj = k.p + k0 * a.d;
      const V* vj = v.p + k0 * a.dv;
      for (int64_t q0 = 0; q0 < a.sq; q0 += kBr) {
        const int64_t br = std::min(kBr, a.sq - q0);
        const V* qi = q.p + q0 * a.d;
        const V* gi = dout.p + q0 * a.dv;
        gemm(false, true, br, bc, a.d, scale, qi, a.d, kj, a.d, V(0), p.data(), bc);      // S
        gemm(false, true, br, bc, a.dv, V(1), gi, a.dv, vj, a.dv, V(0), dp.data(), bc);   // dP = dO Vᵀ
        for (int64_t i = 0; i < br; ++i) {
          V* pi = p.data() + i * bc;
          V* dpi = dp.data() + i * bc;
          const V l = lse[q0 + i], Di = D[q0 + i];
#pragma omp simd
          for (int64_t j = 0; j < bc; ++j) {
            const V pe = vexp(pi[j] - l);
            pi[j] = pe;
            dpi[j] = pe * (dpi[j] - Di) * scale;  // dS (scaled)
          }
        }
        gemm(true, false, bc, a.dv, br, V(1), p.data(), bc, gi, a.dv, V(1), dv.data() + k0 * a.dv, a.dv);   // dV += Pᵀ dO
        gemm(false, false, br, a.d, bc, V(1), dp.data(), bc, kj, a.d, V(1), dq.data() + q0 * a.d, a.d);     // dQ += dS K
        gemm(true, false, bc, a.d, br, V(1), dp.data(), bc, qi, a.d, V(1), dk.data() + k0 * a.d, a.d);      // dK += dSᵀ Q
      }
    }
    T* dQ = static_cast<T*>(dqp) + b * a.sq * a.d;
    T* dK = static_cast<T*>(dkp) + b * a.sk * a.d;
    T* dV = static_cast<T*>(dvp) + b * a.sk * a.dv;
    for (int64_t e = 0; e < a.sq * a.d; ++e) dQ[e] = store<T>(dq[e]);
    for (int64_t e = 0; e < a.sk * a.d; ++e) dK[e] = store<T>(dk[e]);
    for (int64_t e = 0; e < a.sk * a.dv; ++e) dV[e] = store<T>(dv[e]);
  });
}


// ---- fused JVP and its adjoint (kernels/attention.h) -----------------------------------------

// A slice that may be absent (a null tangent): p == nullptr then.
template <typename T, typename V>
struct MaybeSlice {
  std::vector<V> buf;
  const V* p = nullptr;
  MaybeSlice(const void* base, int64_t offset, int64_t count) {
    if (!base) return;
    const T* src = static_cast<const T*>(base) + offset;
    if constexpr (std::is_same_v<T, V>) {
      p = src;
    } else {
      buf.resize(count);
      for (int64_t i = 0; i < count; ++i) buf[i] = static_cast<V>(load(src[i]));
      p = buf.data();
    }
  }
};

template <typename T>
void attn_jvp(const AttnArgs& a, const void* qp, const void* kp, const void* vp, const void* tqp, const void* tkp,
              const void* tvp, void* op, void* top, void* lsep, void* mup) {
  using V = typename compute_type<T>::type;
  T* O = static_cast<T*>(op);
  T* TO = static_cast<T*>(top);
  V* LSE = static_cast<V*>(lsep);
  V* MU = static_cast<V*>(mup);
  const int64_t nqb = (a.sq + kBr - 1) / kBr;
  const V scale = static_cast<V>(a.scale);
  const bool has_ts = tqp || tkp;
  parallel_for(a.bh * nqb, kBr * a.sk * (a.d + a.dv) * 3, [&](int64_t job) {
    const int64_t b = job / nqb, q0 = (job % nqb) * kBr, br = std::min(kBr, a.sq - q0);
    MaybeSlice<T, V> q(qp, (b * a.sq + q0) * a.d, br * a.d), tq(tqp, (b * a.sq + q0) * a.d, br * a.d);
    std::vector<V> s(kBr * kBc), ts(has_ts ? kBr * kBc : 0), acc(br * a.dv, V(0)), tacc(br * a.dv, V(0));
    std::vector<V> m(br, -INFINITY), l(br, V(0)), mu(br, V(0));
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      const int64_t ko = (b * a.sk + k0) * a.d, vo = (b * a.sk + k0) * a.dv;
      MaybeSlice<T, V> kb(kp, ko, bc * a.d), vb(vp, vo, bc * a.dv), tkb(tkp, ko, bc * a.d), tvb(tvp, vo, bc * a.dv);
      gemm(false, true, br, bc, a.d, scale, q.p, a.d, kb.p, a.d, V(0), s.data(), bc);  // S
      if (has_ts) {                                                                     // tS
        V beta = 0;
        if (tq.p) gemm(false, true, br, bc, a.d, scale, tq.p, a.d, kb.p, a.d, V(0), ts.data(), bc), beta = 1;
        if (tkb.p) gemm(false, true, br, bc, a.d, scale, q.p, a.d, tkb.p, a.d, beta, ts.data(), bc);
      }
      for (int64_t i = 0; i < br; ++i) {
        V* si = s.data() + i * bc;
        V mx = m[i];
        for (int64_t j = 0; j < bc; ++j) mx = si[j] > mx ? si[j] : mx;
        const V corr = vexp(m[i] - mx);
        V sum = 0, wsum = 0;
        for (int64_t j = 0; j < bc; ++j) si[j] = vexp(si[j] - mx), sum += si[j];
        if (has_ts) {
          V* tsi = ts.data() + i * bc;
          for (int64_t j = 0; j < bc; ++j) tsi[j] *= si[j], wsum += tsi[j];  // W = E∘tS
        }
        if (corr != V(1))
          for (int64_t t = 0; t < a.dv; ++t) acc[i * a.dv + t] *= corr, tacc[i * a.dv + t] *= corr;
        l[i] = l[i] * corr + sum;
        mu[i] = mu[i] * corr + wsum;
        m[i] = mx;
      }
      gemm(false, false, br, a.dv, bc, V(1), s.data(), bc, vb.p, a.dv, V(1), acc.data(), a.dv);              // E·V
      if (tvb.p) gemm(false, false, br, a.dv, bc, V(1), s.data(), bc, tvb.p, a.dv, V(1), tacc.data(), a.dv);  // E·tV
      if (has_ts) gemm(false, false, br, a.dv, bc, V(1), ts.data(), bc, vb.p, a.dv, V(1), tacc.data(), a.dv); // W·V
    }
    for (int64_t i = 0; i < br; ++i) {
      const V inv = V(1) / l[i], mui = mu[i] * inv;
      const int64_t row = b * a.sq + q0 + i;
      for (int64_t t = 0; t < a.dv; ++t) {
        const V oi = acc[i * a.dv + t] * inv;
        O[row * a.dv + t] = store<T>(oi);
        TO[row * a.dv + t] = store<T>(tacc[i * a.dv + t] * inv - mui * oi);
      }
      LSE[row] = m[i] + std::log(l[i]);
      MU[row] = mui;
    }
  });
}

template <typename T>
void attn_jvp_bwd(const AttnArgs& a, const AttnJvpGrads& g) {
  using V = typename compute_type<T>::type;
  const V* LSE = static_cast<const V*>(g.lse);
  const V* MU = static_cast<const V*>(g.mu);
  const V scale = static_cast<V>(a.scale);
  parallel_for(a.bh, a.sq * a.sk * (a.d + a.dv) * 6, [&](int64_t b) {
    const int64_t qn = a.sq * a.d, kn = a.sk * a.d, vn = a.sk * a.dv, on = a.sq * a.dv;
    MaybeSlice<T, V> q(g.q, b * qn, qn), k(g.k, b * kn, kn), v(g.v, b * vn, vn);
    MaybeSlice<T, V> tq(g.tq, b * qn, qn), tk(g.tk, b * kn, kn), tv(g.tv, b * vn, vn);
    MaybeSlice<T, V> o(g.o, b * on, on), to(g.to, b * on, on), dout(g.dout, b * on, on), dtout(g.dtout, b * on, on);
    const V* lse = LSE + b * a.sq;
    const V* mu = MU + b * a.sq;
    // row terms: Dt = dtO·O, D = dO·O + dtO·tO − μ·Dt
    std::vector<V> D(a.sq, V(0)), Dt(a.sq, V(0));
    for (int64_t i = 0; i < a.sq; ++i) {
      V d = 0, dt = 0, dtt = 0;
      for (int64_t t = 0; t < a.dv; ++t) {
        const V oi = o.p[i * a.dv + t];
        if (dout.p) d += dout.p[i * a.dv + t] * oi;
        if (dtout.p) dt += dtout.p[i * a.dv + t] * oi, dtt += dtout.p[i * a.dv + t] * to.p[i * a.dv + t];
      }
      Dt[i] = dt;
      D[i] = d + dtt - mu[i] * dt;
    }
    std::vector<V> dq(g.dq ? qn : 0, V(0)), dk(g.dk ? kn : 0, V(0)), dv(g.dv ? vn : 0, V(0));
    std::vector<V> dtq(g.dtq ? qn : 0, V(0)), dtk(g.dtk ? kn : 0, V(0)), dtv(g.dtv ? vn : 0, V(0));
    std::vector<V> p(kBr * kBc), ts(kBr * kBc), dp(kBr * kBc), gg(kBr * kBc), w(kBr * kBc);
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      const V* kj = k.p + k0 * a.d;
      const V* vj = v.p + k0 * a.dv;
      const V* tkj = tk.p ? tk.p + k0 * a.d : nullptr;
      const V* tvj = tv.p ? tv.p + k0 * a.dv : nullptr;
      for (int64_t q0 = 0; q0 < a.sq; q0 += kBr) {
        const int64_t br = std::min(kBr, a.sq - q0);
        const V* qi = q.p + q0 * a.d;
        const V* tqi = tq.p ? tq.p + q0 * a.d : nullptr;
        const V* goi = dout.p ? dout.p + q0 * a.dv : nullptr;
        const V* gti = dtout.p ? dtout.p + q0 * a.dv : nullptr;
        gemm(false, true, br, bc, a.d, scale, qi, a.d, kj, a.d, V(0), p.data(), bc);  // S
        std::fill(ts.begin(), ts.begin() + br * bc, V(0));
        if (tqi) gemm(false, true, br, bc, a.d, scale, tqi, a.d, kj, a.d, V(0), ts.data(), bc);
        if (tkj) gemm(false, true, br, bc, a.d, scale, qi, a.d, tkj, a.d, V(1), ts.data(), bc);
        std::fill(dp.begin(), dp.begin() + br * bc, V(0));
        std::fill(gg.begin(), gg.begin() + br * bc, V(0));
        if (goi) gemm(false, true, br, bc, a.dv, V(1), goi, a.dv, vj, a.dv, V(0), dp.data(), bc);  // dO·Vᵀ
        if (gti) {
          if (tvj) gemm(false, true, br, bc, a.dv, V(1), gti, a.dv, tvj, a.dv, V(1), dp.data(), bc);  // + dtO·tVᵀ
          gemm(false, true, br, bc, a.dv, V(1), gti, a.dv, vj, a.dv, V(0), gg.data(), bc);             // G
        }
        for (int64_t i = 0; i < br; ++i) {
          const V l = lse[q0 + i], Di = D[q0 + i], Dti = Dt[q0 + i], mui = mu[q0 + i];
          for (int64_t j = 0; j < bc; ++j) {
            const int64_t e = i * bc + j;
            const V pe = vexp(p[e] - l), tse = ts[e], ge = gg[e];
            const V dpe = dp[e] + (tse - mui) * ge - tse * Dti;
            p[e] = pe;
            w[e] = pe * (tse - mui);       // P∘(tS − μ), for dV
            dp[e] = pe * (dpe - Di);       // dS
            gg[e] = pe * (ge - Dti);       // dtS
          }
        }
        if (g.dv) {
          if (goi) gemm(true, false, bc, a.dv, br, V(1), p.data(), bc, goi, a.dv, V(1), dv.data() + k0 * a.dv, a.dv);
          if (gti) gemm(true, false, bc, a.dv, br, V(1), w.data(), bc, gti, a.dv, V(1), dv.data() + k0 * a.dv, a.dv);
        }
        if (g.dtv && gti) gemm(true, false, bc, a.dv, br, V(1), p.data(), bc, gti, a.dv, V(1), dtv.data() + k0 * a.dv, a.dv);
        if (g.dq) {
          gemm(false, false, br, a.d, bc, scale, dp.data(), bc, kj, a.d, V(1), dq.data() + q0 * a.d, a.d);
          if (tkj && gti) gemm(false, false, br, a.d, bc, scale, gg.data(), bc, tkj, a.d, V(1), dq.data() + q0 * a.d, a.d);
        }
        if (g.dk) {
          gemm(true, false, bc, a.d, br, scale, dp.data(), bc, qi, a.d, V(1), dk.data() + k0 * a.d, a.d);
          if (tqi && gti) gemm(true, false, bc, a.d, br, scale, gg.data(), bc, tqi, a.d, V(1), dk.data() + k0 * a.d, a.d);
        }
        if (g.dtq && gti) gemm(false, false, br, a.d, bc, scale, gg.data(), bc, kj, a.d, V(1), dtq.data() + q0 * a.d, a.d);
        if (g.dtk && gti) gemm(true, false, bc, a.d, br, scale, gg.data(), bc, qi, a.d, V(1), dtk.data() + k0 * a.d, a.d);
      }
    }
    auto put = [](void* dst, int64_t offset, const std::vector<V>& src) {
      if (!dst) return;
      T* d = static_cast<T*>(dst) + offset;
      for (size_t e = 0; e < src.size(); ++e) d[e] = store<T>(src[e]);
    };
    put(g.dq, b * qn, dq), put(g.dk, b * kn, dk), put(g.dv, b * vn, dv);
    put(g.dtq, b * qn, dtq), put(g.dtk, b * kn, dtk), put(g.dtv, b * vn, dtv);
  });
}

}  // namespace

VGG_REGISTER_KERNEL(AttnFwdKernel, CPU, F32, (&attn_fwd<float>));
VGG_REGISTER_KERNEL(AttnFwdKernel, CPU, F64, (&attn_fwd<double>));
VGG_REGISTER_KERNEL(AttnFwdKernel, CPU, BF16, (&attn_fwd<bf16>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CPU, F32, (&attn_bwd<float>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CPU, F64, (&attn_bwd<double>));
VGG_REGISTER_KERNEL(AttnBwdKernel, CPU, BF16, (&attn_bwd<bf16>));
VGG_REGISTER_KERNEL(AttnJvpKernel, CPU, F32, (&attn_jvp<float>));
VGG_REGISTER_KERNEL(AttnJvpKernel, CPU, F64, (&attn_jvp<double>));
VGG_REGISTER_KERNEL(AttnJvpKernel, CPU, BF16, (&attn_jvp<bf16>));
VGG_REGISTER_KERNEL(AttnJvpBwdKernel, CPU, F32, (&attn_jvp_bwd<float>));
VGG_REGISTER_KERNEL(AttnJvpBwdKernel, CPU, F64, (&attn_jvp_bwd<double>));
VGG_REGISTER_KERNEL(AttnJvpBwdKernel, CPU, BF16, (&attn_jvp_bwd<bf16>));

}  // namespace vgg::kernels::cpu
