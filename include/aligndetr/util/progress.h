#pragma once
// A progress bar with rate and ETA on stderr. On a terminal it redraws one line; otherwise
// (logs, CI) it prints a line at most every few seconds so logs stay readable.

#include <chrono>
#include <cstdint>
#include <string>

namespace aligndetr::util {

class ProgressBar {
 public:
  ProgressBar(int64_t total, std::string label, std::string unit = "it");
  ~ProgressBar();
  // Moves `n` steps forward; `status` is shown after the bar (e.g. loss values).
  void advance(int64_t n = 1, const std::string& status = {});
  void set(int64_t done, const std::string& status = {});
  void finish();

 private:
  void draw(bool final);

  int64_t total_;
  int64_t done_ = 0;
  std::string label_, unit_, status_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool tty_;
  bool finished_ = false;
};

// Whether bars draw at all in this process (the other ranks of a data-parallel run draw none).
void set_progress_enabled(bool enabled);

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace aligndetr::util
