// The MPI backend of dist::Communicator (dist/comm.h): host tensors over MPI_COMM_WORLD. Built as
// the plugin libvgg_mpi.so when CMake finds MPI; libvgg loads it only under mpirun.
//
// Each collective is started non-blocking (MPI_Iallreduce, …) and polled with MPI_Test until it
// completes or VGG_COMM_TIMEOUT passes; then one line names the operation and MPI_Abort ends the
// whole job, so no rank waits forever for one that died or hangs.
#include <string>

#include "dist/comm.h"
#include "dist/mpi_world.h"
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
  int rank() const override { return w_.rank; }
  int size() const override { return w_.size; }
  std::string backend() const override { return "mpi"; }
  Device device() const override { return Device::cpu(); }
  void barrier() override { w_.barrier(); }

 protected:
  void do_all_reduce_sum(Tensor& t) override {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, t.data_ptr(), count(t), mpi_type(t.dtype()), MPI_SUM, MPI_COMM_WORLD, &r);
    w_.wait("all_reduce", r);
  }
  void do_reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    MPI_Request r;
    MPI_Ireduce_scatter_block(in.data_ptr(), out.data_ptr(), count(out), mpi_type(out.dtype()), MPI_SUM, MPI_COMM_WORLD, &r);
    w_.wait("reduce_scatter", r);
  }
  void do_all_gather(const Tensor& in, Tensor& out) override {
    MPI_Request r;
    MPI_Iallgather(in.data_ptr(), count(in), mpi_type(in.dtype()), out.data_ptr(), count(in), mpi_type(in.dtype()),
                   MPI_COMM_WORLD, &r);
    w_.wait("all_gather", r);
  }
  void do_broadcast(Tensor& t, int root) override {
    MPI_Request r;
    MPI_Ibcast(t.data_ptr(), count(t), mpi_type(t.dtype()), root, MPI_COMM_WORLD, &r);
    w_.wait("broadcast", r);
  }

 private:
  static int count(const Tensor& t) {
    VGG_CHECK(t.numel() <= INT32_MAX, "communicator (mpi): ", t.numel(), " elements exceed one MPI message");
    return static_cast<int>(t.numel());
  }
  MpiWorld w_;
};

}  // namespace
}  // namespace vgg::dist

extern "C" vgg::dist::Communicator* vgg_dist_make_mpi() { return new vgg::dist::Mpi(); }
