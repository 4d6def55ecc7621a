// The NCCL backend of dist::Communicator (dist/comm.h): GPU tensors over NCCL, one GPU per rank
// (the local rank modulo the GPUs this process sees), NCCL's unique id broadcast over MPI. Built as
// the plugin libvgg_nccl.so when CMake finds NCCL, MPI and CUDA; libvgg loads it only under mpirun
// with --backend nccl.
//
// The collectives run on the stream the CUDA kernels use (the legacy default stream), so they
// order after the kernels that produced their inputs; completion is polled (cudaStreamQuery and
// NCCL's asynchronous error) until VGG_COMM_TIMEOUT, then the communicator is aborted and MPI_Abort
// ends the job with one line naming the operation.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "dist/comm.h"
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
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
      int provided = 0;
      MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      owns_mpi_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    timeout_ = timeout_seconds();
    int gpus = 0;
    cuda_check(cudaGetDeviceCount(&gpus), "cudaGetDeviceCount");
    VGG_CHECK(gpus > 0, "the nccl backend needs a GPU on every rank; rank ", rank_, " sees none");
    const char* lr = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    const int local = lr ? std::atoi(lr) : rank_;
    gpu_ = local % gpus;
    cuda_check(cudaSetDevice(gpu_), "cudaSetDevice");
    ncclUniqueId id;
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
  }
  ~Nccl() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (owns_mpi_ && !finalized) MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "nccl"; }
  Device device() const override { return Device{DeviceType::CUDA, gpu_}; }

  void all_reduce_sum(Tensor& t) override {
    check(t, "all_reduce");
    nccl_check(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), ncclSum,
                             comm_, nullptr),
               "all_reduce");
    wait("all_reduce");
  }
  void reduce_scatter_sum(const Tensor& in, Tensor& out) override {
    check(in, "reduce_scatter");
    check(out, "reduce_scatter");
    VGG_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, "communicator reduce_scatter: in ",
              describe(in), " must hold ", size_, " × out ", describe(out));
    nccl_check(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(out.dtype()),
                                 ncclSum, comm_, nullptr),
               "reduce_scatter");
    wait("reduce_scatter");
  }
  void all_gather(const Tensor& in, Tensor& out) override {
    check(in, "all_gather");
    check(out, "all_gather");
    VGG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "communicator all_gather: out ",
              describe(out), " must hold ", size_, " × in ", describe(in));
    nccl_check(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in.dtype()), comm_,
                             nullptr),
               "all_gather");
    wait("all_gather");
  }
  void broadcast(Tensor& t, int root) override {
    check(t, "broadcast");
    VGG_CHECK(root >= 0 && root < size_, "communicator broadcast: root ", root, " is not a rank of ", size_);
    nccl_check(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()), root,
                             comm_, nullptr),
               "broadcast");
    wait("broadcast");
  }
  void barrier() override {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    const auto t0 = std::chrono::steady_clock::now();
    for (int done = 0;;) {
      MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      if (done) return;
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_) abort_job("barrier");
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  void check(const Tensor& t, const char* op) const {
    VGG_CHECK(t.defined() && t.is_contiguous() && t.device() == device(), "communicator ", op, " (nccl): needs a contiguous tensor on ",
              device().str(), ", got ", t.defined() ? describe(t) : "undefined");
  }
  [[noreturn]] void abort_job(const char* op) {
    std::fprintf(stderr, "vggflow: rank %d of %d: %s waited more than %.0f s for the other ranks (VGG_COMM_TIMEOUT); one died or hangs: aborting the job\n",
                 rank_, size_, op, timeout_);
    std::fflush(stderr);
    if (comm_ != nullptr) ncclCommAbort(comm_), comm_ = nullptr;
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::abort();
  }
  void wait(const char* op) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int spins = 0;; ++spins) {
      const cudaError_t q = cudaStreamQuery(nullptr);
      if (q == cudaSuccess) return;
      VGG_CHECK(q == cudaErrorNotReady, "CUDA ", op, ": ", cudaGetErrorString(q));
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      VGG_CHECK(async == ncclSuccess || async == ncclInProgress, "NCCL ", op, ": ", ncclGetErrorString(async));
      if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() > timeout_) abort_job(op);
      if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  int rank_ = 0, size_ = 1, gpu_ = 0;
  bool owns_mpi_ = false;
  double timeout_ = 1800;
  ncclComm_t comm_ = nullptr;
};

}  // namespace
}  // namespace vgg::dist

extern "C" vgg::dist::Communicator* vgg_dist_make_nccl() { return new vgg::dist::Nccl(); }
