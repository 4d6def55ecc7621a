// vgg_comm_check: every collective of the job's communicator (dist/comm.h) against what a single
// process computes for the same inputs. Run under mpirun -np N (CTest comm.mpi_*); rank 0 prints
// COMM_OK when every rank agrees. Without mpirun it checks the local communicator.
//   vgg_comm_check [mpi|nccl|auto] [--bench]
// --bench then times all_reduce_sum of f32 buffers (1, 16 and 64 MiB; 5 warm-up and 20 timed calls
// each) and prints rank 0's time per call with the algorithm and bus bandwidths (bus = algorithm ×
// 2(N−1)/N, as nccl-tests reports them).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "dist/comm.h"
#include "tensor/factory.h"

using namespace vgg;

namespace {

int failures = 0;
void expect(bool ok, const std::string& what, int rank) {
  if (!ok) {
    std::fprintf(stderr, "vgg_comm_check: rank %d: %s\n", rank, what.c_str());
    ++failures;
  }
}

// The value every rank r puts at element i: distinct per rank and element, exact in f32.
double value(int r, int64_t i) { return static_cast<double>(r * 1000 + i) * 0.25 - 3.0; }

Tensor filled(int r, int64_t n, DType dt, int64_t offset = 0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = value(r, offset + i);
  return to_device_raw(cast_raw(from_vector(v, {n}, opts(DType::F64)), dt), Device::cpu());
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto comm = dist::world(argc > 1 ? argv[1] : "auto");
    const int r = comm->rank(), n = comm->size();
    const Device dev = comm->device();
    auto on = [&](const Tensor& t) { return to_device_raw(t, dev); };
    auto host = [&](const Tensor& t) { return to_device_raw(t, Device::cpu()); };
    for (DType dt : {DType::F32, DType::F64, DType::I64}) {
      const std::string tag = std::string(" (") + dtype_name(dt) + ")";
      const int64_t len = 37;
      // all_reduce: the sum over ranks of value(r, i)
      Tensor t = on(filled(r, len, dt));
      comm->all_reduce_sum(t);
      std::vector<double> got = host(t).to_vector();
      for (int64_t i = 0; i < len; ++i) {
        double want = 0;  // exact: quarters of small integers (i64: their truncations)
        for (int q = 0; q < n; ++q) want += host(filled(q, len, dt)).to_vector()[static_cast<size_t>(i)];
        expect(got[static_cast<size_t>(i)] == want, "all_reduce element " + std::to_string(i) + tag, r);
      }
      // all_gather: rank order
      Tensor mine = on(filled(r, 5, dt)), all = on(zeros({5 * n}, opts(dt)));
      comm->all_gather(mine, all);
      got = host(all).to_vector();
      for (int q = 0; q < n; ++q)
        for (int64_t i = 0; i < 5; ++i) {
          const double want = host(filled(q, 5, dt)).to_vector()[static_cast<size_t>(i)];
          expect(got[static_cast<size_t>(q * 5 + i)] == want, "all_gather rank " + std::to_string(q) + tag, r);
        }
      // reduce_scatter: rank r gets the sum over ranks of their slice r
      Tensor in = on(filled(r, 4 * n, dt)), out = on(zeros({4}, opts(dt)));
      comm->reduce_scatter_sum(in, out);
      got = host(out).to_vector();
      for (int64_t i = 0; i < 4; ++i) {
        double want = 0;
        for (int q = 0; q < n; ++q) want += host(filled(q, 4 * n, dt)).to_vector()[static_cast<size_t>(r * 4 + i)];
        expect(got[static_cast<size_t>(i)] == want, "reduce_scatter element " + std::to_string(i) + tag, r);
      }
      // broadcast from the last rank
      Tensor b = on(filled(r, 6, dt));
      comm->broadcast(b, n - 1);
      expect(host(b).to_vector() == host(filled(n - 1, 6, dt)).to_vector(), "broadcast" + tag, r);
    }
    comm->barrier();
    const std::vector<std::string> names = comm->all_gather_strings(std::string(static_cast<size_t>(r * 7), 'x') + "rank" + std::to_string(r));
    expect(static_cast<int>(names.size()) == n, "all_gather_strings count", r);
    for (int q = 0; q < n && q < static_cast<int>(names.size()); ++q)
      expect(names[static_cast<size_t>(q)] == std::string(static_cast<size_t>(q * 7), 'x') + "rank" + std::to_string(q),
             "all_gather_strings rank " + std::to_string(q), r);
    expect(comm->all_true(true), "all_true(true)", r);
    expect(!comm->all_true(r != n - 1), "all_true with one false", r);
    // every rank's failure count, summed: rank 0 speaks for the job
    Tensor f = zeros({1}, opts(DType::I64));
    f.set({0}, failures);
    Tensor fd = on(f);
    comm->all_reduce_sum(fd);
    const double total = host(fd).to_vector()[0];
    if (r == 0) std::printf("%s: %d ranks (%s): %s\n", argv[0], n, comm->backend().c_str(), total == 0 ? "COMM_OK" : "FAILED");
    const bool bench = total == 0 && argc > 2 && std::string(argv[2]) == "--bench";
    if (bench && comm->backend() == "local" && r == 0) std::printf("all_reduce: one local rank moves nothing, no timing\n");
    if (bench && comm->backend() != "local") {
      for (int64_t mib : {1, 16, 64}) {
        const int64_t elems = mib * (1 << 20) / 4;
        Tensor buf = on(zeros({elems}, opts(DType::F32)));
        for (int i = 0; i < 5; ++i) comm->all_reduce_sum(buf);
        comm->barrier();
        const auto t0 = std::chrono::steady_clock::now();
        const int reps = 20;
        for (int i = 0; i < reps; ++i) comm->all_reduce_sum(buf);
        comm->barrier();
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
        const double alg = static_cast<double>(elems) * 4 / sec / 1e9;
        if (r == 0)
          std::printf("all_reduce %s %d ranks %4lld MiB f32: %9.3f ms  algbw %7.2f GB/s  busbw %7.2f GB/s\n", comm->backend().c_str(),
                      n, static_cast<long long>(mib), sec * 1e3, alg, n > 1 ? alg * 2.0 * (n - 1) / n : alg);
      }
    }
    comm.reset();
    dist::shutdown();
    return total == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "vgg_comm_check: %s\n", e.what());
    return 1;
  }
}
