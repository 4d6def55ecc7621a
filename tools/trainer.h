// The trainer of vgg_train and vgg_pretrain: settings (a table: defaults <- a JSON config file or
// the run's saved config.json <- flags, parsed by CLI11, every value range-checked with one-line
// errors), the run folder (one process per folder; new, resumed from its newest complete
// checkpoint, or started over when killed before its first), config.json and metrics.jsonl written
// through the one durable writer (tools/durable.h), the update loop with its progress line, the
// non-finite skip's warning, and the evaluation, sample-grid and checkpoint schedule.
//
// A tool describes its settings, builds its networks from trainer.cfg(), then hands the loop its
// update, save/load and evaluation hooks; the update itself (micro-batches, accumulation, the skip)
// is methods::Updater (vggflow/methods/method.h).
#pragma once
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tools/cli.h"

namespace vgg::cli {

// One setting: its JSON key (the flag is "--" + key with '_' as '-'), its default (whose JSON type
// is the setting's: string, boolean — given as true|false —, integer or number), the allowed range
// (numbers) or values (strings; empty: any), its help.
struct Setting {
  std::string key;
  nlohmann::json def;
  double lo = 0, hi = 0;
  std::string help;
  std::vector<std::string> choices = {};
};
std::string flag_of(const std::string& key);

// When a periodic event is due after update `step` of `steps`: every < 0 never, 0 only at the end,
// else every `every` updates and at the end.
bool due(int64_t every, int64_t step, int64_t steps);

class Trainer {
 public:
  struct Options {
    std::string prog;         // "vgg_train": error and progress lines start with it
    std::string description;  // the help's first paragraph
    std::vector<Setting> settings;
    // Named bundles of settings chosen by the "preset" setting (which must then exist): defaults <-
    // the preset <- the config file <- flags. A preset's values are checked as a config file's.
    std::map<std::string, nlohmann::json> presets;
    std::string default_out = "runs/train";
    bool config_file = true;  // a --config FILE.json of settings
    std::vector<std::string> state_keys = {"step"};  // non-negative integers every checkpoint's state.json holds
    // cross-setting checks on the resolved settings (throw UsageError); run on flags, config files
    // and saved runs alike
    std::function<void(nlohmann::json&)> validate;
    // Data parallel (mpirun -np N): this process's rank. Every rank resolves the same settings and
    // runs the updates and the checkpoint hook (which may gather state); only rank 0 takes the
    // lock, writes the run folder (config, metrics, checkpoints: commit() is a no-op elsewhere),
    // evaluates, samples and prints progress. start() ends with `barrier` (all ranks
    // wait for rank 0's folder before reading a checkpoint).
    int rank = 0;
    std::function<void()> barrier;
  };
  explicit Trainer(Options o);

  // Parses the command line; false when --help was printed (the tool exits 0).
  bool parse(int argc, char** argv);
  // Resolves the settings and takes the run folder: a new run (refused where a run exists), or
  // --resume (only --steps may change; the saved settings are checked as --config is; the newest
  // complete checkpoint's state.json is checked), or --resume of a run killed before its first
  // checkpoint, which starts over with its saved settings. Writes nothing but the lock.
  void open();
  // Creates the run's folders and writes config.json, then (re)starts metrics.jsonl: empty for a
  // new run, cut to the checkpoint's step when resuming (those updates are logged again).
  void start();

  const nlohmann::json& cfg() const { return cfg_; }
  const std::filesystem::path& out() const { return out_; }
  bool resuming() const { return resuming_; }                 // from a checkpoint
  const std::filesystem::path& checkpoint() const { return ck_; }  // resuming: the folder
  const nlohmann::json& checkpoint_state() const { return state_; }
  int64_t step() const { return step_; }  // updates done (the checkpoint's step when resuming)
  double elapsed() const;                 // seconds since the trainer was made

  // One line of metrics.jsonl (checked: a full disk is an error).
  void log(const nlohmann::json& line);
  // ckpt-<step>/ with the tool's files (write(tmp_folder)) and state.json ({"step"} + extra),
  // switched to by one rename (tools/durable.h).
  void commit(int64_t step, const std::function<void(const std::filesystem::path&)>& write,
              const nlohmann::json& extra_state = nlohmann::json::object());

  struct Loop {
    int64_t steps = 1;
    // update `step` (0-based): its metrics line; null to log nothing this update. A line with
    // "skipped" gets the warning. The trainer adds "step", "sec_per_update" (since the first
    // update of this process, evaluations included), "update_s" and "elapsed_s".
    std::function<nlohmann::json(int64_t step)> update;
    std::function<std::string()> progress;  // the progress line's fields after the last update
    std::function<void(int64_t step)> checkpoint, evaluate, sample;  // evaluate/sample optional
    int64_t eval_every = -1, sample_every = -1, ckpt_every = 1;  // due()
    bool at_start = true;  // a new run also evaluates and samples at step 0 (when due at all)
  };
  void run(const Loop& loop);

 private:
  nlohmann::json resolve(const std::string& file, const std::string& what) const;
  nlohmann::json read_file(const std::string& path, const std::string& what) const;  // a JSON object
  // c's settings into j, each checked (unknown key, type, range); errors start with `path`
  void apply_file(nlohmann::json& j, const nlohmann::json& c, const std::string& path) const;

  Options o_;
  std::chrono::steady_clock::time_point t_start_;
  std::map<std::string, std::string> given_;  // flag key -> its text
  std::string config_path_;
  bool resume_flag_ = false, resuming_ = false, restart_ = false;
  std::filesystem::path out_, ck_;
  nlohmann::json cfg_, state_;
  int64_t step_ = 0;
  std::optional<RunLock> lock_;
  std::ofstream metrics_;
};

}  // namespace vgg::cli
