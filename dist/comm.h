// Collective communication between the processes of one job, for data-parallel training
// (docs/engine.md, "Many processes"). One Communicator per process; ranks 0 … size−1.
//
// Backends:
//   local  a single process (size 1): every collective is the identity. Needs nothing at run time.
//   mpi    CPU tensors over MPI (OpenMPI's mpirun), from the plugin library libvgg_mpi.so;
//   nccl   GPU tensors over NCCL, one GPU per rank chosen by the local rank, NCCL's unique id
//          broadcast over MPI, from libvgg_nccl.so.
// The plugins are loaded only when the process was started by mpirun (OMPI_COMM_WORLD_SIZE,
// PMIX_RANK or PMI_SIZE in the environment), so single-process runs need neither MPI nor NCCL.
//
// Every collective takes contiguous tensors of one dtype (f32, f64, i64, i32) with the same numel on
// every rank, on the backend's device (mpi: the host; nccl: the rank's GPU). Sums of floating
// values follow the library's reduction order (MPI's and NCCL's are not specified): results may
// differ in the last bits between runs with different sizes. Code that needs bits independent of
// the process count gathers each part and sums in a fixed order (vggflow/methods/method.h, Updater).
//
// A collective that waits longer than VGG_COMM_TIMEOUT seconds (default 1800) for the other ranks
// prints one line naming the operation and aborts the whole job: a rank that died or hangs never
// leaves the others waiting forever.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace vgg::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;      // "local", "mpi", "nccl"
  virtual Device device() const = 0;            // where the collectives' tensors live
  // The collectives check their arguments here (one line naming the operation) and hand them to
  // the backend's do_* below.
  void all_reduce_sum(Tensor& t);  // t <- the sum of every rank's t (in place)
  // in [size·n] -> out [n]: out <- the sum over ranks of their in[rank·n, (rank+1)·n)
  void reduce_scatter_sum(const Tensor& in, Tensor& out);
  void all_gather(const Tensor& in, Tensor& out);  // in [n] -> out [size·n], rank order
  void broadcast(Tensor& t, int root);             // t <- root's t
  virtual void barrier() = 0;

  // Every rank's string, in rank order (statistics lines, error reports).
  std::vector<std::string> all_gather_strings(const std::string& s);
  // Whether every rank says true (one all-reduce).
  bool all_true(bool v);

 protected:
  // The backends' collectives, on checked arguments (contiguous, on device(), dtypes and sizes
  // as above).
  virtual void do_all_reduce_sum(Tensor& t) = 0;
  virtual void do_reduce_scatter_sum(const Tensor& in, Tensor& out) = 0;
  virtual void do_all_gather(const Tensor& in, Tensor& out) = 0;
  virtual void do_broadcast(Tensor& t, int root) = 0;

 private:
  void check(const Tensor& t, const char* op) const;
};

// The single-process communicator.
std::unique_ptr<Communicator> make_local();

// Whether this process was started by an MPI launcher.
bool launched_by_mpi();

// The job's communicator, made once per process: "auto" is "mpi" under an MPI launcher and
// "local" otherwise; "mpi" and "nccl" load their plugin (a clear error when this build has none,
// or when the process was not started by mpirun). Later calls return the same communicator and
// refuse a different backend.
std::shared_ptr<Communicator> world(const std::string& backend = "auto");
// A further communicator of the job over another backend (e.g. "nccl" for GPU gradients beside the
// world's "mpi"); it must be destroyed before shutdown().
std::unique_ptr<Communicator> make(const std::string& backend);
// Ends the job's communicator (MPI_Finalize): tools call it before a normal exit.
void shutdown();

// The plugin interface: libvgg_<backend>.so exports
//   extern "C" vgg::dist::Communicator* vgg_dist_make_<backend>();
// returning a new communicator (or throwing vgg::Error with one line).
using Factory = Communicator* (*)();

// Seconds a collective may wait (VGG_COMM_TIMEOUT, default 1800; checked: a positive number).
double timeout_seconds();

}  // namespace vgg::dist
