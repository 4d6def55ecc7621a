#include "tools/trainer.h"

#include <algorithm>
#include <cstdio>

#include "tensor/error.h"
#include "tensor/json.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace vgg::cli {

std::string flag_of(const std::string& key) {
  std::string f = "--" + key;
  for (char& c : f)
    if (c == '_') c = '-';
  return f;
}

bool due(int64_t every, int64_t step, int64_t steps) {
  return every >= 0 && ((every > 0 && step % every == 0) || step == steps);
}

namespace {

std::string kind_of(const json& d) {
  return d.is_number_integer() ? "an integer" : d.is_number() ? "a number" : d.is_boolean() ? "true or false" : "a string";
}

std::string joined(const std::vector<std::string>& v, const std::string& last_sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i == 0 ? "" : i + 1 == v.size() ? last_sep : ", ") + v[i];
  return s;
}

// The value's check against its setting; `name` opens the message ("--steps", "'steps'").
void check_value(const Setting& s, const json& v, const std::string& name) {
  if (s.def.is_number_integer()) {
    const auto x = v.get<int64_t>();
    if (x < s.lo || x > s.hi)
      throw UsageError(name + " must be in [" + std::to_string(static_cast<int64_t>(s.lo)) + ", " +
                       std::to_string(static_cast<int64_t>(s.hi)) + "], got " + std::to_string(x));
  } else if (s.def.is_number()) {
    const double x = v.get<double>();
    if (!(x >= s.lo && x <= s.hi))
      throw UsageError(name + " must be in [" + format_number(s.lo) + ", " + format_number(s.hi) + "], got " + v.dump());
  } else if (s.def.is_string() && !s.choices.empty()) {
    const std::string x = v.get<std::string>();
    if (std::find(s.choices.begin(), s.choices.end(), x) == s.choices.end())
      throw UsageError(name + " must be " + joined(s.choices, " or ") + ", got '" + x + "'");
  }
}

}  // namespace

Trainer::Trainer(Options o) : o_(std::move(o)), t_start_(std::chrono::steady_clock::now()) {}

double Trainer::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start_).count();
}

bool Trainer::parse(int argc, char** argv) {
  CLI::App app(o_.description, o_.prog);
  app.set_help_flag("--help", "print this help and exit");
  app.allow_extras();
  app.get_formatter()->column_width(34);
  std::string out = o_.default_out;
  app.add_option("--out", out, "the run folder")->default_str(o_.default_out)->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.add_flag("--resume", resume_flag_, "continue the run in --out from its newest checkpoint (only --steps may change)");
  if (o_.config_file)
    app.add_option("--config", config_path_, "a JSON object of settings (the keys below); flags override it")
        ->type_name("FILE.json")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::map<std::string, std::string> raw;
  for (const Setting& s : o_.settings) {
    std::string type = s.def.is_boolean() ? "true|false" : s.def.is_number_integer() ? "INT" : s.def.is_number() ? "X" : "TEXT";
    if (!s.choices.empty()) {
      type.clear();
      for (size_t i = 0; i < s.choices.size(); ++i) type += (i ? "|" : "") + s.choices[i];
    }
    app.add_option(flag_of(s.key), raw[s.key], s.help)
        ->type_name(type)
        ->default_str(s.def.is_string() ? s.def.get<std::string>() : s.def.dump())
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return false;
  } catch (const CLI::ParseError& e) {
    throw UsageError(parse_error_line(e));
  }
  for (const Setting& s : o_.settings)  // "--steps --seed 3": CLI11 gives --steps the text "--seed"
    if (app.count(flag_of(s.key)) && raw[s.key].rfind("--", 0) == 0)
      throw UsageError(flag_of(s.key) + " needs a value (got the flag " + raw[s.key] + ")");
  for (const std::string& a : app.remaining()) {
    if (a.rfind("--", 0) == 0 && a != "--") throw UsageError("unknown flag " + a.substr(0, a.find('=')) + " (see --help)");
    throw UsageError("unexpected argument '" + a + "' (see --help)");
  }
  if (app.count("--out") && out.empty())
    throw UsageError("--out must name a folder (an empty name would write into the current one)");
  out_ = out;
  if (o_.config_file && app.count("--config") && config_path_.empty()) throw UsageError("--config: empty file name");
  for (const Setting& s : o_.settings)
    if (app.count(flag_of(s.key))) given_[s.key] = raw[s.key];
  return true;
}

json Trainer::read_file(const std::string& path, const std::string& what) const {
  if (!fs::exists(path)) throw UsageError("cannot open " + what + path);
  json c;
  try {
    c = read_json_file(path);  // strict: names the file; no duplicate keys, no 1e309
  } catch (const Error& e) {
    throw UsageError(e.what());
  }
  if (!c.is_object()) throw UsageError(path + ": the config must be a JSON object");
  return c;
}

void Trainer::apply_file(json& j, const json& c, const std::string& path) const {
  for (auto& [k, v] : c.items()) {
    const auto it = std::find_if(o_.settings.begin(), o_.settings.end(), [&](const Setting& s) { return s.key == k; });
    if (it == o_.settings.end()) throw UsageError(path + ": unknown setting '" + k + "'");
    const json& d = it->def;
    const bool ok = (d.is_string() && v.is_string()) || (d.is_boolean() && v.is_boolean()) ||
                    (d.is_number_integer() && v.is_number_integer()) || (d.is_number_float() && v.is_number());
    if (!ok) throw UsageError(path + ": '" + k + "' must be " + kind_of(d) + ", got " + v.dump());
    try {
      check_value(*it, v, "'" + k + "'");
    } catch (const UsageError& e) {
      throw UsageError(path + ": " + e.what());
    }
    j[k] = v;
  }
}

// defaults <- the file (a --config, or a resumed run's config.json) <- flags
json Trainer::resolve(const std::string& file, const std::string& what) const {
  json j = json::object();
  for (const Setting& s : o_.settings) j[s.key] = s.def;
  const json c = file.empty() ? json::object() : read_file(file, what);
  if (!o_.presets.empty()) {  // the preset named by the flag, else the file, else the default
    json pick = json::object();
    pick["preset"] = j["preset"];
    const auto g = given_.find("preset");
    if (c.contains("preset")) pick["preset"] = c["preset"];
    apply_file(j, pick, file.empty() ? "--preset" : file);  // checks the file's value
    std::string name = g != given_.end() ? g->second : j["preset"].get<std::string>();
    const auto it = o_.presets.find(name);
    if (it != o_.presets.end()) apply_file(j, it->second, "preset " + name);
  }
  if (!file.empty()) apply_file(j, c, file);
  for (const Setting& s : o_.settings) {
    const auto g = given_.find(s.key);
    if (g == given_.end()) continue;
    const std::string fl = flag_of(s.key), & v = g->second;
    if (s.def.is_boolean()) {
      if (v != "true" && v != "false") throw UsageError(fl + " must be true or false, got '" + v + "'");
      j[s.key] = v == "true";
    } else if (s.def.is_string()) {
      j[s.key] = v;
    } else if (s.def.is_number_integer()) {
      j[s.key] = parse_integer(fl, v, static_cast<int64_t>(s.lo), static_cast<int64_t>(s.hi));
    } else {
      j[s.key] = parse_real(fl, v, s.lo, s.hi);
    }
    check_value(s, j[s.key], fl);
  }
  if (o_.validate) o_.validate(j);
  return j;
}

void Trainer::open() {
  if (resume_flag_) {
    for (const auto& [k, v] : given_)
      if (k != "steps") throw UsageError(flag_of(k) + " cannot change on --resume (only --steps can)");
    if (!config_path_.empty()) throw UsageError("--config cannot be given with --resume (the run has its own)");
    ck_ = latest_checkpoint(out_);
    if (ck_.empty() && !fs::exists(out_ / "config.json")) throw std::runtime_error("--resume: no run in " + out_.string());
    if (o_.rank == 0) lock_.emplace(out_);
    cfg_ = resolve((out_ / "config.json").string(), "the run's config ");  // checked as a --config file is
    if (ck_.empty()) {  // killed or failed before its first checkpoint: nothing to continue, start over
      restart_ = true;
      if (o_.rank == 0)
        std::fprintf(stderr, "%s: %s has no checkpoint yet: starting over with its saved settings\n", o_.prog.c_str(),
                   out_.string().c_str());
      return;
    }
    resuming_ = true;
    state_ = read_json_file((ck_ / "state.json").string());  // errors name the file
    for (const std::string& k : o_.state_keys)
      if (!state_.is_object() || !state_.contains(k) || !state_[k].is_number_integer() || state_[k].get<int64_t>() < 0)
        throw std::runtime_error((ck_ / "state.json").string() + ": '" + k + "' must be a non-negative integer");
    step_ = state_["step"].get<int64_t>();
    const int64_t want = cfg_["steps"].get<int64_t>();
    if (step_ > want)
      throw UsageError("--steps " + std::to_string(want) + " is before the checkpoint's step " + std::to_string(step_) +
                       " (a run cannot be shortened by resuming it)");
    return;
  }
  cfg_ = resolve(config_path_, "--config ");
  if (o_.rank != 0) return;  // rank 0 owns the folder (and refuses for every rank)
  lock_.emplace(out_);
  if (holds_a_run(out_)) throw std::runtime_error(out_.string() + " already holds a run (use --resume, or another --out)");
}

void Trainer::start() {
  if (o_.rank != 0) {
    if (o_.barrier) o_.barrier();
    return;
  }
  fs::create_directories(out_ / "samples");
  // config.json first: a run killed before its metrics file exists is resumed (started over) from it
  write_text_atomic(out_ / "config.json", cfg_.dump(2) + "\n");
  // the lines of updates after the checkpoint are written again by the resumed run (the same
  // numbers): keep only those up to the checkpoint, so no update is logged twice
  write_durable(out_ / "metrics.jsonl", resuming_ ? lines_up_to_step((out_ / "metrics.jsonl").string(), step_) : "");
  metrics_.open(out_ / "metrics.jsonl", std::ios::app);
  if (!metrics_) throw std::runtime_error("cannot open " + (out_ / "metrics.jsonl").string());
  if (o_.barrier) o_.barrier();
}

void Trainer::log(const json& line) {
  if (o_.rank == 0) append_line(metrics_, out_ / "metrics.jsonl", line.dump());
}

void Trainer::commit(int64_t step, const std::function<void(const fs::path&)>& write, const json& extra_state) {
  if (o_.rank != 0) return;
  commit_checkpoint(out_, step, [&](const fs::path& tmp) {
    write(tmp);
    json st = extra_state;
    st["step"] = step;
    write_text_atomic(tmp / "state.json", st.dump(2) + "\n");
  });
}

void Trainer::run(const Loop& l) {
  VGG_CHECK(l.update && l.checkpoint, "Trainer::run: no update or checkpoint hook");
  const bool lead = o_.rank == 0;  // the other ranks only update
  if (lead && step_ == 0 && l.at_start) {
    if (l.sample && l.sample_every >= 0) l.sample(0);
    if (l.evaluate && l.eval_every >= 0) l.evaluate(0);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = step_;
  while (step_ < l.steps) {
    const auto tu = std::chrono::steady_clock::now();
    json line = l.update(step_);
    ++step_;
    const auto now = std::chrono::steady_clock::now();
    const double per = std::chrono::duration<double>(now - t0).count() / static_cast<double>(step_ - first);
    if (!line.is_null() && lead) {
      if (line.contains("skipped"))
        std::fprintf(stderr, "\n%s: warning: update %lld skipped: %s\n", o_.prog.c_str(), static_cast<long long>(step_),
                     line["skipped"].get<std::string>().c_str());
      line["step"] = step_;
      line["sec_per_update"] = per;  // since the first update, evaluations included (the ETA's rate)
      line["update_s"] = std::chrono::duration<double>(now - tu).count();
      line["elapsed_s"] = elapsed();
      log(line);
    }
    const bool ckpt = step_ % l.ckpt_every == 0 || step_ == l.steps;
    if (!lead) {  // every rank joins the checkpoint hook (it may gather state); commit() writes on rank 0
      if (ckpt) l.checkpoint(step_);
      continue;
    }
    std::fprintf(stderr, "\r[%lld/%lld] %s  %.2f s/update  ETA %s   ", static_cast<long long>(step_),
                 static_cast<long long>(l.steps), l.progress ? l.progress().c_str() : "", per,
                 format_hms(per * static_cast<double>(l.steps - step_)).c_str());
    if (l.evaluate && due(l.eval_every, step_, l.steps)) l.evaluate(step_);
    if (l.sample && due(l.sample_every, step_, l.steps)) l.sample(step_);
    if (ckpt) l.checkpoint(step_);
  }
}

}  // namespace vgg::cli
