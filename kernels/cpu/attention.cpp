// CPU tiled attention with online softmax (the flash-attention algorithm): the S x S score
// matrix is never materialised; each (batch*head, query block) keeps a running max m, a
// running sum l and an unnormalised accumulator, rescaled when a new key block raises m.
// Backward recomputes P = exp(scale*QK^T - lse) tile by tile.
#include <cmath>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/loops.h"
#include "tensor/dispatch.h"
#include "tensor/dtype.h"

namespace vgg::kernels::cpu {
namespace {

constexpr int64_t kBr = 32;  // query rows per tile
constexpr int64_t kBc = 64;  // key rows per tile

template <typename T, typename V>
void widen(const T* src, V* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<V>(load(src[i]));
}

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
    std::vector<V> q(br * a.d), kt(a.d * kBc), vt(kBc * a.dv), s(kBc), acc(br * a.dv, V(0)), m(br, -INFINITY),
        l(br, V(0));
    widen(Q + (b * a.sq + q0) * a.d, q.data(), br * a.d);
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      // pack K^T so the score row is an axpy over contiguous key positions
      const T* kb = K + (b * a.sk + k0) * a.d;
      for (int64_t j = 0; j < bc; ++j)
        for (int64_t t = 0; t < a.d; ++t) kt[t * kBc + j] = static_cast<V>(load(kb[j * a.d + t]));
      widen(Vv + (b * a.sk + k0) * a.dv, vt.data(), bc * a.dv);
      for (int64_t i = 0; i < br; ++i) {
        const V* qi = q.data() + i * a.d;
        for (int64_t j = 0; j < bc; ++j) s[j] = 0;
        for (int64_t t = 0; t < a.d; ++t) {
          const V qv = qi[t];
          const V* kr = kt.data() + t * kBc;
          for (int64_t j = 0; j < bc; ++j) s[j] += qv * kr[j];
        }
        V mx = m[i];
        for (int64_t j = 0; j < bc; ++j) mx = std::max(mx, s[j] * scale);
        const V corr = std::exp(m[i] - mx);
        V sum = 0;
        for (int64_t j = 0; j < bc; ++j) {
          s[j] = std::exp(s[j] * scale - mx);
          sum += s[j];
        }
        V* ai = acc.data() + i * a.dv;
        if (corr != V(1))
          for (int64_t t = 0; t < a.dv; ++t) ai[t] *= corr;
        for (int64_t j = 0; j < bc; ++j) {
          const V p = s[j];
          const V* vr = vt.data() + j * a.dv;
          for (int64_t t = 0; t < a.dv; ++t) ai[t] += p * vr[t];
        }
        l[i] = l[i] * corr + sum;
        m[i] = mx;
      }
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
  const T* Q = static_cast<const T*>(qp);
  const T* K = static_cast<const T*>(kp);
  const T* Vv = static_cast<const T*>(vp);
  const T* O = static_cast<const T*>(op);
  const T* dO = static_cast<const T*>(dop);
  const V* LSE = static_cast<const V*>(lsep);
  const V scale = static_cast<V>(a.scale);
  // One (batch*head) per task: dQ accumulates over key blocks without atomics, so the
  // result is deterministic and independent of the thread count.
  parallel_for(a.bh, a.sq * a.sk * (a.d + a.dv) * 2, [&](int64_t b) {
    std::vector<V> q(a.sq * a.d), dO_(a.sq * a.dv), D(a.sq), dq(a.sq * a.d, V(0));
    widen(Q + b * a.sq * a.d, q.data(), a.sq * a.d);
    widen(dO + b * a.sq * a.dv, dO_.data(), a.sq * a.dv);
    for (int64_t i = 0; i < a.sq; ++i) {
      V s = 0;
      const T* oi = O + (b * a.sq + i) * a.dv;
      for (int64_t t = 0; t < a.dv; ++t) s += static_cast<V>(load(oi[t])) * dO_[i * a.dv + t];
      D[i] = s;
    }
    std::vector<V> k(kBc * a.d), v(kBc * a.dv), dk(kBc * a.d), dv(kBc * a.dv), p(kBc), ds(kBc);
    for (int64_t k0 = 0; k0 < a.sk; k0 += kBc) {
      const int64_t bc = std::min(kBc, a.sk - k0);
      widen(K + (b * a.sk + k0) * a.d, k.data(), bc * a.d);
      widen(Vv + (b * a.sk + k0) * a.dv, v.data(), bc * a.dv);
      std::fill(dk.begin(), dk.end(), V(0));
      std::fill(dv.begin(), dv.end(), V(0));
      for (int64_t i = 0; i < a.sq; ++i) {
        const V* qi = q.data() + i * a.d;
        const V* doi = dO_.data() + i * a.dv;
        const V lse = LSE[b * a.sq + i];
        for (int64_t j = 0; j < bc; ++j) {
          V s = 0, dp = 0;
          const V* kj = k.data() + j * a.d;
          for (int64_t t = 0; t < a.d; ++t) s += qi[t] * kj[t];
          const V* vj = v.data() + j * a.dv;
          for (int64_t t = 0; t < a.dv; ++t) dp += doi[t] * vj[t];
          p[j] = std::exp(s * scale - lse);
          ds[j] = p[j] * (dp - D[i]) * scale;
        }
        V* dqi = dq.data() + i * a.d;
        for (int64_t j = 0; j < bc; ++j) {
          const V pj = p[j], dsj = ds[j];
          V* dvj = dv.data() + j * a.dv;
          for (int64_t t = 0; t < a.dv; ++t) dvj[t] += pj * doi[t];
          V* dkj = dk.data() + j * a.d;
          const V* kj = k.data() + j * a.d;
          for (int64_t t = 0; t < a.d; ++t) {
            dkj[t] += dsj * qi[t];
            dqi[t] += dsj * kj[t];
          }
        }
      }
      T* dK = static_cast<T*>(dkp) + (b * a.sk + k0) * a.d;
      T* dV = static_cast<T*>(dvp) + (b * a.sk + k0) * a.dv;
      for (int64_t e = 0; e < bc * a.d; ++e) dK[e] = store<T>(dk[e]);
      for (int64_t e = 0; e < bc * a.dv; ++e) dV[e] = store<T>(dv[e]);
    }
    T* dQ = static_cast<T*>(dqp) + b * a.sq * a.d;
    for (int64_t e = 0; e < a.sq * a.d; ++e) dQ[e] = store<T>(dq[e]);
  });
}

}  // namespace

VGG_REGISTER_KERNEL("attention_fwd", CPU, F32, (&attn_fwd<float>));
VGG_REGISTER_KERNEL("attention_fwd", CPU, F64, (&attn_fwd<double>));
VGG_REGISTER_KERNEL("attention_fwd", CPU, BF16, (&attn_fwd<bf16>));
VGG_REGISTER_KERNEL("attention_bwd", CPU, F32, (&attn_bwd<float>));
VGG_REGISTER_KERNEL("attention_bwd", CPU, F64, (&attn_bwd<double>));
VGG_REGISTER_KERNEL("attention_bwd", CPU, BF16, (&attn_bwd<bf16>));

}  // namespace vgg::kernels::cpu
