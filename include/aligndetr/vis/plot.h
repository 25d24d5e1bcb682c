#pragma once
// Simple scientific plots drawn with OpenCV and written as PNG: line plots of named series (loss
// terms and AP over iterations, the paper's Fig. A), grouped bar histograms (Fig. 1b) and heat maps
// with a colour bar (Fig. 4). Images are 8-bit BGR, OpenCV's native channel order.

#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core/mat.hpp>

namespace aligndetr::vis {

struct Series {
  std::string name;  // shown in the legend
  std::vector<double> x;
  std::vector<double> y;  // same length as x; non-finite points break the line
};

struct PlotStyle {
  std::string title;
  std::string x_label;
  std::string y_label;
  int width = 960;
  int height = 600;
};

// The frame of a rendered plot, in pixels of the image: where data coordinates land.
struct PlotArea {
  cv::Rect rect;  // the inner plotting rectangle
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  // Pixel position of a data point (y grows downwards in the image).
  double px(double x) const;
  double py(double y) const;
};

// Lines of every series with axes, ticks, grid, labels, a legend (upper right) and the title.
// The axes cover the finite data with nice round limits; a constant series gets a band around it.
cv::Mat render_line_plot(const std::vector<Series>& series, const PlotStyle& style,
                         PlotArea* area = nullptr);

struct BarSeries {
  std::string name;
  std::vector<double> values;  // one per category
};

// Grouped bars: one group per category (labels under the groups), the series side by side.
// The y axis starts at 0.
cv::Mat render_bar_plot(const std::vector<std::string>& categories,
                        const std::vector<BarSeries>& series, const PlotStyle& style,
                        PlotArea* area = nullptr);

struct HeatMapAxes {
  double x_min = 0, x_max = 1;  // the columns' range
  double y_min = 0, y_max = 1;  // the rows' range
  std::string value_label;      // beside the colour bar
  bool log_scale = false;       // colour by log(1 + v): shows sparse tails beside a sharp peak
};

// A grid of non-negative values, row-major [rows][cols]; row 0 is drawn at the bottom (y_min).
// Coloured with the inferno map (bright = dense), with a colour bar on the right.
cv::Mat render_heat_map(const std::vector<double>& values, int rows, int cols,
                        const HeatMapAxes& axes, const PlotStyle& style, PlotArea* area = nullptr);

// Encodes as PNG and writes it atomically (temporary file + rename). Throws InputError on failure.
void write_png(const std::filesystem::path& path, const cv::Mat& bgr);

}  // namespace aligndetr::vis
