// What the MPI and NCCL plugins (dist/mpi.cpp, dist/nccl.cpp) share: joining MPI_COMM_WORLD (MPI
// initialised once per process, by whichever plugin comes first, and finalised by it) and the
// polled wait that turns a hung collective into one line and MPI_Abort.
#pragma once
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "dist/comm.h"

namespace vgg::dist {

struct MpiWorld {
  int rank = 0, size = 1;
  bool owns = false;  // this object initialised MPI and finalises it
  double timeout = 1800;
  MpiWorld() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    timeout = timeout_seconds();
  }
  ~MpiWorld() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns && !finalized) MPI_Finalize();
  }
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

  // Polls done() until it is true; past the timeout: one line naming `op`, before_abort(), then
  // MPI_Abort of the whole job.
  void wait(const char* op, const std::function<bool()>& done, const std::function<void()>& before_abort = {}) const {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    for (int spins = 0;; ++spins) {
      if (done()) return;
      const double waited = std::chrono::duration<double>(clock::now() - t0).count();
      if (waited > timeout) {
        std::fprintf(stderr, "vggflow: rank %d of %d: %s waited %.0f s for the other ranks (VGG_COMM_TIMEOUT); one died or hangs: aborting the job\n",
                     rank, size, op, waited);
        std::fflush(stderr);
        if (before_abort) before_abort();
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 50));
    }
  }
  void wait(const char* op, MPI_Request& r) const {
    wait(op, [&] {
      int done = 0;
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      return done != 0;
    });
  }
  // Every rank of MPI_COMM_WORLD, with the timed wait (both backends' barrier).
  void barrier() const {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    wait("barrier", r);
  }
};

}  // namespace vgg::dist
