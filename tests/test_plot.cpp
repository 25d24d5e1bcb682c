#include <gtest/gtest.h>

#include <cmath>
#include <opencv2/imgcodecs.hpp>

#include "aligndetr/util/error.h"
#include "aligndetr/vis/plot.h"
#include "test_support.h"

namespace aligndetr::vis {
namespace {

bool is_white(const cv::Vec3b& p) {
  return p[0] > 245 && p[1] > 245 && p[2] > 245;
}

// The first palette colour (tab10 blue, BGR 180 119 31): blue clearly above red.
bool is_blue(const cv::Vec3b& p) {
  return p[0] > 140 && p[0] - p[2] > 80;
}
// The second (orange, BGR 14 127 255).
bool is_orange(const cv::Vec3b& p) {
  return p[2] > 200 && p[2] - p[0] > 150;
}

TEST(Plot, ConstantSeriesIsAHorizontalLine) {
  vis::PlotStyle style{"loss", "iteration", "value", 800, 500};
  vis::PlotArea area;
  const cv::Mat img = vis::render_line_plot({{"flat", {0, 100, 200, 300}, {0.5, 0.5, 0.5, 0.5}},
                                             {"rising", {0, 100, 200, 300}, {0.0, 1.0, 2.0, 3.0}}},
                                            style, &area);
  ASSERT_EQ(img.cols, 800);
  ASSERT_EQ(img.rows, 500);
  ASSERT_EQ(img.type(), CV_8UC3);
  EXPECT_LE(area.x_min, 0);
  EXPECT_GE(area.x_max, 300);
  EXPECT_LE(area.y_min, 0);
  EXPECT_GE(area.y_max, 3);

  const int row = static_cast<int>(std::lround(area.py(0.5)));
  // Along the flat series, away from the markers and the rising line, the row is blue and the
  // rows 6 pixels above and below are not.
  for (double x : {40.0, 60.0, 150.0, 250.0}) {
    const int col = static_cast<int>(std::lround(area.px(x)));
    EXPECT_TRUE(is_blue(img.at<cv::Vec3b>(row, col))) << "x=" << x;
    EXPECT_FALSE(is_blue(img.at<cv::Vec3b>(row - 6, col))) << "x=" << x;
    EXPECT_FALSE(is_blue(img.at<cv::Vec3b>(row + 6, col))) << "x=" << x;
  }
  // The rising series passes through (200, 2).
  EXPECT_TRUE(is_orange(img.at<cv::Vec3b>(static_cast<int>(std::lround(area.py(2.0))),
                                          static_cast<int>(std::lround(area.px(200.0))))));
  // Margins are left for labels: the plotting area does not touch the image border.
  EXPECT_GT(area.rect.x, 30);
  EXPECT_GT(area.rect.y, 20);
  EXPECT_LT(area.rect.x + area.rect.width, img.cols - 5);
  EXPECT_LT(area.rect.y + area.rect.height, img.rows - 30);
  EXPECT_TRUE(is_white(img.at<cv::Vec3b>(2, 2)));
}

TEST(Plot, NonFiniteValuesBreakTheLine) {
  vis::PlotArea area;
  const double nan = std::nan("");
  const cv::Mat img = vis::render_line_plot(
      {{"gap", {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {1, 1, 1, 1, nan, nan, nan, 1, 1, 1, 1}},
       {"low", {0, 10}, {0, 0}}},
      {"", "", "", 600, 400}, &area);
  const int row = static_cast<int>(std::lround(area.py(1)));
  EXPECT_TRUE(is_blue(img.at<cv::Vec3b>(row, static_cast<int>(std::lround(area.px(1.5))))));
  EXPECT_FALSE(is_blue(img.at<cv::Vec3b>(row, static_cast<int>(std::lround(area.px(5.0))))));
}

TEST(Plot, BarsStandOnTheAxisUpToTheirValue) {
  vis::PlotArea area;
  const cv::Mat img =
      vis::render_bar_plot({"a", "b", "c"}, {{"one", {1, 0, 2}}, {"two", {2, 1, 0}}},
                           {"bars", "bin", "count", 900, 600}, &area);
  ASSERT_EQ(img.cols, 900);
  ASSERT_EQ(img.rows, 600);
  EXPECT_EQ(area.y_min, 0);
  const double group = (area.rect.width - 1) / 3.0;
  // Series k of group c is centred at 0.1 + 0.4 * k + 0.2 of the group's width.
  const auto centre = [&](int c, int k) {
    return static_cast<int>(std::lround(area.rect.x + group * (c + 0.3 + 0.4 * k)));
  };
  const auto row = [&](double v) { return static_cast<int>(std::lround(area.py(v))); };
  EXPECT_TRUE(is_blue(img.at<cv::Vec3b>(row(0.5), centre(0, 0))));
  EXPECT_TRUE(is_blue(img.at<cv::Vec3b>(row(0.95), centre(0, 0))));
  EXPECT_FALSE(is_blue(img.at<cv::Vec3b>(row(1.05), centre(0, 0))));
  EXPECT_TRUE(is_orange(img.at<cv::Vec3b>(row(1.9), centre(0, 1))));
  EXPECT_FALSE(is_orange(img.at<cv::Vec3b>(row(2.1), centre(0, 1))));
  EXPECT_FALSE(is_blue(img.at<cv::Vec3b>(row(0.1), centre(1, 0))));  // a zero draws nothing
  EXPECT_TRUE(is_blue(img.at<cv::Vec3b>(row(1.9), centre(2, 0))));
}

TEST(Plot, HeatMapPutsRowZeroAtTheBottom) {
  vis::PlotArea area;
  vis::HeatMapAxes axes;
  axes.value_label = "count";
  // 2 x 3 grid: only the top-right cell (row 1, column 2) is non-zero.
  const cv::Mat img =
      vis::render_heat_map({0, 0, 0, 0, 0, 7}, 2, 3, axes, {"map", "x", "y", 700, 600}, &area);
  ASSERT_EQ(img.cols, 700);
  ASSERT_EQ(img.rows, 600);
  const auto at = [&](double x, double y) {
    return img.at<cv::Vec3b>(static_cast<int>(std::lround(area.py(y))),
                             static_cast<int>(std::lround(area.px(x))));
  };
  // Inferno: the maximum is pale yellow (BGR ~164 255 252), zero nearly black.
  const cv::Vec3b top_right = at(5.0 / 6, 0.75);
  EXPECT_GT(top_right[1], 200);
  EXPECT_GT(top_right[2], 200);
  for (const auto& p : {at(1.0 / 6, 0.25), at(5.0 / 6, 0.25), at(1.0 / 6, 0.75)}) {
    EXPECT_LT(p[0] + p[1] + p[2], 60);
  }
  // The colour bar right of the map: bright at its top, dark at its bottom.
  const int bar_x = area.rect.x + area.rect.width + 20;
  const cv::Vec3b bar_top = img.at<cv::Vec3b>(area.rect.y + 3, bar_x);
  const cv::Vec3b bar_bottom = img.at<cv::Vec3b>(area.rect.y + area.rect.height - 4, bar_x);
  EXPECT_GT(bar_top[1], 200);
  EXPECT_LT(bar_bottom[0] + bar_bottom[1] + bar_bottom[2], 60);
}

TEST(Plot, RejectsInconsistentInput) {
  const vis::PlotStyle style;
  EXPECT_THROW(vis::render_line_plot({{"bad", {0, 1}, {0}}}, style), util::InputError);
  EXPECT_THROW(vis::render_bar_plot({"a", "b"}, {{"bad", {1}}}, style), util::InputError);
  EXPECT_THROW(vis::render_heat_map({1, 2, 3}, 2, 2, {}, style), util::InputError);
  EXPECT_THROW(vis::render_line_plot({}, {"", "", "", 50, 50}), util::InputError);
}

TEST(Plot, EmptyPlotStillRenders) {
  const cv::Mat img = vis::render_line_plot({}, {"nothing yet", "", "", 400, 300});
  EXPECT_EQ(img.cols, 400);
  EXPECT_EQ(img.rows, 300);
}

TEST(Plot, WritesPngAtomically) {
  testing::TempDir dir;
  const auto path = dir / "plot.png";
  const cv::Mat img = vis::render_line_plot({{"s", {0, 1}, {0, 1}}}, {"t", "x", "y", 640, 480});
  vis::write_png(path, img);
  const cv::Mat back = cv::imread(path.string());
  ASSERT_FALSE(back.empty());
  EXPECT_EQ(back.cols, 640);
  EXPECT_EQ(back.rows, 480);
  EXPECT_EQ(cv::norm(back, img, cv::NORM_INF), 0);  // PNG is lossless
  // Only the target is left in the folder: no temporary file.
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.path()),
                          std::filesystem::directory_iterator{}),
            1);
  EXPECT_THROW(vis::write_png(dir / "missing" / "plot.png", img), util::InputError);
}

}  // namespace
}  // namespace aligndetr::vis
