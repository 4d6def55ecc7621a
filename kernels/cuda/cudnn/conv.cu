// conv2d forward through cuDNN (built when cuDNN is found: CMake option VGG_CUDNN). One handle per
// GPU, created on first use. Algorithms come from cuDNN's heuristics (the first that fits a
// workspace of at most 256 MiB from the caching allocator); f32 runs in FMA math (no TF32, as our
// f32 GEMMs), bf16 in tensor-op math with f32 accumulation, f64 in f64. The backward stays the
// differentiable composite of ops::conv2d (im2col/col2im and GEMMs), so double backward works.
#include <cudnn.h>

#include <mutex>
#include <vector>

#include "kernels/conv.h"
#include "kernels/cuda/common.cuh"
#include "tensor/dispatch.h"
#include "tensor/error.h"
#include "tensor/storage.h"

namespace vgg::kernels::cuda {
namespace {

void check(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) VGG_FAIL("cuDNN error in ", what, ": ", cudnnGetErrorString(s));
}

cudnnHandle_t handle_for(int dev) {
  static std::mutex mu;
  static std::vector<cudnnHandle_t> handles;
  std::lock_guard<std::mutex> lock(mu);
  if (static_cast<int>(handles.size()) <= dev) handles.resize(static_cast<size_t>(dev) + 1, nullptr);
  if (!handles[dev]) check(cudnnCreate(&handles[dev]), "cudnnCreate");
  return handles[dev];
}

// RAII descriptors
struct TensorDesc {
  cudnnTensorDescriptor_t d = nullptr;
  TensorDesc() { check(cudnnCreateTensorDescriptor(&d), "cudnnCreateTensorDescriptor"); }
  ~TensorDesc() { cudnnDestroyTensorDescriptor(d); }
};
struct FilterDesc {
  cudnnFilterDescriptor_t d = nullptr;
  FilterDesc() { check(cudnnCreateFilterDescriptor(&d), "cudnnCreateFilterDescriptor"); }
  ~FilterDesc() { cudnnDestroyFilterDescriptor(d); }
};
struct ConvDesc {
  cudnnConvolutionDescriptor_t d = nullptr;
  ConvDesc() { check(cudnnCreateConvolutionDescriptor(&d), "cudnnCreateConvolutionDescriptor"); }
  ~ConvDesc() { cudnnDestroyConvolutionDescriptor(d); }
};

template <class T>
struct Types;
template <>
struct Types<float> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_FLOAT, compute = CUDNN_DATA_FLOAT;
  static constexpr cudnnMathType_t math = CUDNN_FMA_MATH;
  using Scale = float;
};
template <>
struct Types<bf16> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_BFLOAT16, compute = CUDNN_DATA_FLOAT;
  static constexpr cudnnMathType_t math = CUDNN_TENSOR_OP_MATH;
  using Scale = float;
};
template <>
struct Types<double> {
  static constexpr cudnnDataType_t data = CUDNN_DATA_DOUBLE, compute = CUDNN_DATA_DOUBLE;
  static constexpr cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  using Scale = double;
};

int as_int(int64_t v, const char* what) {
  VGG_CHECK(v >= 0 && v <= INT32_MAX, "conv2d (cuDNN): ", what, " ", v, " does not fit cuDNN's int");
  return static_cast<int>(v);
}

template <class T>
void conv2d_fwd(const Conv2dGeom& g, int64_t out_channels, const void* x, const void* w, void* y) {
  using Ty = Types<T>;
  int dev = 0;
  cudaGetDevice(&dev);
  cudnnHandle_t h = handle_for(dev);
  TensorDesc xd, yd;
  FilterDesc wd;
  ConvDesc cd;
  check(cudnnSetTensor4dDescriptor(xd.d, CUDNN_TENSOR_NCHW, Ty::data, as_int(g.n, "batch"), as_int(g.c, "channels"),
                                   as_int(g.h, "height"), as_int(g.w, "width")),
        "cudnnSetTensor4dDescriptor(x)");
  check(cudnnSetFilter4dDescriptor(wd.d, Ty::data, CUDNN_TENSOR_NCHW, as_int(out_channels, "out channels"),
                                   as_int(g.c, "channels"), as_int(g.kh, "kernel height"), as_int(g.kw, "kernel width")),
        "cudnnSetFilter4dDescriptor");
  check(cudnnSetConvolution2dDescriptor(cd.d, as_int(g.ph, "padding"), as_int(g.pw, "padding"), as_int(g.sh, "stride"),
                                        as_int(g.sw, "stride"), 1, 1, CUDNN_CROSS_CORRELATION, Ty::compute),
        "cudnnSetConvolution2dDescriptor");
  check(cudnnSetConvolutionMathType(cd.d, Ty::math), "cudnnSetConvolutionMathType");
  check(cudnnSetTensor4dDescriptor(yd.d, CUDNN_TENSOR_NCHW, Ty::data, as_int(g.n, "batch"),
                                   as_int(out_channels, "out channels"), as_int(g.oh, "output height"),
                                   as_int(g.ow, "output width")),
        "cudnnSetTensor4dDescriptor(y)");
  // heuristics, best first; the first whose workspace fits
  constexpr int kWant = 8;
  cudnnConvolutionFwdAlgoPerf_t perf[kWant];
  int found = 0;
  check(cudnnGetConvolutionForwardAlgorithm_v7(h, xd.d, wd.d, cd.d, yd.d, kWant, &found, perf),
        "cudnnGetConvolutionForwardAlgorithm_v7");
  constexpr size_t kMaxWorkspace = size_t{256} << 20;
  int pick = -1;
  for (int i = 0; i < found && pick < 0; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace) pick = i;
  VGG_CHECK(pick >= 0, "conv2d (cuDNN): no forward algorithm for this geometry within 256 MiB of workspace");
  // the descriptor's math type stays ours (FMA for f32: no TF32)
  size_t ws_bytes = 0;
  check(cudnnGetConvolutionForwardWorkspaceSize(h, xd.d, wd.d, cd.d, yd.d, perf[pick].algo, &ws_bytes),
        "cudnnGetConvolutionForwardWorkspaceSize");
  Allocator* alloc = allocator_for(Device::cuda(dev));
  void* ws = ws_bytes ? alloc->allocate(ws_bytes) : nullptr;
  const typename Ty::Scale one = 1, zero = 0;
  const cudnnStatus_t s =
      cudnnConvolutionForward(h, &one, xd.d, x, wd.d, w, cd.d, perf[pick].algo, ws, ws_bytes, &zero, yd.d, y);
  if (ws) alloc->deallocate(ws, ws_bytes);  // one stream: the block is reused only after this kernel
  check(s, "cudnnConvolutionForward");
}

}  // namespace

VGG_REGISTER_KERNEL(Conv2dFwdKernel, CUDA, F32, (&conv2d_fwd<float>));
VGG_REGISTER_KERNEL(Conv2dFwdKernel, CUDA, F64, (&conv2d_fwd<double>));
VGG_REGISTER_KERNEL(Conv2dFwdKernel, CUDA, BF16, (&conv2d_fwd<bf16>));

}  // namespace vgg::kernels::cuda
