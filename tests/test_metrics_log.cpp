#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "aligndetr/analysis/metrics_log.h"
#include "aligndetr/util/error.h"
#include "test_support.h"

namespace aligndetr::analysis {
namespace {

TEST(MetricsLog, ReadsSeriesAndSkipsMalformedLines) {
  const auto log = parse_metrics_log(
      "{\"iter\": 100, \"loss\": 1.5, \"loss_class\": 0.5, \"lr\": 1e-4}\n"
      "\n"
      "not json\n"
      "{\"loss\": 3}\n"  // no iter
      "{\"iter\": 200, \"loss\": 1.25, \"phase\": \"train\", \"ok\": true}\r\n"
      "{\"iter\": 1000, \"AP\": 0.31, \"AP50\": 0.5}\n"
      "[1, 2]\n"                                    // not an object
      "{\"iter\": 300, \"loss\": 0.9, \"loss_cl");  // truncated by a kill
  EXPECT_EQ(log.lines, 7);
  EXPECT_EQ(log.malformed, 4);
  ASSERT_EQ(log.fields.size(), 5u);
  const auto& loss = log.fields.at("loss");
  EXPECT_EQ(loss.iter, (std::vector<double>{100, 200}));
  EXPECT_EQ(loss.value, (std::vector<double>{1.5, 1.25}));
  EXPECT_EQ(log.fields.at("loss_class").value, (std::vector<double>{0.5}));
  EXPECT_EQ(log.fields.at("lr").value, (std::vector<double>{1e-4}));
  EXPECT_EQ(log.fields.at("AP").iter, (std::vector<double>{1000}));
  EXPECT_EQ(log.fields.at("AP50").value, (std::vector<double>{0.5}));
  EXPECT_EQ(log.fields.count("phase"), 0u);
  EXPECT_EQ(log.fields.count("ok"), 0u);
}

TEST(MetricsLog, WritesTrainingPlots) {
  testing::TempDir dir;
  std::string text;
  for (int i = 1; i <= 50; ++i) {
    text += "{\"iter\": " + std::to_string(i * 20) + ", \"loss\": " + std::to_string(3.0 / i) +
            ", \"loss_bbox\": " + std::to_string(1.0 / i) + "}\n";
  }
  testing::write_text(dir / "metrics.jsonl", text);
  const auto log = read_metrics_log(dir / "metrics.jsonl");
  EXPECT_EQ(log.malformed, 0);
  const auto paths = write_training_plots(log, dir / "plots");
  ASSERT_EQ(paths.size(), 1u);  // no AP or lr fields
  EXPECT_EQ(paths[0].filename(), "loss.png");
  const cv::Mat img = cv::imread(paths[0].string());
  EXPECT_EQ(img.cols, 960);
  EXPECT_EQ(img.rows, 600);
  EXPECT_THROW(read_metrics_log(dir / "missing.jsonl"), util::InputError);
}

}  // namespace
}  // namespace aligndetr::analysis
