#pragma once
// metrics.jsonl of a training run: one JSON object per line, appended and flushed as it is
// logged. A line that cannot be written (a full disk, say) is kept and written before the next
// one; lines already in the file are never rewritten by a failed write.

#include <cstdint>
#include <deque>
#include <map>
#include <string>

namespace aligndetr::engine {

class MetricsWriter {
 public:
  explicit MetricsWriter(std::string path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;

  // Appends a line (after any held back); false when it could not be written yet (a warning says
  // so once per failure streak).
  bool write(const std::string& json_line);
  size_t pending() const { return pending_.size(); }
  const std::string& path() const { return path_; }

 private:
  bool flush_pending();
  std::string path_;
  std::deque<std::string> pending_;
  bool failing_ = false;
};

// A training line: iteration, learning rate, seconds per iteration and the averaged terms.
std::string train_json(int64_t iteration, double lr, double seconds_per_iter,
                       const std::map<std::string, double>& averages);

// On resume, lines logged after the checkpoint's iteration belong to the interrupted run's lost
// tail; drops them so the log reads as one run (the file is replaced atomically).
void truncate_metrics(const std::string& path, int64_t iteration);

}  // namespace aligndetr::engine
