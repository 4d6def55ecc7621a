// The kernel registry, typed: each kernel contract (kernels/*.h) declares an op tag with
// VGG_KERNEL_OP(Tag, "name", FnType); kernels/cpu and kernels/cuda register implementations with
// VGG_REGISTER_KERNEL(Tag, CPU|CUDA, dtype, fn), where fn must have exactly the contract's type
// (a wrong signature does not compile); ops call get_kernel<Tag>(device, dtype)(args...).
//
// Each tag owns a small table [device type][dtype] of function pointers, filled while the library
// loads (static registrars) and only read afterwards: a lookup is two array indexes, no lock, no
// string. A missing entry throws a vgg::Error naming the op, device and dtype.
//
// With VGG_PROFILE=1 in the environment every kernel call is timed (CUDA events on the GPU, the
// steady clock on the CPU) and one table is printed to stderr at exit (tensor/profile.h).
#pragma once
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/profile.h"

namespace vgg {

[[noreturn]] void throw_missing_kernel(const char* op, DeviceType dev, DType dtype);
// Every registered (op, device type, dtype), for listings and the op-table tests.
struct KernelEntry {
  const char* op;
  DeviceType dev;
  DType dtype;
};
const std::vector<KernelEntry>& registered_kernels();
void note_registration(const char* op, DeviceType dev, DType dtype);
// by name, for the few places that ask whether a device has an op at all (nullptr when missing)
void* find_kernel(const char* op, DeviceType dev, DType dtype);
void register_kernel_name(const char* op, void* (*lookup)(DeviceType, DType));

template <class Tag, class FnT>
struct KernelOp {
  using Fn = FnT;
  static inline void* slots[kNumDeviceTypes][kNumDTypes] = {};
  static void* lookup(DeviceType dev, DType dtype) {
    if (dev == DeviceType::Fake) dev = DeviceType::CPU;  // the fake device runs the CPU's kernels
    return slots[static_cast<int>(dev)][static_cast<int>(dtype)];
  }
};

namespace detail {
template <class Op, class Args, class = void>
struct has_bytes : std::false_type {};
template <class Op, class... A>
struct has_bytes<Op, std::tuple<A...>, std::void_t<decltype(kernel_bytes(Op{}, DType{}, std::declval<A>()...))>>
    : std::true_type {};
template <class Op, class Args, class = void>
struct has_label : std::false_type {};
template <class Op, class... A>
struct has_label<Op, std::tuple<A...>, std::void_t<decltype(kernel_label(Op{}, std::declval<A>()...))>>
    : std::true_type {};
}  // namespace detail

// A looked-up kernel: calls the function, through the profiler when it is on.
template <class Op>
struct KernelCall {
  typename Op::Fn fn;
  Device dev;
  DType dtype;
  template <class... A>
  void operator()(A&&... a) const {
    if (!profile::enabled()) {
      fn(std::forward<A>(a)...);
      return;
    }
    double bytes = 0;
    // a contract may say how many bytes a call moves: kernel_bytes(Tag{}, dtype, args...) found by ADL
    if constexpr (detail::has_bytes<Op, std::tuple<A&&...>>::value) bytes = kernel_bytes(Op{}, dtype, a...);
    // and which variant a call is (unary:exp, binary:mul): kernel_label(Tag{}, args...) by ADL
    const char* label = nullptr;
    if constexpr (detail::has_label<Op, std::tuple<A&&...>>::value) label = kernel_label(Op{}, a...);
    profile::Scope s(Op::name, label, dev, dtype, bytes);
    fn(std::forward<A>(a)...);
  }
};

template <class Op>
KernelCall<Op> get_kernel(Device dev, DType dtype) {
  void* f = Op::lookup(dev.type, dtype);
  if (!f) throw_missing_kernel(Op::name, dev.type, dtype);
  return {reinterpret_cast<typename Op::Fn>(f), dev, dtype};
}

template <class Op>
bool has_kernel(Device dev, DType dtype) {
  return Op::lookup(dev.type, dtype) != nullptr;
}

template <class Op>
struct KernelRegistrar {
  KernelRegistrar(DeviceType dev, DType dtype, typename Op::Fn fn) {
    Op::slots[static_cast<int>(dev)][static_cast<int>(dtype)] = reinterpret_cast<void*>(fn);
    register_kernel_name(Op::name, &Op::lookup);
    note_registration(Op::name, dev, dtype);
  }
};

}  // namespace vgg

#define VGG_KERNEL_OP(Tag, opname, FnType)          \
  struct Tag : ::vgg::KernelOp<Tag, FnType> {        \
    static constexpr const char* name = opname;      \
  }
#define VGG_CONCAT_INNER(a, b) a##b
#define VGG_CONCAT(a, b) VGG_CONCAT_INNER(a, b)
#define VGG_REGISTER_KERNEL(Op, dev, dtype, fn)                                 \
  static ::vgg::KernelRegistrar<Op> VGG_CONCAT(vgg_kernel_registrar_, __COUNTER__)( \
      ::vgg::DeviceType::dev, ::vgg::DType::dtype, fn)
