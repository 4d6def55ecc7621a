#include "tensor/profile.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

namespace vgg::profile {

namespace detail {
bool g_enabled = [] {
  const char* e = std::getenv("VGG_PROFILE");
  return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
}();
}  // namespace detail

namespace {

struct Pending {
  int slot;
  std::unique_ptr<CudaEvent> start, end;
};

struct State {
  std::mutex mu;
  std::vector<Row> rows;
  std::map<std::tuple<std::string, int, int>, int> index;
  std::vector<Pending> pending;
  std::vector<std::unique_ptr<CudaEvent>> free_events;
  bool exit_hook = false;
};

State& state() {
  static State* s = new State();  // outlives static destruction: the exit hook prints from it
  return *s;
}

std::unique_ptr<CudaEvent> take_event(State& s) {
  if (s.free_events.empty()) return std::make_unique<CudaEvent>();
  auto e = std::move(s.free_events.back());
  s.free_events.pop_back();
  return e;
}

// caller holds the lock
void harvest(State& s) {
  if (s.pending.empty()) return;
  cuda_synchronize();
  for (auto& p : s.pending) {
    s.rows[static_cast<size_t>(p.slot)].ms += CudaEvent::elapsed_ms(*p.start, *p.end);
    s.free_events.push_back(std::move(p.start));
    s.free_events.push_back(std::move(p.end));
  }
  s.pending.clear();
}

void print_at_exit() {
  const std::string t = table();
  if (!t.empty()) std::fputs(t.c_str(), stderr);
}

}  // namespace

void set_enabled(bool on) { detail::g_enabled = on; }

Scope::Scope(const char* op, const char* label, Device dev, DType dtype, double bytes) : gpu_(dev.is_cuda()) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.exit_hook) {
    s.exit_hook = true;
    std::atexit(print_at_exit);
  }
  std::string name(op);
  if (label) name += std::string(":") + label;
  auto key = std::make_tuple(name, static_cast<int>(dev.type), static_cast<int>(dtype));
  auto it = s.index.find(key);
  if (it == s.index.end()) {
    it = s.index.emplace(key, static_cast<int>(s.rows.size())).first;
    s.rows.push_back({name, dev.type, dtype});
  }
  slot_ = it->second;
  Row& r = s.rows[static_cast<size_t>(slot_)];
  r.calls += 1;
  r.bytes += bytes;
  if (gpu_) {
    auto e = take_event(s);
    e->record();
    start_ = e.release();
  } else {
    t0_ = std::chrono::steady_clock::now();
  }
}

Scope::~Scope() {
  State& s = state();
  if (!gpu_) {
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    std::lock_guard<std::mutex> lock(s.mu);
    s.rows[static_cast<size_t>(slot_)].ms += ms;
    return;
  }
  std::lock_guard<std::mutex> lock(s.mu);
  auto end = take_event(s);
  end->record();
  s.pending.push_back({slot_, std::unique_ptr<CudaEvent>(static_cast<CudaEvent*>(start_)), std::move(end)});
  if (s.pending.size() >= 4096) harvest(s);
}

std::vector<Row> rows() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  harvest(s);
  std::vector<Row> r = s.rows;
  std::sort(r.begin(), r.end(), [](const Row& a, const Row& b) { return a.ms > b.ms; });
  return r;
}

void reset() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  harvest(s);
  s.rows.clear();
  s.index.clear();
}

std::string table() {
  const std::vector<Row> r = rows();
  if (r.empty()) return "";
  double total = 0;
  int64_t calls = 0;
  for (const auto& x : r) total += x.ms, calls += x.calls;
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "vggflow profile (VGG_PROFILE): %lld kernel calls, %.3f ms of kernel time\n",
                static_cast<long long>(calls), total);
  out += line;
  out += "| op | device | dtype | calls | total ms | share | bytes moved | GB/s |\n|---|---|---|---|---|---|---|---|\n";
  for (const auto& x : r) {
    const char* dev = x.dev == DeviceType::CUDA ? "cuda" : x.dev == DeviceType::CPU ? "cpu" : "fake";
    char bytes[32] = "-", rate[32] = "-";
    if (x.bytes > 0) {
      std::snprintf(bytes, sizeof bytes, "%.3g GB", x.bytes * 1e-9);
      if (x.ms > 0) std::snprintf(rate, sizeof rate, "%.0f", x.bytes * 1e-9 / (x.ms * 1e-3));
    }
    std::snprintf(line, sizeof line, "| %s | %s | %s | %lld | %.3f | %.1f%% | %s | %s |\n", x.op.c_str(), dev,
                  dtype_name(x.dtype), static_cast<long long>(x.calls), x.ms, total > 0 ? 100.0 * x.ms / total : 0.0,
                  bytes, rate);
    out += line;
  }
  return out;
}

}  // namespace vgg::profile
