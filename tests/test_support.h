#pragma once
// Helpers shared by the tests: where the shared test data is, temporary folders, running the CLI.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

namespace aligndetr::testing {

// ../shared/data beside the project, or $ALIGNDETR_SHARED_DATA.
inline std::filesystem::path shared_data() {
  if (const char* env = std::getenv("ALIGNDETR_SHARED_DATA")) return env;
  return ALIGNDETR_SHARED_DATA;
}

inline bool has_shared_data() {
  return std::filesystem::exists(shared_data() / "README.md");
}

// For the tests that must read real COCO data (COCO128's statistics and records, the cocoapi
// fixture with pycocotools' numbers, the golden criterion case); `why` says what they check.
// Everything else generates its data (data::write_synthetic_dataset) and runs anywhere.
#define REQUIRE_SHARED_DATA(why)                                                                \
  do {                                                                                          \
    if (!::aligndetr::testing::has_shared_data()) {                                             \
      GTEST_SKIP() << "needs the real COCO data for " << (why) << ", not found at "             \
                   << ::aligndetr::testing::shared_data()                                       \
                   << " (check out ../shared beside the project or set ALIGNDETR_SHARED_DATA)"; \
    }                                                                                           \
  } while (0)

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("aligndetr-test-" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
  std::string stdout_only;
};

// Runs the built `aligndetr` with the given arguments (already shell-quoted where needed).
inline CommandResult run_cli(const std::string& args) {
  CommandResult result;
  const std::string err_file = std::filesystem::temp_directory_path() /
                               ("aligndetr-cli-" + std::to_string(std::random_device{}()));
  const std::string cmd = std::string(ALIGNDETR_BIN) + " " + args + " 2>" + err_file;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return result;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) result.stdout_only.append(buf.data(), n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream err(err_file);
  std::string err_text((std::istreambuf_iterator<char>(err)), std::istreambuf_iterator<char>());
  std::remove(err_file.c_str());
  result.output = result.stdout_only + err_text;
  return result;
}

}  // namespace aligndetr::testing
