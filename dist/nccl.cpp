// The NCCL backend of dist::Communicator (dist/comm.h): GPU tensors over NCCL, one GPU per rank
// (the local rank modulo the GPUs this process sees), NCCL's unique id broadcast over MPI. Built as
// the plugin libvgg_nccl.so when CMake finds NCCL, MPI and CUDA; libvgg loads it only under mpirun
// with --backend nccl.
//
// The collectives run on the stream the CUDA kernels use (the legacy default stream), so they
// order after the kernels that produced their inputs; completion is polled (cudaStreamQuery and
// NCCL's asynchronous error) until VGG_COMM_TIMEOUT, then the communicator is aborted and MPI_Abort
// ends the job with one line naming the operation.
//
// CUDA runtime calls live in kernels/cuda everywhere else; this plugin is the exception by nature:
// NCCL's API takes CUDA streams and devices, and the plugin is built only with the CUDA backend.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>
#include <string>

#include "dist/comm.h"
#include "dist/mpi_world.h"
#include "tensor/error.h"

namespace vgg::dist {
namespace {

ncclDataType_t nccl_type(DType d) {
  switch (d) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
    case DType::I64: return ncclInt64;
    default: VGG_FAIL("communicator: dtype ", dtype_name(d), " is not supported (f32, f64, bf16, i32, i64)");
  }
}

void nccl_check(ncclResult_t r, const char* what) {
  VGG_CHECK(r == ncclSuccess, "NCCL ", what, ": ", ncclGetErrorString(r));
}
void cuda_check(cudaError_t r, const char* what) {
  VGG_CHECK(r == cudaSuccess, "CUDA ", what, ": ", cudaGetErrorString(r));
}

class Nccl final : public Communicator {
 public:
  Nccl() {
    int gpus = 0;
    cuda_check(cudaGetDeviceCount(&gpus), "cudaGetDeviceCount");
    VGG_CHECK(gpus > 0, "the nccl backend needs a GPU on every rank; rank ", w_.rank, " sees none");
    const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    gpu_ = (lr ? std::atoi(lr) : w_.rank) % gpus;
    cuda_check(cudaSetDevice(gpu_), "cudaSetDevice");
    ncclUniqueId id;
    if (w_.rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_check(ncclCommInitRank(&comm_, w_.size, id, w_.rank), "ncclCommInitRank");
  }
  ~Nccl() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
  }
  int rank() const override { return w_.rank; }
  int size() const override { return w_.size; }
  std::string backend() const override { return "nccl"; }
  Device device() const override { return Device{DeviceType::CUDA, gpu_}; }
  void barrier() override { w_.barrier(); }

 protected:
  void do_all_reduce_sum(Tensor& t) override {
    nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), ncclSum,
                             comm_, nullptr),
               "all_reduce");
    wait("all_reduce");
  }
  void do_reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    nccl_check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(out.dtype()),
                                 ncclSum, comm_, nullptr),
               "reduce_scatter");
    wait("reduce_scatter");
  }
  void do_all_gather(const Tensor& in, Tensor& out) override {
    nccl_check(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()), comm_,
                             nullptr),
               "all_gather");
    wait("all_gather");
  }
  void do_broadcast(Tensor& t, int root) override {
    nccl_check(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                             comm_, nullptr),
               "broadcast");
    wait("broadcast");
  }

 private:
  // the collective's completion on the stream, NCCL's asynchronous errors, the timeout
  void wait(const char* op) {
    w_.wait(
        op,
        [&] {
          const cudaError_t q = cudaStreamQuery(nullptr);
          if (q == cudaSuccess) return true;
          VGG_CHECK(q == cudaErrorNotReady, "CUDA ", op, ": ", cudaGetErrorString(q));
          ncclResult_t async = ncclSuccess;
          ncclCommGetAsyncError(comm_, &async);
          VGG_CHECK(async == ncclSuccess || async == ncclInProgress, "NCCL ", op, ": ", ncclGetErrorString(async));
          return false;
        },
        [&] {
          if (comm_ != nullptr) ncclCommAbort(comm_), comm_ = nullptr;
        });
  }

  MpiWorld w_;  // first: MPI is up before NCCL's id is broadcast, and finalised after the communicator
  int gpu_ = 0;
  ncclComm_t comm_ = nullptr;
};

}  // namespace
}  // namespace vgg::dist

extern "C" vgg::dist::Communicator* vgg_dist_make_nccl() { return new vgg::dist::Nccl(); }
