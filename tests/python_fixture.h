#pragma once
// Test suites whose input is written by a Python script under tests/python with Debian's
// python3-torch: the script runs once per suite into a temporary directory; without a Python
// that imports the modules the suite needs, every test is skipped with a message saying so.

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "test_support.h"

namespace aligndetr::testing {

// $ALIGNDETR_PYTHON, else Debian's /usr/bin/python3 (a python3 earlier on PATH, e.g. from pyenv,
// usually lacks the Debian packages), else python3: the first that imports `modules`
// (comma-separated, as in an import statement). Empty if none does.
inline std::string python_with(const std::string& modules) {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("ALIGNDETR_PYTHON")) candidates.emplace_back(env);
  candidates.emplace_back("/usr/bin/python3");
  candidates.emplace_back("python3");
  for (const auto& python : candidates) {
    const std::string probe = python + " -c 'import " + modules + "' >/dev/null 2>&1";
    if (std::system(probe.c_str()) == 0) return python;
  }
  return "";
}

// Suite supplies `static constexpr const char* kScript` (a file in tests/python, called with the
// output directory), `kModules` (what it imports) and `kPackages` (the Debian packages holding
// them). A template so each suite keeps its own static state.
template <typename Suite>
class PythonScriptTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    python_ = python_with(Suite::kModules);
    if (python_.empty()) return;
    dir_ = std::make_unique<TempDir>();
    const std::string cmd = python_ + " " + ALIGNDETR_SOURCE_DIR + "/tests/python/" +
                            Suite::kScript + " " + dir_->path().string();
    script_ok_ = std::system(cmd.c_str()) == 0;
  }
  static void TearDownTestSuite() { dir_.reset(); }
  void SetUp() override {
    if (python_.empty()) {
      GTEST_SKIP() << "no python3 that imports " << Suite::kModules << " (install "
                   << Suite::kPackages << ": scripts/install-deps.sh, or set ALIGNDETR_PYTHON)";
    }
    ASSERT_TRUE(script_ok_) << "tests/python/" << Suite::kScript << " failed";
  }
  static std::string file(const std::string& name) { return (dir_->path() / name).string(); }

  static inline std::string python_;
  static inline std::unique_ptr<TempDir> dir_;
  static inline bool script_ok_ = false;
};

}  // namespace aligndetr::testing
