// Durable writes and atomic checkpoint switches (tools/durable.h): a failed write leaves the old
// file; a kill at any point of a checkpoint leaves a complete checkpoint that --resume finds.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>

#include <filesystem>
#include <fstream>

#include "tests/support/test_support.h"
#include "tools/durable.h"

namespace vgg::test {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::path(::testing::TempDir()) / ("vgg_durable_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
// the tools throw std::runtime_error (one line, printed by cli::run_main)
template <class F>
::testing::AssertionResult throws_with(F f, std::initializer_list<const char*> parts) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    for (const char* p : parts)
      if (m.find(p) == std::string::npos) return ::testing::AssertionFailure() << "message '" << m << "' lacks '" << p << "'";
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "did not throw";
}
void commit(const fs::path& run, int64_t step) {
  cli::commit_checkpoint(run, step, [&](const fs::path& d) {
    cli::write_durable(d / "weights.bin", "w" + std::to_string(step));
    cli::write_durable(d / "state.json", "{\"step\": " + std::to_string(step) + "}\n");
  });
}

TEST(Durable, AFailedWriteLeavesTheOldFileAndSaysWhich) {
  const fs::path d = fresh_dir("write");
  cli::write_durable(d / "state.json", "old\n");
  EXPECT_EQ(slurp(d / "state.json"), "old\n");
  EXPECT_FALSE(fs::exists(d / "state.json.tmp"));
  cli::durable_detail::fail_at() = cli::durable_detail::write_count() + 1;  // the next write: "disk full"
  EXPECT_TRUE(throws_with([&] { cli::write_durable(d / "state.json", "new\n"); }, {"cannot write", "state.json.tmp"}));
  cli::durable_detail::fail_at() = 0;
  EXPECT_EQ(slurp(d / "state.json"), "old\n");  // not an empty file
  EXPECT_FALSE(fs::exists(d / "state.json.tmp"));
  EXPECT_TRUE(throws_with([&] { cli::write_durable(d / "no" / "such" / "x.json", "x"); }, {"cannot write", "x.json.tmp"}));
  fs::remove_all(d);
}

TEST(Durable, CheckpointSwitchIsOneRenameAndTheNewestCompleteOneIsFound) {
  const fs::path run = fresh_dir("ckpt");
  EXPECT_TRUE(cli::latest_checkpoint(run).empty());
  EXPECT_FALSE(cli::holds_a_run(run));
  commit(run, 4);
  commit(run, 8);
  EXPECT_TRUE(fs::is_symlink(run / "checkpoint"));
  EXPECT_EQ(slurp(run / "checkpoint" / "weights.bin"), "w8");
  EXPECT_EQ(cli::latest_checkpoint(run).filename(), cli::checkpoint_dir(run, 8).filename());
  EXPECT_FALSE(fs::exists(cli::checkpoint_dir(run, 4)));  // the older one goes after the switch
  EXPECT_TRUE(cli::holds_a_run(run));

  // killed after ckpt-12 was renamed into place but before the link switched: the newest complete
  // folder wins over the link's older target once the link is gone, and a half-written .tmp is ignored
  fs::create_directories(cli::checkpoint_dir(run, 12));
  std::ofstream(cli::checkpoint_dir(run, 12) / "state.json") << "{}";
  fs::path partial = cli::checkpoint_dir(run, 16);
  partial += ".tmp";
  fs::create_directories(partial);
  std::ofstream(partial / "weights.bin") << "half";
  EXPECT_EQ(cli::latest_checkpoint(run).filename(), cli::checkpoint_dir(run, 8).filename());  // the link still says 8
  fs::remove(run / "checkpoint");  // killed between the two renames of the old layout: no link at all
  EXPECT_EQ(cli::latest_checkpoint(run).filename(), cli::checkpoint_dir(run, 12).filename());
  // a folder without state.json is not complete
  fs::create_directories(cli::checkpoint_dir(run, 20));
  EXPECT_EQ(cli::latest_checkpoint(run).filename(), cli::checkpoint_dir(run, 12).filename());
  // the next commit cleans up everything else
  commit(run, 24);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(run)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"checkpoint", cli::checkpoint_dir(run, 24).filename().string()}));

  // a write that fails inside a checkpoint leaves the previous one in place and reachable
  cli::durable_detail::fail_at() = cli::durable_detail::write_count() + 2;  // state.json of step 28
  EXPECT_TRUE(throws_with([&] { commit(run, 28); }, {"cannot write", "state.json"}));
  cli::durable_detail::fail_at() = 0;
  EXPECT_EQ(slurp(cli::latest_checkpoint(run) / "weights.bin"), "w24");
  EXPECT_EQ(slurp(run / "checkpoint" / "weights.bin"), "w24");
  fs::remove_all(run);
}

TEST(Durable, APreLinkCheckpointFolderIsFoundAndReplaced) {
  const fs::path run = fresh_dir("old_layout");
  fs::create_directories(run / "checkpoint");
  std::ofstream(run / "checkpoint" / "state.json") << "{\"step\": 3}";
  EXPECT_EQ(cli::latest_checkpoint(run), run / "checkpoint");
  EXPECT_TRUE(cli::holds_a_run(run));
  commit(run, 6);
  EXPECT_TRUE(fs::is_symlink(run / "checkpoint"));
  EXPECT_EQ(slurp(run / "checkpoint" / "weights.bin"), "w6");
  EXPECT_FALSE(fs::exists(run / "checkpoint.old"));
  // killed after moving the old folder aside, before the link: checkpoint.old is still a checkpoint
  const fs::path run2 = fresh_dir("old_layout_killed");
  fs::create_directories(run2 / "checkpoint.old");
  std::ofstream(run2 / "checkpoint.old" / "state.json") << "{\"step\": 3}";
  EXPECT_EQ(cli::latest_checkpoint(run2), run2 / "checkpoint.old");
  fs::remove_all(run);
  fs::remove_all(run2);
}

// Two runs on one folder: the second is refused while the first lives; whatever ends the first frees
// the folder (flock is dropped by the kernel, also on SIGKILL).
TEST(Durable, OneProcessPerRunFolder) {
  const fs::path run = fresh_dir("lock");
  {
    cli::RunLock first(run);  // flock is per open file: a second open in this process contends as another run would
    EXPECT_TRUE(throws_with([&] { cli::RunLock second(run); },
                            {run.string().c_str(), "in use by another run", std::to_string(::getpid()).c_str()}));
    EXPECT_FALSE(cli::holds_a_run(run));  // the lock file is not a run
  }
  EXPECT_NO_THROW({ cli::RunLock after(run); });  // released by the destructor
  // another process holds it (raw syscalls only after fork), then is killed
  const std::string lock_path = (run / ".lock").string();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const int fd = ::open(lock_path.c_str(), O_RDWR);
    char c = fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0 ? 1 : 0;
    if (::write(ready[1], &c, 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(c, 1) << "the child could not take the lock";
  EXPECT_TRUE(throws_with([&] { cli::RunLock second(run); }, {"in use by another run"}));
  ::kill(child, SIGKILL);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_NO_THROW({ cli::RunLock after(run); });
  ::close(ready[0]);
  ::close(ready[1]);
  fs::remove_all(run);
  // a folder the lock created is removed again when nothing was written into it (a refused start
  // leaves nothing behind), kept when the run wrote something
  const fs::path fresh = run / "new_run";
  { cli::RunLock l(fresh); }
  EXPECT_FALSE(fs::exists(fresh));
  {
    cli::RunLock l(fresh);
    cli::write_durable(fresh / "config.json", "{}\n");
  }
  EXPECT_TRUE(fs::exists(fresh / "config.json"));
  fs::remove_all(run);
}

}  // namespace
}  // namespace vgg::test
