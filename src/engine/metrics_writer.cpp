#include "aligndetr/engine/metrics_writer.h"

#include <cstdio>
#include <fstream>
#include <regex>

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "aligndetr/util/atomic_file.h"

namespace aligndetr::engine {

MetricsWriter::MetricsWriter(std::string path) : path_(std::move(path)) {}

MetricsWriter::~MetricsWriter() {
  if (!pending_.empty() && !flush_pending()) {
    spdlog::error("{}: {} line(s) could not be written", path_, pending_.size());
  }
}

bool MetricsWriter::flush_pending() {
  // Whole lines only: a line leaves the queue once flushed; a write that fails part-way is cut
  // off again, so that the retry does not follow half a line.
  std::FILE* f = std::fopen(path_.c_str(), "ab");
  if (!f) return false;
  while (!pending_.empty()) {
    std::fseek(f, 0, SEEK_END);
    const long end = std::ftell(f);
    const std::string line = pending_.front() + "\n";
    const bool ok =
        std::fwrite(line.data(), 1, line.size(), f) == line.size() && std::fflush(f) == 0;
    if (!ok) {
      std::fclose(f);
      if (end >= 0 && ::truncate(path_.c_str(), end) != 0) {
        spdlog::warn("{}: could not cut off a partly written line", path_);
      }
      return false;
    }
    pending_.pop_front();
  }
  return std::fclose(f) == 0;
}

bool MetricsWriter::write(const std::string& json_line) {
  pending_.push_back(json_line);
  const bool ok = flush_pending();
  if (!ok && !failing_) {
    spdlog::warn("cannot write to {} ({} line(s) held; retried with the next line)", path_,
                 pending_.size());
  } else if (ok && failing_) {
    spdlog::info("{} is writable again; the held lines are written", path_);
  }
  failing_ = !ok;
  return ok;
}

std::string train_json(int64_t iteration, double lr, double seconds_per_iter,
                       const std::map<std::string, double>& averages) {
  std::string line =
      fmt::format("{{\"iter\": {}, \"type\": \"train\", \"lr\": {:.6g}, \"time\": {:.4f}",
                  iteration, lr, seconds_per_iter);
  for (const auto& [k, v] : averages) line += fmt::format(", \"{}\": {:.6f}", k, v);
  return line + "}";
}

void truncate_metrics(const std::string& path, int64_t iteration) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  static const std::regex iter_re(R"re("iter": (\d+))re");
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, iter_re) && std::stoll(m[1]) > iteration) continue;
    kept += line + "\n";
  }
  in.close();
  util::write_file_atomic(path, kept);
}

}  // namespace aligndetr::engine
