#include "dist/comm.h"

#include <dlfcn.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>

#include "tensor/error.h"
#include "tensor/factory.h"

namespace vgg::dist {

namespace {

class Local final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "local"; }
  Device device() const override { return Device::cpu(); }
  void barrier() override {}

 protected:
  void do_all_reduce_sum(Tensor&) override {}
  void do_reduce_scatter_sum(const Tensor& in, Tensor& out) override { copy_into(in, out); }
  void do_all_gather(const Tensor& in, Tensor& out) override { copy_into(in, out); }
  void do_broadcast(Tensor&, int) override {}

 private:
  static void copy_into(const Tensor& in, Tensor& out) {
    if (in.data_ptr() != out.data_ptr())
      std::memcpy(out.data_ptr(), in.data_ptr(), static_cast<size_t>(in.numel()) * itemsize(in.dtype()));
  }
};

// The folder libvgg.so was loaded from (plugins live beside it).
std::filesystem::path library_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&launched_by_mpi), &info) != 0 && info.dli_fname != nullptr)
    return std::filesystem::path(info.dli_fname).parent_path();
  return {};
}

Communicator* load_plugin(const std::string& backend) {
  const std::string file = "libvgg_" + backend + ".so";
  const std::filesystem::path beside = library_dir() / file;
  void* h = dlopen(beside.string().c_str(), RTLD_NOW | RTLD_GLOBAL);
  std::string why = h ? "" : dlerror();
  if (!h) {
    h = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);  // LD_LIBRARY_PATH
    if (!h) why += std::string("; ") + dlerror();
  }
  VGG_CHECK(h != nullptr, "the ", backend, " backend is not available in this build (", why,
            "); build with ", backend == "mpi" ? "libopenmpi-dev" : "NCCL and MPI", " installed");
  const std::string sym = "vgg_dist_make_" + backend;
  auto make = reinterpret_cast<Factory>(dlsym(h, sym.c_str()));
  VGG_CHECK(make != nullptr, file, ": no ", sym);
  return make();
}

std::mutex g_mu;
std::shared_ptr<Communicator> g_world;

}  // namespace

void Communicator::all_reduce_sum(Tensor& t) {
  check(t, "all_reduce");
  do_all_reduce_sum(t);
}

void Communicator::reduce_scatter_sum(const Tensor& in, Tensor& out) {
  check(in, "reduce_scatter");
  check(out, "reduce_scatter");
  VGG_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size(), "communicator reduce_scatter: in ",
            describe(in), " must hold ", size(), " × out ", describe(out));
  do_reduce_scatter_sum(in, out);
}

void Communicator::all_gather(const Tensor& in, Tensor& out) {
  check(in, "all_gather");
  check(out, "all_gather");
  VGG_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size(), "communicator all_gather: out ",
            describe(out), " must hold ", size(), " × in ", describe(in));
  do_all_gather(in, out);
}

void Communicator::broadcast(Tensor& t, int root) {
  check(t, "broadcast");
  VGG_CHECK(root >= 0 && root < size(), "communicator broadcast: root ", root, " is not a rank of ", size());
  do_broadcast(t, root);
}

void Communicator::check(const Tensor& t, const char* op) const {
  VGG_CHECK(t.defined() && t.is_contiguous() && t.device() == device(), "communicator ", op, " (", backend(),
            "): needs a contiguous tensor on ", device().str(), ", got ", t.defined() ? describe(t) : "undefined");
}

std::vector<std::string> Communicator::all_gather_strings(const std::string& s) {
  const int n = size();
  Tensor len = zeros({1}, opts(DType::I64));
  len.data<int64_t>()[0] = static_cast<int64_t>(s.size());
  Tensor lens = zeros({n}, opts(DType::I64));
  if (device().is_cpu()) {
    all_gather(len, lens);
  } else {
    Tensor dl = to_device_raw(len, device()), dls = zeros({n}, opts(DType::I64, device()));
    all_gather(dl, dls);
    lens = to_device_raw(dls, Device::cpu());
  }
  int64_t longest = 0;
  for (int i = 0; i < n; ++i) longest = std::max(longest, lens.data<int64_t>()[i]);
  const int64_t words = (longest + 7) / 8 + 1;
  Tensor mine = zeros({words}, opts(DType::I64));
  std::memcpy(mine.data_ptr(), s.data(), s.size());
  Tensor all = zeros({n * words}, opts(DType::I64));
  if (device().is_cpu()) {
    all_gather(mine, all);
  } else {
    Tensor dm = to_device_raw(mine, device()), da = zeros({n * words}, opts(DType::I64, device()));
    all_gather(dm, da);
    all = to_device_raw(da, Device::cpu());
  }
  std::vector<std::string> out;
  const char* base = static_cast<const char*>(all.data_ptr());
  for (int i = 0; i < n; ++i)
    out.emplace_back(base + static_cast<size_t>(i) * static_cast<size_t>(words) * 8,
                     static_cast<size_t>(lens.data<int64_t>()[i]));
  return out;
}

bool Communicator::all_true(bool v) {
  Tensor t = zeros({1}, opts(DType::I64));
  t.data<int64_t>()[0] = v ? 0 : 1;
  if (device().is_cpu()) {
    all_reduce_sum(t);
  } else {
    Tensor d = to_device_raw(t, device());
    all_reduce_sum(d);
    t = to_device_raw(d, Device::cpu());
  }
  return t.data<int64_t>()[0] == 0;
}

std::unique_ptr<Communicator> make_local() { return std::make_unique<Local>(); }

bool launched_by_mpi() {
  for (const char* k : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"})
    if (std::getenv(k) != nullptr) return true;
  return false;
}

std::shared_ptr<Communicator> world(const std::string& backend) {
  std::lock_guard<std::mutex> lock(g_mu);
  VGG_CHECK(backend == "auto" || backend == "local" || backend == "mpi" || backend == "nccl",
            "unknown communicator backend '", backend, "' (auto, local, mpi, nccl)");
  const std::string want = backend == "auto" ? (launched_by_mpi() ? "mpi" : "local") : backend;
  if (g_world) {
    VGG_CHECK(g_world->backend() == want, "the job's communicator is ", g_world->backend(), ", not ", want);
    return g_world;
  }
  if (want == "local") {
    g_world = make_local();
  } else {
    VGG_CHECK(launched_by_mpi(), "the ", want, " backend needs the processes started by mpirun (mpirun -np N ...)");
    g_world.reset(load_plugin(want));
  }
  return g_world;
}

std::unique_ptr<Communicator> make(const std::string& backend) {
  if (backend == "local") return make_local();
  VGG_CHECK(backend == "mpi" || backend == "nccl", "unknown communicator backend '", backend, "' (local, mpi, nccl)");
  VGG_CHECK(launched_by_mpi(), "the ", backend, " backend needs the processes started by mpirun (mpirun -np N ...)");
  return std::unique_ptr<Communicator>(load_plugin(backend));
}

void shutdown() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_world.reset();
}

double timeout_seconds() {
  const char* v = std::getenv("VGG_COMM_TIMEOUT");
  if (v == nullptr || *v == '\0') return 1800;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  VGG_CHECK(*end == '\0' && std::isfinite(s) && s > 0, "VGG_COMM_TIMEOUT must be a positive number of seconds, got '", v, "'");
  return s;
}

}  // namespace vgg::dist
