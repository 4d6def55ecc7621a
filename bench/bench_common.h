// Shared by the benchmark binaries: the thread and BLAS settings recorded in every JSON
// context, so a result file says how it was produced.
#pragma once
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <omp.h>

#include <string>

namespace vgg::bench {

inline void add_engine_context() {
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  benchmark::AddCustomContext("openblas_threads", std::to_string(openblas_get_num_threads()));
  benchmark::AddCustomContext("openblas_config", openblas_get_config());
}

}  // namespace vgg::bench
