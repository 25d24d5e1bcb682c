#include "aligndetr/analysis/metrics_log.h"

#include <utility>

#include <simdjson.h>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/vis/plot.h"

namespace aligndetr::analysis {

namespace {

bool is_blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

MetricsLog parse_metrics_log(std::string_view text) {
  MetricsLog log;
  // The DOM parser validates each line completely, so a truncated line is rejected as a whole.
  simdjson::dom::parser parser;
  std::vector<std::pair<std::string, double>> values;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(begin, end - begin);
    begin = end + 1;
    if (is_blank(line)) continue;
    ++log.lines;
    simdjson::dom::object object;
    if (parser.parse(line.data(), line.size()).get(object) != simdjson::SUCCESS) {
      ++log.malformed;
      continue;
    }
    values.clear();
    double iter = 0;
    bool has_iter = false;
    for (auto field : object) {
      double v = 0;
      if (!field.value.is_number() || field.value.get_double().get(v) != simdjson::SUCCESS) {
        continue;
      }
      if (field.key == "iter") {
        iter = v;
        has_iter = true;
      } else {
        values.emplace_back(std::string(field.key), v);
      }
    }
    if (!has_iter) {
      ++log.malformed;
      continue;
    }
    for (const auto& [name, v] : values) {
      auto& series = log.fields[name];
      series.iter.push_back(iter);
      series.value.push_back(v);
    }
  }
  return log;
}

MetricsLog read_metrics_log(const std::filesystem::path& path) {
  return parse_metrics_log(util::read_file(path.string()));
}

std::vector<std::filesystem::path> write_training_plots(const MetricsLog& log,
                                                        const std::filesystem::path& dir) {
  struct Group {
    const char* prefix;
    const char* file;
    const char* title;
    const char* y_label;
  };
  const Group groups[] = {{"loss", "loss.png", "Training losses", "loss"},
                          {"AP", "ap.png", "COCO AP on the validation set", "AP"},
                          {"lr", "lr.png", "Learning rate", "learning rate"}};
  std::filesystem::create_directories(dir);
  std::vector<std::filesystem::path> written;
  for (const auto& g : groups) {
    std::vector<vis::Series> series;
    for (const auto& [name, s] : log.fields) {
      if (starts_with(name, g.prefix)) series.push_back({name, s.iter, s.value});
    }
    if (series.empty()) continue;
    written.push_back(dir / g.file);
    vis::write_png(written.back(),
                   vis::render_line_plot(series, {g.title, "iteration", g.y_label, 960, 600}));
  }
  return written;
}

}  // namespace aligndetr::analysis
