// Durable files and atomic checkpoints for the run folders the tools write (vgg_train, vgg_pretrain).
//
// write_durable(path, bytes): the bytes go to <path>.tmp with every write checked, are flushed to
// the disk (fsync) and closed (checked), the file is renamed over <path> and the directory is
// fsync'ed; a crash or an I/O error leaves the old file or the new one, never a short one, and a
// failure throws one line naming the file (a full disk is an error, not an empty state.json).
//
// Checkpoints: a run folder holds step-numbered folders ckpt-<step>/ and a symbolic link
// `checkpoint` to the newest. commit_checkpoint writes every file of the new one under
// ckpt-<step>.tmp/, renames that to ckpt-<step>/ (complete by construction), then switches the link
// with one rename of a new link over the old one, and only then removes older ckpt-* folders. A
// kill at any moment leaves the previous checkpoint reachable: latest_checkpoint() follows the
// link, or falls back to the newest complete ckpt-<step>/ (a kill between the folder's rename and
// the link's), or to the pre-link layout (checkpoint/ or checkpoint.old/ folders).
//
// One process per run folder: RunLock holds an exclusive flock on <run>/.lock for its lifetime (the
// kernel drops it when the process dies, also by SIGKILL, so a killed run never leaves a stale lock);
// a second vgg_train or vgg_pretrain on the same folder is refused in one line naming the holder.
//
// Tests inject failures with VGG_FAIL_DURABLE_WRITE=N: the N-th durable write of the process (from 1)
// fails as a full disk would.
#pragma once
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace vgg::cli {

namespace durable_detail {
inline int& write_count() {
  static int n = 0;
  return n;
}
// the write (counted from 1) that fails; 0: none (VGG_FAIL_DURABLE_WRITE, or set by a test)
inline int& fail_at() {
  static int n = [] {
    const char* e = std::getenv("VGG_FAIL_DURABLE_WRITE");
    return e ? std::atoi(e) : 0;
  }();
  return n;
}
inline bool injected_failure() { return ++write_count() == fail_at(); }
[[noreturn]] inline void fail(const std::string& what, const std::filesystem::path& p, int err) {
  throw std::runtime_error("cannot write " + p.string() + ": " + what + (err ? std::string(": ") + std::strerror(err) : ""));
}
inline void fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems do not open directories
  ::fsync(fd);
  ::close(fd);
}
}  // namespace durable_detail

inline void write_durable(const std::filesystem::path& p, const std::string& bytes) {
  std::filesystem::path tmp = p;
  tmp += ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) durable_detail::fail("open", tmp, errno);
  size_t done = 0;
  int err = 0;
  if (durable_detail::injected_failure()) err = ENOSPC;
  while (!err && done < bytes.size()) {
    const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) err = w < 0 ? errno : ENOSPC;
    else done += static_cast<size_t>(w);
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (err) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    durable_detail::fail("write", tmp, err);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, p, ec);
  if (ec) durable_detail::fail("rename to " + p.filename().string(), tmp, ec.value());
  durable_detail::fsync_dir(p.parent_path());
}

// The lines of a JSON-lines log whose "step" is at most `step` (lines that are not such an object,
// e.g. a line cut short by a kill, are dropped); empty when the file does not exist.
inline std::string lines_up_to_step(const std::string& path, int64_t step) {
  std::ifstream in(path);
  std::string out, line;
  while (std::getline(in, line)) {
    const size_t p = line.find("\"step\":");
    if (p == std::string::npos || line.empty() || line.front() != '{' || line.back() != '}') continue;
    const char* s = line.c_str() + p + 7;
    char* end = nullptr;
    const long long v = std::strtoll(s, &end, 10);
    if (end == s || v > step) continue;
    out += line + "\n";
  }
  return out;
}

// ---- checkpoints ---------------------------------------------------------------------------------

inline std::filesystem::path checkpoint_dir(const std::filesystem::path& run, int64_t step) {
  char name[40];
  std::snprintf(name, sizeof name, "ckpt-%09lld", static_cast<long long>(step));
  return run / name;
}

// the step of a folder named ckpt-<digits>, or -1
inline int64_t checkpoint_step(const std::filesystem::path& p) {
  const std::string n = p.filename().string();
  if (n.size() < 6 || n.rfind("ckpt-", 0) != 0) return -1;
  for (size_t i = 5; i < n.size(); ++i)
    if (n[i] < '0' || n[i] > '9') return -1;
  return n.size() - 5 > 18 ? -1 : std::stoll(n.substr(5));
}

inline bool complete_checkpoint(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_directory(dir, ec) && std::filesystem::is_regular_file(dir / "state.json", ec);
}

// The newest complete checkpoint of a run folder (see the header comment); empty when none.
inline std::filesystem::path latest_checkpoint(const std::filesystem::path& run) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path link = run / "checkpoint";
  if (complete_checkpoint(link)) return fs::is_symlink(link, ec) ? fs::canonical(link, ec) : link;
  fs::path best;
  int64_t best_step = -1;
  if (fs::is_directory(run, ec))
    for (const auto& e : fs::directory_iterator(run, ec)) {
      const int64_t s = checkpoint_step(e.path());
      if (s > best_step && complete_checkpoint(e.path())) best_step = s, best = e.path();
    }
  if (!best.empty()) return best;
  if (complete_checkpoint(run / "checkpoint.old")) return run / "checkpoint.old";
  return {};
}

// Anything a run leaves behind: a fresh run refuses a folder that has it.
inline bool holds_a_run(const std::filesystem::path& run) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(run / "checkpoint", ec)) || fs::exists(run / "checkpoint.old", ec) ||
      fs::exists(run / "metrics.jsonl", ec))
    return true;
  if (fs::is_directory(run, ec))
    for (const auto& e : fs::directory_iterator(run, ec))
      if (e.path().filename().string().rfind("ckpt-", 0) == 0) return true;
  return false;
}

// Writes a checkpoint with write_files(folder) and makes it the run's checkpoint (see above).
inline void commit_checkpoint(const std::filesystem::path& run, int64_t step,
                              const std::function<void(const std::filesystem::path&)>& write_files) {
  namespace fs = std::filesystem;
  const fs::path fin = checkpoint_dir(run, step);
  fs::path tmp = fin;
  tmp += ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  write_files(tmp);
  durable_detail::fsync_dir(tmp);
  fs::remove_all(fin);  // a folder of this step from a run that was killed after writing it
  fs::rename(tmp, fin);
  durable_detail::fsync_dir(run);
  // the switch: a new link renamed over `checkpoint` (a pre-link checkpoint/ folder is moved aside
  // first; latest_checkpoint finds it as checkpoint.old until the link exists)
  const fs::path link = run / "checkpoint", next = run / "checkpoint.next";
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(link, ec))) {
    fs::remove_all(run / "checkpoint.old");
    fs::rename(link, run / "checkpoint.old");
  }
  fs::remove(next, ec);
  fs::create_directory_symlink(fin.filename(), next);
  fs::rename(next, link);
  durable_detail::fsync_dir(run);
  // older checkpoints go only now
  std::vector<fs::path> stale;
  for (const auto& e : fs::directory_iterator(run)) {
    const int64_t s = checkpoint_step(e.path());
    const std::string n = e.path().filename().string();
    if ((s >= 0 && s != step) || (n.rfind("ckpt-", 0) == 0 && n.size() > 4 && n.substr(n.size() - 4) == ".tmp"))
      stale.push_back(e.path());
  }
  for (const auto& p : stale) fs::remove_all(p, ec);
  fs::remove_all(run / "checkpoint.old", ec);
}

// ---- one process per run folder -------------------------------------------------------------------

class RunLock {
 public:
  // Creates the folder if needed and takes the lock, or throws naming the process that holds it.
  explicit RunLock(const std::filesystem::path& run) : run_(run) {
    std::error_code ec;
    created_ = !std::filesystem::exists(run, ec);
    std::filesystem::create_directories(run);
    const std::filesystem::path p = run / ".lock";
    fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::runtime_error("cannot open " + p.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char buf[32] = {0};
      const ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
      std::string holder = n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
      while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
      ::close(fd_);
      fd_ = -1;
      if (err == EWOULDBLOCK)
        throw std::runtime_error(run.string() + " is in use by another run" +
                                 (holder.empty() ? std::string() : " (process " + holder + ")") +
                                 "; wait for it to end or use another --out");
      throw std::runtime_error("cannot lock " + p.string() + ": " + std::strerror(err));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd_, 0) == 0 && ::pwrite(fd_, pid.data(), pid.size(), 0) < 0) {
      // the pid is only a hint in the message above; the lock itself is what counts
    }
  }
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  // A folder this lock created and nothing else wrote into (a run refused or failed before its first
  // file) is removed again, still under the lock: a refused start leaves nothing behind.
  ~RunLock() {
    if (fd_ < 0) return;
    if (created_) {
      std::error_code ec;
      bool only_lock = true;
      for (const auto& e : std::filesystem::directory_iterator(run_, ec))
        only_lock = only_lock && e.path().filename() == ".lock";
      if (!ec && only_lock) {
        std::filesystem::remove(run_ / ".lock", ec);
        std::filesystem::remove(run_, ec);
      }
    }
    ::close(fd_);
  }

 private:
  std::filesystem::path run_;
  bool created_ = false;
  int fd_ = -1;
};

}  // namespace vgg::cli
