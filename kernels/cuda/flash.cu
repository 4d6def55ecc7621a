// Flash attention, bf16 inputs on tensor cores. Forward: (mma.sync m16n8k16, f32 accumulation), the
// FlashAttention-2 schedule: a block of 4 warps owns 64 query rows (16 per warp) and streams the
// keys and values through shared memory in tiles of 64; each warp keeps its Q fragments, its
// running max m and sum l, and its 16×d output accumulator in registers, and never writes the
// 16×64 probability tile anywhere: the S accumulator's register layout is the A-operand layout of
// the P·V product, so P goes from the first mma to the second in registers.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16): lane = 4·g + t.
//   A (16×16, row): {A[g][2t..2t+1]}, {A[g+8][2t..2t+1]}, {A[g][2t+8..2t+9]}, {A[g+8][2t+8..2t+9]}
//   B (16×8, col):  {B[2t..2t+1][g]}, {B[2t+8..2t+9][g]}
//   C (16×8, f32):  C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]
// S = Q·Kᵀ takes B[k][n] = K[n][k], two consecutive bf16 of one K row per register; P·V takes
// B[k][n] = V[k][n], two bf16 of consecutive V rows (packed from two 16-bit shared loads).
// Scores are kept in the log2 domain (s·log2 e), so the exponentials are exp2; the written
// log-sum-exp is natural, as the contract asks: lse = ln 2 · (m + log2 l).
// Keys past sk score −∞ (the last tile); query rows past sq are computed on zeros and not written.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/flash.cuh"
#include "tensor/error.h"

namespace vgg::kernels::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kWarpsF = 4, kPad = 8;

__device__ __forceinline__ void mma_bf16(float* c, const uint32_t* a, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);  // .x (lower 16 bits) = lo
  uint32_t u;
  memcpy(&u, &p, 4);
  return u;
}
__device__ __forceinline__ uint32_t pack_raw(bf16 lo, bf16 hi) {
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return static_cast<uint32_t>(l) | (static_cast<uint32_t>(h) << 16);
}
__device__ __forceinline__ uint32_t ld32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// The accumulators of n-tiles 2kk and 2kk+1 (16 rows × 16 columns) as the bf16 A fragment of
// k-step kk: the C layout of m16n8 is the A layout of m16k16 split in two.
__device__ __forceinline__ void acc_to_a(uint32_t* a, const float (*c)[4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// The B fragment (k = rows r0 … r0+15 from r = r0 + 2t, column col) of a padded shared tile
// whose rows run along k: two bf16 of consecutive rows per register (V in P·V, dO in Pᵀ·dO, Q in
// dSᵀ·Q, K in dS·K).
template <int HD>
__device__ __forceinline__ void b_frag_rows(uint32_t* b, bf16 (*s)[HD + kPad], int r, int col) {
  b[0] = pack_raw(s[r][col], s[r + 1][col]);
  b[1] = pack_raw(s[r + 8][col], s[r + 9][col]);
}

// rows [row0, row0 + kBN) of a [rows, HD] matrix into a padded shared tile, zeros past `rows`
template <int HD>
__device__ __forceinline__ void load_tile(bf16 (*dst)[HD + kPad], const bf16* src, int64_t row0, int64_t rows) {
  constexpr int kChunks = kBN * HD / 8;  // 16-byte chunks
  for (int c = threadIdx.x; c < kChunks; c += kWarpsF * 32) {
    const int r = c / (HD / 8), col = (c % (HD / 8)) * 8;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (row0 + r < rows) val = *reinterpret_cast<const uint4*>(src + (row0 + r) * HD + col);
    *reinterpret_cast<uint4*>(&dst[r][col]) = val;
  }
}

template <int HD>
__global__ void __launch_bounds__(kWarpsF * 32)
    flash_fwd_k(int64_t sq, int64_t sk, float scale_log2, const bf16* __restrict__ q, const bf16* __restrict__ k,
                const bf16* __restrict__ v, bf16* __restrict__ o, float* __restrict__ lse) {
  __shared__ __align__(16) bf16 Ks[kBN][HD + kPad];
  __shared__ __align__(16) bf16 Vs[kBN][HD + kPad];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const bf16* qb = q + bh * sq * HD;
  const bf16* kb = k + bh * sk * HD;
  const bf16* vb = v + bh * sk * HD;

  // Q tile through the K buffer, then into A fragments
  uint32_t qf[HD / 16][4];
  load_tile<HD>(Ks, qb, m0, sq);
  __syncthreads();
  {
    const int r = warp * 16 + g;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const int c = kk * 16 + 2 * t;
      qf[kk][0] = ld32(&Ks[r][c]);
      qf[kk][1] = ld32(&Ks[r + 8][c]);
      qf[kk][2] = ld32(&Ks[r][c + 8]);
      qf[kk][3] = ld32(&Ks[r + 8][c + 8]);
    }
  }

  float acc[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
  float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};  // rows g and g + 8

  for (int64_t n0 = 0; n0 < sk; n0 += kBN) {
    __syncthreads();  // the previous tile (or the Q staging) is consumed
    load_tile<HD>(Ks, kb, n0, sk);
    load_tile<HD>(Vs, vb, n0, sk);
    __syncthreads();

    // S = Q·Kᵀ for this warp's 16 rows and the tile's 64 keys
    float s[kBN / 8][4];
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
      s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      const int key = j * 8 + g;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const int c = kk * 16 + 2 * t;
        mma_bf16(s[j], qf[kk], ld32(&Ks[key][c]), ld32(&Ks[key][c + 8]));
      }
    }
    // scale into the log2 domain, mask keys past sk, row maxima over the quad
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + j * 8 + 2 * t + (e & 1);
        s[j][e] = key < sk ? s[j][e] * scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
      }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
      mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
      const float mn = fmaxf(mrow[h], mx[h]);  // finite: every tile has at least one key < sk
      alpha[h] = exp2f(mrow[h] - mn);          // 0 on the first tile (mrow = −∞)
      mrow[h] = mn;
      lrow[h] *= alpha[h];
    }
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[j][e] = exp2f(s[j][e] - mrow[e >> 1]);
        lrow[e >> 1] += s[j][e];  // this thread's part of the row sum; the quad is summed at the end
      }
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      acc[j][0] *= alpha[0];
      acc[j][1] *= alpha[0];
      acc[j][2] *= alpha[1];
      acc[j][3] *= alpha[1];
    }
    // O += P·V: the S accumulators of key tiles 2kk and 2kk+1 are the A fragment of k-step kk
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t pa[4];
      acc_to_a(pa, s, kk);
      const int r = kk * 16 + 2 * t;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        const int col = j * 8 + g;
        uint32_t bf[2];
        b_frag_rows<HD>(bf, Vs, r, col);
        mma_bf16(acc[j], pa, bf[0], bf[1]);
      }
    }
  }

  // finish: the quad's row sums, O = acc / l, lse = ln 2 · (m + log2 l)
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 1);
    lrow[h] += __shfl_xor_sync(0xffffffffu, lrow[h], 2);
  }
  const float inv[2] = {1.f / lrow[0], 1.f / lrow[1]};
  bf16* ob = o + bh * sq * HD;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = m0 + warp * 16 + g + 8 * h;
    if (row >= sq) continue;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      __nv_bfloat162 p = __floats2bfloat162_rn(acc[j][2 * h] * inv[h], acc[j][2 * h + 1] * inv[h]);
      *reinterpret_cast<__nv_bfloat162*>(ob + row * HD + j * 8 + 2 * t) = p;
    }
    if (t == 0) lse[bh * sq + row] = 0.69314718055994531f * (mrow[h] + log2f(lrow[h]));
  }
}


// ---- backward ---------------------------------------------------------------------------------
// Deterministic, no atomics: two kernels that both recompute P = exp(s·q·kᵀ − lse) from the
// forward's log-sum-exp, with D = rowsum(dO∘O) computed beforehand (attention.cu).
//   dK/dV: a block owns 64 keys (16 per warp) and streams the query tiles: Sᵀ = K·Qᵀ, Pᵀ,
//          dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ = Pᵀ∘(dPᵀ − D), dK += dSᵀ·Q (times s at the end).
//   dQ:    a block owns 64 queries (16 per warp) and streams the key tiles: S = Q·Kᵀ, P,
//          dP = dO·Vᵀ, dS = P∘(dP − D), dQ += dS·K (times s at the end).
// Each kernel recomputes the score GEMM the other one also does (one extra Q·Kᵀ and dO·Vᵀ in all,
// 7/5 of the atomic version's tensor-core work) to keep dQ free of atomics: the default, and the
// only mode so far. P and dS are rounded to bf16 for their products, as FlashAttention-2 does.

// A fragment (16 rows from `r0`, k-step kk) of a padded shared tile
template <int HD>
__device__ __forceinline__ void a_frag(uint32_t* f, bf16 (*s)[HD + kPad], int r0, int kk, int g, int t) {
  const int c = kk * 16 + 2 * t;
  f[0] = ld32(&s[r0 + g][c]);
  f[1] = ld32(&s[r0 + g + 8][c]);
  f[2] = ld32(&s[r0 + g][c + 8]);
  f[3] = ld32(&s[r0 + g + 8][c + 8]);
}

// dK, dV for 64 keys per block; dynamic shared memory: Ks, Vs (the block's keys), Qs, dOs (the
// current query tile), then the tile's lse·log2 e and D.
template <int HD>
__global__ void __launch_bounds__(kWarpsF * 32)
    flash_bwd_dkv_k(int64_t sq, int64_t sk, float scale, float scale_log2, const bf16* __restrict__ q,
                    const bf16* __restrict__ k, const bf16* __restrict__ v, const float* __restrict__ lse,
                    const bf16* __restrict__ dout, const float* __restrict__ dvec, bf16* __restrict__ dk,
                    bf16* __restrict__ dv) {
  extern __shared__ __align__(16) unsigned char smem[];
  using Tile = bf16[HD + kPad];
  Tile* Ks = reinterpret_cast<Tile*>(smem);
  Tile* Vs = Ks + kBN;
  Tile* Qs = Vs + kBN;
  Tile* dOs = Qs + kBM;
  float* Ls = reinterpret_cast<float*>(dOs + kBM);
  float* Ds = Ls + kBM;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, n0 = static_cast<int64_t>(blockIdx.x) * kBN;
  const bf16* qb = q + bh * sq * HD;
  const bf16* dob = dout + bh * sq * HD;
  load_tile<HD>(Ks, k + bh * sk * HD, n0, sk);
  load_tile<HD>(Vs, v + bh * sk * HD, n0, sk);
  float dka[HD / 8][4], dva[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) dka[j][e] = dva[j][e] = 0.f;
  const int kr = warp * 16;  // this warp's key rows within the tile

  for (int64_t m0 = 0; m0 < sq; m0 += kBM) {
    __syncthreads();  // the previous query tile is consumed
    load_tile<HD>(Qs, qb, m0, sq);
    load_tile<HD>(dOs, dob, m0, sq);
    for (int i = threadIdx.x; i < kBM; i += kWarpsF * 32) {
      const bool in = m0 + i < sq;
      Ls[i] = in ? lse[bh * sq + m0 + i] * 1.4426950408889634f : INFINITY;  // P = 0 past sq
      Ds[i] = in ? dvec[bh * sq + m0 + i] : 0.f;
    }
    __syncthreads();
    // Sᵀ (16 keys × 64 queries) and dPᵀ = V·dOᵀ
    float st[kBM / 8][4], dpt[kBM / 8][4];
#pragma unroll
    for (int j = 0; j < kBM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) st[j][e] = dpt[j][e] = 0.f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      uint32_t kf[4], vf[4];
      a_frag<HD>(kf, Ks, kr, kk, g, t);
      a_frag<HD>(vf, Vs, kr, kk, g, t);
      const int c = kk * 16 + 2 * t;
#pragma unroll
      for (int j = 0; j < kBM / 8; ++j) {
        const int qr = j * 8 + g;
        mma_bf16(st[j], kf, ld32(&Qs[qr][c]), ld32(&Qs[qr][c + 8]));
        mma_bf16(dpt[j], vf, ld32(&dOs[qr][c]), ld32(&dOs[qr][c + 8]));
      }
    }
    // Pᵀ and dSᵀ; columns are queries
#pragma unroll
    for (int j = 0; j < kBM / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = j * 8 + 2 * t + (e & 1);
        const float p = exp2f(st[j][e] * scale_log2 - Ls[col]);
        st[j][e] = p;
        dpt[j][e] = p * (dpt[j][e] - Ds[col]);
      }
    // dV += Pᵀ·dO and dK += dSᵀ·Q over the tile's queries (k = queries)
#pragma unroll
    for (int kk = 0; kk < kBM / 16; ++kk) {
      uint32_t pa[4];
      acc_to_a(pa, st, kk);
      uint32_t da[4];
      acc_to_a(da, dpt, kk);
      const int r = kk * 16 + 2 * t;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        const int col = j * 8 + g;
        uint32_t bo[2], bq[2];
        b_frag_rows<HD>(bo, dOs, r, col);
        b_frag_rows<HD>(bq, Qs, r, col);
        mma_bf16(dva[j], pa, bo[0], bo[1]);
        mma_bf16(dka[j], da, bq[0], bq[1]);
      }
    }
  }
  // write this warp's 16 key rows
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t key = n0 + kr + g + 8 * h;
    if (key >= sk) continue;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j) {
      const int64_t off = (bh * sk + key) * HD + j * 8 + 2 * t;
      *reinterpret_cast<__nv_bfloat162*>(dk + off) =
          __floats2bfloat162_rn(dka[j][2 * h] * scale, dka[j][2 * h + 1] * scale);
      *reinterpret_cast<__nv_bfloat162*>(dv + off) = __floats2bfloat162_rn(dva[j][2 * h], dva[j][2 * h + 1]);
    }
  }
}

// dQ for 64 queries per block
template <int HD>
__global__ void __launch_bounds__(kWarpsF * 32)
    flash_bwd_dq_k(int64_t sq, int64_t sk, float scale, float scale_log2, const bf16* __restrict__ q,
                   const bf16* __restrict__ k, const bf16* __restrict__ v, const float* __restrict__ lse,
                   const bf16* __restrict__ dout, const float* __restrict__ dvec, bf16* __restrict__ dq) {
  __shared__ __align__(16) bf16 Ks[kBN][HD + kPad];
  __shared__ __align__(16) bf16 Vs[kBN][HD + kPad];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int64_t bh = blockIdx.y, m0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const bf16* kb = k + bh * sk * HD;
  const bf16* vb = v + bh * sk * HD;
  // Q and dO fragments through the K and V buffers
  uint32_t qf[HD / 16][4], dof[HD / 16][4];
  load_tile<HD>(Ks, q + bh * sq * HD, m0, sq);
  load_tile<HD>(Vs, dout + bh * sq * HD, m0, sq);
  __syncthreads();
#pragma unroll
  for (int kk = 0; kk < HD / 16; ++kk) {
    a_frag<HD>(qf[kk], Ks, warp * 16, kk, g, t);
    a_frag<HD>(dof[kk], Vs, warp * 16, kk, g, t);
  }
  float lrow[2], drow[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = m0 + warp * 16 + g + 8 * h;
    lrow[h] = row < sq ? lse[bh * sq + row] * 1.4426950408889634f : 0.f;
    drow[h] = row < sq ? dvec[bh * sq + row] : 0.f;
  }
  float acc[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;

  for (int64_t n0 = 0; n0 < sk; n0 += kBN) {
    __syncthreads();
    load_tile<HD>(Ks, kb, n0, sk);
    load_tile<HD>(Vs, vb, n0, sk);
    __syncthreads();
    float s[kBN / 8][4], dp[kBN / 8][4];
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[j][e] = dp[j][e] = 0.f;
      const int key = j * 8 + g;
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const int c = kk * 16 + 2 * t;
        mma_bf16(s[j], qf[kk], ld32(&Ks[key][c]), ld32(&Ks[key][c + 8]));
        mma_bf16(dp[j], dof[kk], ld32(&Vs[key][c]), ld32(&Vs[key][c + 8]));
      }
    }
#pragma unroll
    for (int j = 0; j < kBN / 8; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int64_t key = n0 + j * 8 + 2 * t + (e & 1);
        const float p = key < sk ? exp2f(s[j][e] * scale_log2 - lrow[e >> 1]) : 0.f;
        s[j][e] = p * (dp[j][e] - drow[e >> 1]);  // dS
      }
    // dQ += dS·K (k = keys)
#pragma unroll
    for (int kk = 0; kk < kBN / 16; ++kk) {
      uint32_t da[4];
      acc_to_a(da, s, kk);
      const int r = kk * 16 + 2 * t;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        const int col = j * 8 + g;
        uint32_t bf[2];
        b_frag_rows<HD>(bf, Ks, r, col);
        mma_bf16(acc[j], da, bf[0], bf[1]);
      }
    }
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = m0 + warp * 16 + g + 8 * h;
    if (row >= sq) continue;
#pragma unroll
    for (int j = 0; j < HD / 8; ++j)
      *reinterpret_cast<__nv_bfloat162*>(dq + (bh * sq + row) * HD + j * 8 + 2 * t) =
          __floats2bfloat162_rn(acc[j][2 * h] * scale, acc[j][2 * h + 1] * scale);
  }
}

template <int HD>
constexpr size_t dkv_smem() {
  return (2 * kBN + 2 * kBM) * (HD + kPad) * sizeof(bf16) + 2 * kBM * sizeof(float);
}

template <int HD>
void launch_bwd(const AttnArgs& a, const bf16* Q, const bf16* K, const bf16* Vv, const float* L, const bf16* dO,
                const float* D, bf16* dQ, bf16* dK, bf16* dV) {
  const float scale = static_cast<float>(a.scale), scale_log2 = static_cast<float>(a.scale * 1.4426950408889634);
  static const bool attr = [] {  // more than the 48 KB default of dynamic shared memory at d = 128
    return cudaFuncSetAttribute(flash_bwd_dkv_k<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                static_cast<int>(dkv_smem<HD>())) == cudaSuccess;
  }();
  VGG_CHECK(attr, "flash attention backward: cannot reserve ", dkv_smem<HD>(), " bytes of shared memory");
  const dim3 gk(static_cast<unsigned>((a.sk + kBN - 1) / kBN), static_cast<unsigned>(a.bh));
  flash_bwd_dkv_k<HD><<<gk, kWarpsF * 32, dkv_smem<HD>()>>>(a.sq, a.sk, scale, scale_log2, Q, K, Vv, L, dO, D, dK, dV);
  check_launch("flash_bwd_dkv");
  const dim3 gq(static_cast<unsigned>((a.sq + kBM - 1) / kBM), static_cast<unsigned>(a.bh));
  flash_bwd_dq_k<HD><<<gq, kWarpsF * 32>>>(a.sq, a.sk, scale, scale_log2, Q, K, Vv, L, dO, D, dQ);
  check_launch("flash_bwd_dq");
}

bool flash_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("VGG_CUDA_FLASH");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

bool flash_applies(const AttnArgs& a, std::initializer_list<const void*> ptrs) {
  if (!flash_enabled() || a.d != a.dv || (a.d != 64 && a.d != 128) || a.sk <= 0 || a.sq <= 0 || a.bh <= 0) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return a.bh <= 65535;  // grid.y
}

bool flash_bwd_bf16(const AttnArgs& a, const void* q, const void* k, const void* v, const void* lse, const void* dout,
                    const float* dvec, void* dq, void* dk, void* dv) {
  if (!flash_applies(a, {q, k, v, dout, dq, dk, dv})) return false;
  const auto* Q = static_cast<const bf16*>(q);
  const auto* K = static_cast<const bf16*>(k);
  const auto* Vv = static_cast<const bf16*>(v);
  const auto* L = static_cast<const float*>(lse);
  const auto* dO = static_cast<const bf16*>(dout);
  if (a.d == 64)
    launch_bwd<64>(a, Q, K, Vv, L, dO, dvec, static_cast<bf16*>(dq), static_cast<bf16*>(dk), static_cast<bf16*>(dv));
  else
    launch_bwd<128>(a, Q, K, Vv, L, dO, dvec, static_cast<bf16*>(dq), static_cast<bf16*>(dk), static_cast<bf16*>(dv));
  return true;
}

bool flash_fwd_bf16(const AttnArgs& a, const void* q, const void* k, const void* v, void* o, void* lse) {
  if (!flash_applies(a, {q, k, v, o})) return false;
  const float scale_log2 = static_cast<float>(a.scale * 1.4426950408889634);
  const dim3 grid(static_cast<unsigned>((a.sq + kBM - 1) / kBM), static_cast<unsigned>(a.bh));
  const auto* Q = static_cast<const bf16*>(q);
  const auto* K = static_cast<const bf16*>(k);
  const auto* Vv = static_cast<const bf16*>(v);
  auto* O = static_cast<bf16*>(o);
  auto* L = static_cast<float*>(lse);
  if (a.d == 64)
    flash_fwd_k<64><<<grid, kWarpsF * 32>>>(a.sq, a.sk, scale_log2, Q, K, Vv, O, L);
  else
    flash_fwd_k<128><<<grid, kWarpsF * 32>>>(a.sq, a.sk, scale_log2, Q, K, Vv, O, L);
  check_launch("flash_fwd_bf16");
  return true;
}

}  // namespace vgg::kernels::cuda
