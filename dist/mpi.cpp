// The MPI backend of dist::Communicator (dist/comm.h): host tensors over MPI_COMM_WORLD. Built as
// the plugin libvgg_mpi.so when CMake finds MPI; libvgg loads it only under mpirun.
//
// Each collective is started non-blocking (MPI_Iallreduce, …) and polled with MPI_Test until it
// completes or VGG_COMM_TIMEOUT passes; then one line names the operation and MPI_Abort ends the
// whole job, so no rank waits forever for one that died or hangs.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "dist/comm.h"
#include "tensor/error.h"

namespace vgg::dist {
namespace {

MPI_Datatype mpi_type(DType d) {
  switch (d) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I32: return MPI_INT32_T;
    case DType::I64: return MPI_INT64_T;
    default: VGG_FAIL("communicator: dtype ", dtype_name(d), " is not supported (f32, f64, i32, i64)");
  }
}

class Mpi final : public Communicator {
 public:
  Mpi() {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    timeout_ = timeout_seconds();
  }
  ~Mpi() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_ && !finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }
  Device device() const override { return Device::cpu(); }

  void all_reduce_sum(Tensor& t) override {
    check(t, "all_reduce");
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), count(t), mpi_type(t.dtype()), MPI_SUM, MPI_COMM_WORLD, &r);
    wait(r, "all_reduce");
  }
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    VGG_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, "communicator reduce_scatter: in ",
              describe(in), " must hold ", size_, " × out ", describe(out));
    MPI_Request r;
    MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), count(out), mpi_type(out.dtype()), MPI_SUM, MPI_COMM_WORLD, &r);
    wait(r, "reduce_scatter");
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    check(in, "all_gather");
    check(out, "all_gather");
    VGG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "communicator all_gather: out ",
              describe(out), " must hold ", size_, " × in ", describe(in));
    MPI_Request r;
    MPI_Iallgather(in.data_ptr(), count(in), mpi_type(in.dtype()), out.data_ptr(), count(in), mpi_type(in.dtype()),
                   MPI_COMM_WORLD, &r);
    wait(r, "all_gather");
  }
  void broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    VGG_CHECK(root >= 0 && root < size_, "communicator broadcast: root ", root, " is not a rank of ", size_);
    MPI_Request r;
    MPI_Ibcast(t.data_ptr(), count(t), mpi_type(t.dtype()), root, MPI_COMM_WORLD, &r);
    wait(r, "broadcast");
  }
  void barrier() override {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    wait(r, "barrier");
  }

 private:
  static void check(const Tensor& t, const char* op) {
    VGG_CHECK(t.defined() && t.is_contiguous() && t.device().is_cpu(), "communicator ", op,
              " (mpi): needs a contiguous host tensor, got ", t.defined() ? describe(t) : "undefined");
  }
  static int count(const Tensor& t) {
    VGG_CHECK(t.numel() <= INT32_MAX, "communicator (mpi): ", t.numel(), " elements exceed one MPI message");
    return static_cast<int>(t.numel());
  }
  void wait(MPI_Request& r, const char* op) const {
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    int done = 0;
    for (int spins = 0;; ++spins) {
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      if (done) return;
      const double waited = std::chrono::duration<double>(clock::now() - t0).count();
      if (waited > timeout_) {
        std::fprintf(stderr, "vggflow: rank %d of %d: %s waited %.0f s for the other ranks (VGG_COMM_TIMEOUT); one died or hangs: aborting the job\n",
                     rank_, size_, op, waited);
        std::fflush(stderr);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(spins > 100000 ? 1000 : 50));
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_ = false;
  double timeout_ = 1800;
};

}  // namespace
}  // namespace vgg::dist

extern "C" vgg::dist::Communicator* vgg_dist_make_mpi() { return new vgg::dist::Mpi(); }
