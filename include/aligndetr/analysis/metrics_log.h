#pragma once
// Reading a training run's metrics.jsonl back into series for plotting (the paper's Fig. A).
// Each line is one JSON object with a numeric "iter" and any numeric fields, e.g.
//   {"iter": 100, "loss": 1.2, "loss_class": 0.5, "lr": 1e-4}
//   {"iter": 1000, "AP": 0.31, "AP50": 0.5}
// Fields that are not numbers (strings, booleans, nested values) are ignored.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace aligndetr::analysis {

struct MetricSeries {
  std::vector<double> iter;
  std::vector<double> value;
};

struct MetricsLog {
  std::map<std::string, MetricSeries> fields;  // every numeric field but "iter", in line order
  int64_t lines = 0;                           // non-blank lines
  int64_t malformed = 0;                       // skipped: not a JSON object, or no numeric "iter"
};

// Parses JSON Lines text. Blank lines are ignored; malformed lines (a run killed mid-write leaves a
// truncated last line) are skipped and counted, never fatal.
MetricsLog parse_metrics_log(std::string_view text);
// Reads a metrics.jsonl file. Throws InputError if it cannot be read.
MetricsLog read_metrics_log(const std::filesystem::path& path);

// Writes the training curves into dir (created if needed), atomically, skipping empty groups:
// loss.png (fields named loss*), ap.png (fields named AP*) and lr.png (fields named lr*).
// Returns the paths written.
std::vector<std::filesystem::path> write_training_plots(const MetricsLog& log,
                                                        const std::filesystem::path& dir);

}  // namespace aligndetr::analysis
