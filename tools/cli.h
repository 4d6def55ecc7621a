// Small command-line helpers shared by the binaries: "--flag value" / "--flag=value" parsing with
// typed, range-checked getters, and a main() wrapper that turns errors into one line on stderr
// with exit 2 (usage) or 1 (runtime).
#pragma once
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "tools/durable.h"

namespace vgg::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Flags {
 public:
  // value_flags take a value, switches do not; anything else starting with "--" is an error.
  Flags(int argc, char** argv, const std::set<std::string>& value_flags, const std::set<std::string>& switches) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a.rfind("--", 0) != 0 || a == "--") {
        positional_.push_back(a);
        continue;
      }
      std::string name = a, value;
      bool inline_value = false;
      if (auto eq = a.find('='); eq != std::string::npos) name = a.substr(0, eq), value = a.substr(eq + 1), inline_value = true;
      if (switches.count(name)) {
        if (inline_value) throw UsageError(name + " takes no value");
        values_[name] = "1";
      } else if (value_flags.count(name)) {
        if (!inline_value) {
          if (i + 1 >= argc) throw UsageError(name + " needs a value");
          value = argv[++i];
        }
        values_[name] = value;
      } else {
        throw UsageError("unknown flag " + name + " (see --help)");
      }
    }
  }
  bool has(const std::string& name) const { return values_.count(name) > 0; }
  const std::vector<std::string>& positional() const { return positional_; }
  std::string str(const std::string& name, const std::string& def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
  }
  int64_t integer(const std::string& name, int64_t def, int64_t lo, int64_t hi = INT64_MAX) const {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    const std::string& v = it->second;
    // strict: decimal digits with an optional '-', nothing before or after ("--steps= 8" is refused)
    long long x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x, 10);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size())
      throw UsageError(name + " must be an integer, got '" + v + "'");
    if (x < lo || x > hi)
      throw UsageError(name + " must be in [" + std::to_string(lo) + ", " + (hi == INT64_MAX ? "inf" : std::to_string(hi)) +
                       "], got " + v);
    return x;
  }
  double real(const std::string& name, double def, double lo, double hi) const {
    auto it = values_.find(name);
    if (it == values_.end()) return def;
    const std::string& v = it->second;
    // strict: a decimal number (1, -0.5, 3e-4); no spaces, no '+', no hex floats, no inf or nan
    double x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x, std::chars_format::general);
    if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x))
      throw UsageError(name + " must be a number, got '" + v + "'");
    if (x < lo || x > hi) throw UsageError(name + " must be in [" + fmt(lo) + ", " + fmt(hi) + "], got " + v);
    return x;
  }

 private:
  static std::string fmt(double x) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", x);
    return b;
  }
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

// Writes text to path through a temporary file renamed into place.
// (tools/durable.h: checked writes, fsync, rename, directory fsync)
inline void write_text_atomic(const std::filesystem::path& p, const std::string& text) { write_durable(p, text); }

// One line appended to a log (metrics.jsonl), flushed and checked: a full disk is an error.
inline void append_line(std::ofstream& o, const std::filesystem::path& p, const std::string& line) {
  o << line << "\n" << std::flush;
  if (!o) throw std::runtime_error("cannot write " + p.string() + " (disk full?)");
}

// Seconds as h:mm:ss (progress-bar ETAs).
inline std::string format_hms(double seconds) {
  char b[32];
  const auto s = static_cast<long long>(seconds + 0.5);
  std::snprintf(b, sizeof b, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  return b;
}

// Runs body; UsageError -> "<prog>: message", exit 2; any other exception -> exit 1.
inline int run_main(const char* prog, const std::function<int()>& body) {
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", prog, e.what());
    return 1;
  }
}

}  // namespace vgg::cli
