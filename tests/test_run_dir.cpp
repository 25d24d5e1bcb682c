// The run directory's guards: one training at a time (the lock names its owner, a dead owner's
// lock is taken over) and the temporaries that interrupted writes leave behind.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "aligndetr/engine/run_dir.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The pid of a process that has exited (and been reaped).
pid_t dead_pid() {
  const pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);
  return child;
}

TEST(RunDirLock, ASecondOwnerIsRefusedNamingTheFirst) {
  testing::TempDir dir;
  const auto run = (dir / "run").string();
  {
    const engine::RunDirLock first(run);
    EXPECT_EQ(read(first.path()).rfind(std::to_string(getpid()) + " ", 0), 0u)
        << read(first.path());
    try {
      const engine::RunDirLock second(run);
      FAIL() << "two owners of one run directory";
    } catch (const util::InputError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("in use by another training (pid " + std::to_string(getpid())),
                std::string::npos)
          << what;
      EXPECT_NE(what.find("another --output"), std::string::npos) << what;
    }
  }
  // Released: the next run takes it, and the file is empty between owners.
  EXPECT_EQ(read(dir / "run/.lock"), "");
  const engine::RunDirLock again(run);
  EXPECT_NE(read(again.path()), "");
}

TEST(RunDirLock, ALockLeftByADeadProcessIsTakenOver) {
  testing::TempDir dir;
  fs::create_directories(dir / "run");
  testing::write_text(dir / "run/.lock",
                      std::to_string(dead_pid()) + " elsewhere 2026-01-01T00:00:00\n");
  const engine::RunDirLock lock((dir / "run").string());
  EXPECT_EQ(read(lock.path()).rfind(std::to_string(getpid()) + " ", 0), 0u);
}

TEST(RunDirLock, AFileInsteadOfADirectoryIsAnInputError) {
  testing::TempDir dir;
  testing::write_text(dir / "file", "x");
  EXPECT_THROW(engine::RunDirLock((dir / "file").string()), util::InputError);
}

TEST(StaleTemporaries, OnlyThoseOfDeadWritersAreRemoved) {
  testing::TempDir dir;
  const auto dead = std::to_string(dead_pid()), alive = std::to_string(getpid());
  testing::write_text(dir / ("ckpt_0000004.pt.tmp." + dead + ".1f3a"), "partial");
  testing::write_text(dir / ("config.yaml.tmp." + dead + ".ff"), "partial");
  testing::write_text(dir / ("ckpt_0000006.pt.tmp." + alive + ".2b"), "being written");
  testing::write_text(dir / "ckpt_0000002.pt", "a checkpoint");
  testing::write_text(dir / "notes.tmp.txt", "not ours");
  EXPECT_EQ(engine::remove_stale_temporaries(dir.path().string()), 2);
  EXPECT_FALSE(fs::exists(dir / ("ckpt_0000004.pt.tmp." + dead + ".1f3a")));
  EXPECT_TRUE(fs::exists(dir / ("ckpt_0000006.pt.tmp." + alive + ".2b")));
  EXPECT_TRUE(fs::exists(dir / "ckpt_0000002.pt"));
  EXPECT_TRUE(fs::exists(dir / "notes.tmp.txt"));
  EXPECT_EQ(engine::remove_stale_temporaries((dir / "missing").string()), 0);
}

}  // namespace
}  // namespace aligndetr
