// Small command-line helpers shared by the binaries: "--flag value" / "--flag=value" parsing (CLI11)
// with typed, range-checked getters, and a main() wrapper that turns errors into one line on stderr
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

#include <CLI/CLI.hpp>

#include "tools/durable.h"

namespace vgg::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Strict conversions of one flag's text (name is the flag, for the message):
//   integer: decimal digits with an optional '-', nothing before or after ("--steps= 8" is refused);
//   real:    a decimal number (1, -0.5, 3e-4); no spaces, no '+', no hex floats, no inf or nan.
inline std::string format_number(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", x);
  return b;
}
inline int64_t parse_integer(const std::string& name, const std::string& v, int64_t lo, int64_t hi = INT64_MAX) {
  long long x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x, 10);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size())
    throw UsageError(name + " must be an integer, got '" + v + "'");
  if (x < lo || x > hi)
    throw UsageError(name + " must be in [" + std::to_string(lo) + ", " + (hi == INT64_MAX ? "inf" : std::to_string(hi)) +
                     "], got " + v);
  return x;
}
inline double parse_real(const std::string& name, const std::string& v, double lo, double hi) {
  double x = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x, std::chars_format::general);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || !std::isfinite(x))
    throw UsageError(name + " must be a number, got '" + v + "'");
  if (x < lo || x > hi) throw UsageError(name + " must be in [" + format_number(lo) + ", " + format_number(hi) + "], got " + v);
  return x;
}

// One line for a CLI11 parse error ("--steps needs a value", "--steps given twice", ...).
inline std::string parse_error_line(const CLI::ParseError& e) {
  std::string m = e.what();
  if (const auto p = m.find(": 1 required"); p != std::string::npos && m.find("missing") != std::string::npos)
    return m.substr(0, p) + " needs a value";
  for (char& c : m)
    if (c == '\n') c = ' ';
  return m;
}

// The command line of the small tools, parsed by CLI11: "--flag value" and "--flag=value" for
// value_flags, switches without a value, a later repeat of a flag overriding the earlier one; any
// other "--name" is an error, everything else is positional. Typed, range-checked getters.
class Flags {
 public:
  Flags(int argc, char** argv, const std::set<std::string>& value_flags, const std::set<std::string>& switches) {
    CLI::App app;
    app.set_help_flag();
    app.allow_extras();
    std::map<std::string, bool> on;
    for (const auto& f : value_flags)
      app.add_option(f, values_[f])->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    for (const auto& f : switches) app.add_flag(f, on[f]);
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      throw UsageError(parse_error_line(e));
    }
    for (const auto& f : value_flags)
      if (app.count(f) == 0)
        values_.erase(f);
      else if (values_[f].rfind("--", 0) == 0)  // "--steps --seed 3": CLI11 gives --steps the text "--seed"
        throw UsageError(f + " needs a value (got the flag " + values_[f] + ")");
    for (const auto& [f, v] : on)
      if (app.count(f) > 0) values_[f] = "1";
    for (const std::string& a : app.remaining()) {
      if (a.rfind("--", 0) == 0 && a != "--") throw UsageError("unknown flag " + a.substr(0, a.find('=')) + " (see --help)");
      if (a != "--") positional_.push_back(a);
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
    return it == values_.end() ? def : parse_integer(name, it->second, lo, hi);
  }
  double real(const std::string& name, double def, double lo, double hi) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : parse_real(name, it->second, lo, hi);
  }

 private:
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
