// Flash attention forward, bf16 inputs on tensor cores (mma.sync m16n8k16, f32 accumulation), the
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
      uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                        pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
      const int r = kk * 16 + 2 * t;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        const int col = j * 8 + g;
        mma_bf16(acc[j], pa, pack_raw(Vs[r][col], Vs[r + 1][col]), pack_raw(Vs[r + 8][col], Vs[r + 9][col]));
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

bool flash_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("VGG_CUDA_FLASH");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

bool flash_fwd_bf16(const AttnArgs& a, const void* q, const void* k, const void* v, void* o, void* lse) {
  if (!flash_enabled() || a.d != a.dv || (a.d != 64 && a.d != 128) || a.sk <= 0 || a.sq <= 0 || a.bh <= 0) return false;
  if (!aligned16(q) || !aligned16(k) || !aligned16(v) || !aligned16(o)) return false;
  if (a.bh > 65535) return false;  // grid.y
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
