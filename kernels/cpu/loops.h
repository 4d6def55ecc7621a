// Strided iteration for CPU elementwise kernels: dimensions are coalesced, the work is
// split over OpenMP threads by rows of the innermost dimension, and the per-row body is a
// template functor (inlined; no per-element indirect calls).
#pragma once
#include <omp.h>

#include <cstdint>

#include "kernels/layout.h"

namespace vgg::kernels::cpu {

constexpr int64_t kParallelGrain = 32768;  // elements below which a loop stays serial

template <int N>
struct Iter {
  int ndim = 0;
  int64_t shape[kMaxDims];
  int64_t stride[N][kMaxDims];  // operand 0 is the output
};

// Builds an iteration over `shape` for N operands, merging dims that are contiguous for all.
template <int N>
Iter<N> make_iter(const Layout& shape_src, const Layout* const ops[N]) {
  Iter<N> it;
  int nd = 0;
  for (int d = 0; d < shape_src.ndim; ++d) {
    if (shape_src.shape[d] == 1) continue;
    if (nd > 0) {
      bool merge = true;
      for (int k = 0; k < N; ++k)
        if (it.stride[k][nd - 1] != ops[k]->stride[d] * shape_src.shape[d]) merge = false;
      if (merge) {
        it.shape[nd - 1] *= shape_src.shape[d];
        for (int k = 0; k < N; ++k) it.stride[k][nd - 1] = ops[k]->stride[d];
        continue;
      }
    }
    it.shape[nd] = shape_src.shape[d];
    for (int k = 0; k < N; ++k) it.stride[k][nd] = ops[k]->stride[d];
    ++nd;
  }
  if (nd == 0) {  // scalar
    it.shape[0] = 1;
    for (int k = 0; k < N; ++k) it.stride[k][0] = 0;
    nd = 1;
  }
  it.ndim = nd;
  return it;
}

// Calls body(offsets[N], n, inner_strides[N]) once per innermost row.
template <int N, typename Body>
void for_each_row(const Iter<N>& it, Body&& body) {
  const int nd = it.ndim;
  const int64_t inner = it.shape[nd - 1];
  int64_t rows = 1;
  for (int d = 0; d < nd - 1; ++d) rows *= it.shape[d];
  int64_t istr[N];
  for (int k = 0; k < N; ++k) istr[k] = it.stride[k][nd - 1];
  auto run = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      int64_t off[N] = {};
      int64_t rem = r;
      for (int d = nd - 2; d >= 0; --d) {
        int64_t i = rem % it.shape[d];
        rem /= it.shape[d];
        for (int k = 0; k < N; ++k) off[k] += i * it.stride[k][d];
      }
      body(off, inner, istr);
    }
  };
  if (rows * inner < kParallelGrain || rows == 1) {
    if (rows == 1 && inner >= kParallelGrain) {
      // one long row: split it
#pragma omp parallel
      {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t chunk = (inner + nt - 1) / nt, s = t * chunk, e = std::min(inner, s + chunk);
        if (s < e) {
          int64_t off[N];
          for (int k = 0; k < N; ++k) off[k] = s * istr[k];
          body(off, e - s, istr);
        }
      }
      return;
    }
    run(0, rows);
    return;
  }
#pragma omp parallel
  {
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t chunk = (rows + nt - 1) / nt, s = t * chunk, e = std::min(rows, s + chunk);
    if (s < e) run(s, e);
  }
}

// Parallel for over [0, n) in contiguous chunks when n * cost_per_item is large enough.
template <typename F>
void parallel_for(int64_t n, int64_t cost_per_item, F&& f) {
  if (n <= 1 || n * cost_per_item < kParallelGrain) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace vgg::kernels::cpu
