#include "aligndetr/vis/plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"

namespace aligndetr::vis {

namespace {

// matplotlib's "tab10" palette, BGR.
const std::array<cv::Scalar, 10> kPalette = {cv::Scalar(180, 119, 31),  cv::Scalar(14, 127, 255),
                                             cv::Scalar(44, 160, 44),   cv::Scalar(40, 39, 214),
                                             cv::Scalar(189, 103, 148), cv::Scalar(75, 86, 140),
                                             cv::Scalar(194, 119, 227), cv::Scalar(127, 127, 127),
                                             cv::Scalar(34, 189, 188),  cv::Scalar(207, 190, 23)};
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kText(40, 40, 40);
const cv::Scalar kAxis(90, 90, 90);
const cv::Scalar kGrid(232, 232, 232);

cv::Scalar series_color(size_t i) {
  return kPalette[i % kPalette.size()];
}

// Font sizes grow with the image so that large plots stay readable.
struct Fonts {
  double tick, label, title;
  int tick_len, pad;
  explicit Fonts(const PlotStyle& s) {
    const double k = std::clamp(std::min(s.width / 960.0, s.height / 600.0), 0.7, 3.0);
    tick = 0.45 * k;
    label = 0.55 * k;
    title = 0.7 * k;
    tick_len = std::max(3, static_cast<int>(std::lround(5 * k)));
    pad = std::max(4, static_cast<int>(std::lround(8 * k)));
  }
};

constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr int kTitleFont = cv::FONT_HERSHEY_DUPLEX;

cv::Size text_size(const std::string& text, double scale, int font = kFont) {
  int baseline = 0;
  cv::Size s = cv::getTextSize(text, font, scale, 1, &baseline);
  s.height += baseline;
  return s;
}

// Text whose box (including descenders) has its top-left corner at `top_left`.
void put_text(cv::Mat& img, const std::string& text, cv::Point top_left, double scale,
              const cv::Scalar& color = kText, int font = kFont) {
  int baseline = 0;
  const cv::Size s = cv::getTextSize(text, font, scale, 1, &baseline);
  cv::putText(img, text, top_left + cv::Point(0, s.height), font, scale, color, 1, cv::LINE_AA);
}

// Text rotated by 90 degrees (reading bottom to top), centred on `center`. The text is drawn on a
// white patch, rotated, and merged by taking the darker pixel, so it works on any light background.
void put_vertical_text(cv::Mat& img, const std::string& text, cv::Point center, double scale) {
  const cv::Size s = text_size(text, scale);
  cv::Mat patch(s.height + 2, s.width + 2, img.type(), kWhite);
  put_text(patch, text, {1, 1}, scale);
  cv::Mat rotated;
  cv::rotate(patch, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::Rect roi(center.x - rotated.cols / 2, center.y - rotated.rows / 2, rotated.cols,
               rotated.rows);
  roi &= cv::Rect(0, 0, img.cols, img.rows);
  if (roi.empty()) return;
  cv::Mat target = img(roi);
  cv::min(target, rotated(cv::Rect(0, 0, roi.width, roi.height)), target);
}

void put_title(cv::Mat& img, const PlotStyle& style, const Fonts& f) {
  if (style.title.empty()) return;
  const cv::Size s = text_size(style.title, f.title, kTitleFont);
  put_text(img, style.title, {(img.cols - s.width) / 2, f.pad + 2}, f.title, kText, kTitleFont);
}

int title_height(const PlotStyle& style, const Fonts& f) {
  return style.title.empty() ? f.pad
                             : text_size(style.title, f.title, kTitleFont).height + 3 * f.pad;
}

// A round step (1, 2 or 5 times a power of ten) that cuts `range` into about `target` parts.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

struct Axis {
  double lo = 0, hi = 1, step = 0.2;
  std::vector<double> ticks;
};

// Ticks at multiples of a nice step inside [lo, hi].
Axis fixed_axis(double lo, double hi, int target) {
  Axis a{lo, hi, nice_step(hi - lo, target), {}};
  const double eps = 1e-9 * a.step;
  for (double t = std::ceil((lo - eps) / a.step) * a.step; t <= hi + eps; t += a.step) {
    a.ticks.push_back(std::abs(t) < eps ? 0.0 : t);
  }
  return a;
}

// Limits rounded outwards to the step; a degenerate range gets a band around its value.
Axis nice_axis(double lo, double hi, int target) {
  if (!(lo < hi)) {
    const double pad = std::max(std::abs(lo) * 0.1, 1e-3);
    lo -= pad;
    hi += pad;
  }
  const double step = nice_step(hi - lo, target);
  const double eps = 1e-9 * step;
  return fixed_axis(std::floor((lo + eps) / step) * step, std::ceil((hi - eps) / step) * step,
                    target);
}

std::string format_tick(double v, double step) {
  if (v == 0) return "0";
  if (std::abs(v) >= 1e4 && step >= 1e3) return format_tick(v / 1e3, step / 1e3) + "k";
  if (step < 1e-3 || std::abs(v) >= 1e7) {
    // Scientific notation with the axis' precision: 1.2e-4, 8e-5.
    const int exponent = static_cast<int>(std::floor(std::log10(std::abs(v)) + 1e-9));
    const double unit = std::pow(10.0, exponent);
    const int decimals = std::max(0, static_cast<int>(std::ceil(std::log10(unit / step) - 1e-9)));
    return fmt::format("{:.{}f}e{}", v / unit, std::min(decimals, 3), exponent);
  }
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  return fmt::format("{:.{}f}", v, decimals);
}

int max_tick_width(const std::vector<double>& ticks, double step, const Fonts& f) {
  int w = 0;
  for (double t : ticks) w = std::max(w, text_size(format_tick(t, step), f.tick).width);
  return w;
}

// Draws the frame, grid lines, ticks, tick labels and axis labels around area.rect.
void draw_axes(cv::Mat& img, const PlotArea& area, const std::vector<double>& x_ticks,
               double x_step, const std::vector<double>& y_ticks, double y_step,
               const PlotStyle& style, const Fonts& f, bool y_grid, bool x_grid) {
  const cv::Rect& r = area.rect;
  for (double t : y_ticks) {
    const int y = static_cast<int>(std::lround(area.py(t)));
    if (y_grid) cv::line(img, {r.x, y}, {r.x + r.width - 1, y}, kGrid, 1);
    cv::line(img, {r.x - f.tick_len, y}, {r.x, y}, kAxis, 1);
    const std::string label = format_tick(t, y_step);
    const cv::Size s = text_size(label, f.tick);
    put_text(img, label, {r.x - f.tick_len - 4 - s.width, y - s.height / 2}, f.tick);
  }
  for (double t : x_ticks) {
    const int x = static_cast<int>(std::lround(area.px(t)));
    if (x_grid) cv::line(img, {x, r.y}, {x, r.y + r.height - 1}, kGrid, 1);
    cv::line(img, {x, r.y + r.height}, {x, r.y + r.height + f.tick_len}, kAxis, 1);
    const std::string label = format_tick(t, x_step);
    const cv::Size s = text_size(label, f.tick);
    put_text(img, label, {x - s.width / 2, r.y + r.height + f.tick_len + 4}, f.tick);
  }
  cv::rectangle(img, r, kAxis, 1);
  // Axis labels sit next to the tick labels, wherever the frame is.
  if (!style.x_label.empty()) {
    const cv::Size s = text_size(style.x_label, f.label);
    const int below = r.y + r.height + f.tick_len + 4 + text_size("0", f.tick).height + f.pad;
    put_text(img, style.x_label, {r.x + (r.width - s.width) / 2, below}, f.label);
  }
  if (!style.y_label.empty()) {
    const cv::Size s = text_size(style.y_label, f.label);
    const int left = r.x - f.tick_len - 6 - max_tick_width(y_ticks, y_step, f) - f.pad;
    put_vertical_text(img, style.y_label, {left - s.height / 2, r.y + r.height / 2}, f.label);
  }
}

// The inner rectangle left after the title, axis labels and tick labels; right_extra leaves room
// for a colour bar.
cv::Rect inner_rect(const PlotStyle& style, const Fonts& f, int y_tick_width, int right_extra) {
  const int label_h = text_size("Ag", f.label).height;
  const int tick_h = text_size("0", f.tick).height;
  const int left =
      f.pad + (style.y_label.empty() ? 0 : label_h + f.pad) + y_tick_width + f.tick_len + 6;
  const int top = title_height(style, f);
  const int bottom =
      f.pad + (style.x_label.empty() ? 0 : label_h + f.pad) + tick_h + f.tick_len + 6;
  const int right = 2 * f.pad + right_extra + text_size("0000", f.tick).width / 2;
  const int w = std::max(10, style.width - left - right);
  const int h = std::max(10, style.height - top - bottom);
  return {left, top, w, h};
}

struct LegendEntry {
  std::string name;
  cv::Scalar color;
  bool line;  // a line sample, else a filled square
};

cv::Size legend_size(const std::vector<LegendEntry>& entries, const Fonts& f) {
  int w = 0, h = f.pad;
  for (const auto& e : entries) {
    const cv::Size s = text_size(e.name, f.tick);
    w = std::max(w, s.width);
    h += s.height + f.pad / 2;
  }
  return {w + 3 * f.pad + 24, h + f.pad / 2};
}

void draw_legend(cv::Mat& img, const std::vector<LegendEntry>& entries, cv::Point top_left,
                 const Fonts& f) {
  const cv::Size size = legend_size(entries, f);
  const cv::Rect box(top_left, size);
  cv::Mat roi = img(box & cv::Rect(0, 0, img.cols, img.rows));
  cv::addWeighted(roi, 0.15, cv::Mat(roi.size(), roi.type(), kWhite), 0.85, 0, roi);
  cv::rectangle(img, box, cv::Scalar(200, 200, 200), 1);
  int y = top_left.y + f.pad;
  for (const auto& e : entries) {
    const cv::Size s = text_size(e.name, f.tick);
    const int mid = y + s.height / 2;
    const int x0 = top_left.x + f.pad;
    if (e.line) {
      cv::line(img, {x0, mid}, {x0 + 24, mid}, e.color, 2, cv::LINE_AA);
    } else {
      cv::rectangle(img, cv::Rect(x0 + 6, mid - 6, 12, 12), e.color, cv::FILLED);
    }
    put_text(img, e.name, {x0 + 24 + f.pad, y}, f.tick);
    y += s.height + f.pad / 2;
  }
}

// The inner corner (upper right first) whose legend box covers the fewest data pixels.
cv::Point legend_corner(const cv::Rect& r, cv::Size size, const std::vector<cv::Point2d>& points,
                        const Fonts& f) {
  const std::array<cv::Point, 4> corners = {
      cv::Point(r.x + r.width - size.width - f.pad, r.y + f.pad),
      cv::Point(r.x + f.pad, r.y + f.pad),
      cv::Point(r.x + r.width - size.width - f.pad, r.y + r.height - size.height - f.pad),
      cv::Point(r.x + f.pad, r.y + r.height - size.height - f.pad)};
  cv::Point best = corners[0];
  size_t fewest = std::numeric_limits<size_t>::max();
  for (const auto& c : corners) {
    const cv::Rect2d box(c.x - 4.0, c.y - 4.0, size.width + 8.0, size.height + 8.0);
    const auto n = static_cast<size_t>(std::count_if(
        points.begin(), points.end(), [&](const cv::Point2d& p) { return box.contains(p); }));
    if (n < fewest) {
      fewest = n;
      best = c;
    }
  }
  return best;
}

void check_size(const PlotStyle& style) {
  if (style.width < 200 || style.height < 150 || style.width > 10000 || style.height > 10000) {
    throw util::InputError(
        fmt::format("plot size {}x{} outside 200x150 .. 10000x10000", style.width, style.height));
  }
}

}  // namespace

double PlotArea::px(double x) const {
  return rect.x + (x - x_min) / (x_max - x_min) * (rect.width - 1);
}

double PlotArea::py(double y) const {
  return rect.y + (y_max - y) / (y_max - y_min) * (rect.height - 1);
}

cv::Mat render_line_plot(const std::vector<Series>& series, const PlotStyle& style,
                         PlotArea* area_out) {
  check_size(style);
  const Fonts f(style);
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo;
  double y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : series) {
    if (s.x.size() != s.y.size()) {
      throw util::InputError(
          fmt::format("plot series '{}' has {} x and {} y values", s.name, s.x.size(), s.y.size()));
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (!(x_lo <= x_hi)) {  // nothing finite to show
    x_lo = y_lo = 0;
    x_hi = y_hi = 1;
  }
  const Axis xa = nice_axis(x_lo, x_hi, 8);
  // A little headroom keeps lines off the frame; non-negative data keeps a floor of 0.
  const double margin = 0.02 * (y_hi - y_lo);
  const Axis ya =
      nice_axis(y_lo >= 0 ? std::max(0.0, y_lo - margin) : y_lo - margin, y_hi + margin, 6);

  cv::Mat img(style.height, style.width, CV_8UC3, kWhite);
  PlotArea area;
  area.rect = inner_rect(style, f, max_tick_width(ya.ticks, ya.step, f), 0);
  area.x_min = xa.lo, area.x_max = xa.hi, area.y_min = ya.lo, area.y_max = ya.hi;
  draw_axes(img, area, xa.ticks, xa.step, ya.ticks, ya.step, style, f, true, true);

  std::vector<cv::Point2d> drawn;
  std::vector<LegendEntry> legend;
  cv::Mat plot = img(area.rect);
  const cv::Point2d origin(area.rect.x, area.rect.y);
  // Sub-pixel coordinates keep anti-aliased lines smooth.
  constexpr int kShift = 4;
  const auto fixed = [&](const cv::Point2d& p) {
    return cv::Point(static_cast<int>(std::lround((p.x - origin.x) * (1 << kShift))),
                     static_cast<int>(std::lround((p.y - origin.y) * (1 << kShift))));
  };
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    const cv::Scalar color = series_color(k);
    std::vector<cv::Point2d> pts;
    size_t finite = 0;
    for (size_t i = 0; i < s.x.size(); ++i)
      finite += std::isfinite(s.x[i]) && std::isfinite(s.y[i]);
    const bool markers = finite <= 40;
    for (size_t i = 0; i <= s.x.size(); ++i) {
      const bool ok = i < s.x.size() && std::isfinite(s.x[i]) && std::isfinite(s.y[i]);
      if (ok) {
        pts.emplace_back(area.px(s.x[i]), area.py(s.y[i]));
        continue;
      }
      for (size_t j = 1; j < pts.size(); ++j) {
        cv::line(plot, fixed(pts[j - 1]), fixed(pts[j]), color, 2, cv::LINE_AA, kShift);
        for (int t = 1; t < 16; ++t)
          drawn.push_back(pts[j - 1] + (pts[j] - pts[j - 1]) * (t / 16.0));
      }
      for (const auto& p : pts) {
        if (markers)
          cv::circle(plot, fixed(p), 3 << kShift, color, cv::FILLED, cv::LINE_AA, kShift);
        drawn.push_back(p);
      }
      pts.clear();
    }
    legend.push_back({s.name, color, true});
  }
  if (!legend.empty()) {
    const cv::Size size = legend_size(legend, f);
    draw_legend(img, legend, legend_corner(area.rect, size, drawn, f), f);
  }
  put_title(img, style, f);
  if (area_out) *area_out = area;
  return img;
}

cv::Mat render_bar_plot(const std::vector<std::string>& categories,
                        const std::vector<BarSeries>& series, const PlotStyle& style,
                        PlotArea* area_out) {
  check_size(style);
  const Fonts f(style);
  double y_hi = 0;
  for (const auto& s : series) {
    if (s.values.size() != categories.size()) {
      throw util::InputError(fmt::format("bar series '{}' has {} values for {} categories", s.name,
                                         s.values.size(), categories.size()));
    }
    for (double v : s.values) {
      if (std::isfinite(v)) y_hi = std::max(y_hi, v);
    }
  }
  if (!(y_hi > 0)) y_hi = 1;
  // Headroom above the tallest bar for the legend.
  const Axis ya = nice_axis(0, y_hi * 1.15, 6);

  cv::Mat img(style.height, style.width, CV_8UC3, kWhite);
  PlotArea area;
  area.rect = inner_rect(style, f, max_tick_width(ya.ticks, ya.step, f), 0);
  const auto groups = static_cast<double>(std::max<size_t>(1, categories.size()));
  area.x_min = 0, area.x_max = groups, area.y_min = ya.lo, area.y_max = ya.hi;
  draw_axes(img, area, {}, 1, ya.ticks, ya.step, style, f, true, false);

  const double group_w = (area.rect.width - 1) / groups;
  const double bar_w = group_w * 0.8 / static_cast<double>(std::max<size_t>(1, series.size()));
  for (size_t k = 0; k < series.size(); ++k) {
    for (size_t c = 0; c < categories.size(); ++c) {
      const double v = series[k].values[c];
      if (!std::isfinite(v) || v <= 0) continue;
      const double x0 = area.rect.x + c * group_w + group_w * 0.1 + k * bar_w;
      const int top = static_cast<int>(std::lround(area.py(v)));
      const int bottom = area.rect.y + area.rect.height - 1;
      const cv::Rect bar(static_cast<int>(std::lround(x0)), top,
                         std::max(1, static_cast<int>(std::lround(x0 + bar_w)) -
                                         static_cast<int>(std::lround(x0)) - 1),
                         std::max(1, bottom - top));
      cv::rectangle(img, bar, series_color(k), cv::FILLED);
    }
  }
  cv::rectangle(img, area.rect, kAxis, 1);  // bars end on the axis line, which stays visible

  // Category labels under the groups; every k-th one when they would collide.
  int widest = 0;
  for (const auto& c : categories) widest = std::max(widest, text_size(c, f.tick).width);
  const int every = std::max(1, static_cast<int>(std::ceil((widest + 8) / group_w)));
  for (size_t c = 0; c < categories.size(); c += static_cast<size_t>(every)) {
    const int x = static_cast<int>(std::lround(area.rect.x + (c + 0.5) * group_w));
    const int y = area.rect.y + area.rect.height;
    cv::line(img, {x, y}, {x, y + f.tick_len}, kAxis, 1);
    const cv::Size s = text_size(categories[c], f.tick);
    put_text(img, categories[c], {x - s.width / 2, y + f.tick_len + 4}, f.tick);
  }

  std::vector<LegendEntry> legend;
  for (size_t k = 0; k < series.size(); ++k)
    legend.push_back({series[k].name, series_color(k), false});
  if (!legend.empty()) {
    const cv::Size size = legend_size(legend, f);
    draw_legend(img, legend,
                {area.rect.x + area.rect.width - size.width - f.pad, area.rect.y + f.pad}, f);
  }
  put_title(img, style, f);
  if (area_out) *area_out = area;
  return img;
}

cv::Mat render_heat_map(const std::vector<double>& values, int rows, int cols,
                        const HeatMapAxes& axes, const PlotStyle& style, PlotArea* area_out) {
  check_size(style);
  if (rows < 1 || cols < 1 || values.size() != static_cast<size_t>(rows) * cols) {
    throw util::InputError(
        fmt::format("heat map of {} values is not {} x {}", values.size(), rows, cols));
  }
  if (!(axes.x_min < axes.x_max && axes.y_min < axes.y_max)) {
    throw util::InputError("heat map axes need min < max");
  }
  const Fonts f(style);
  double top = 0;
  for (double v : values) {
    if (std::isfinite(v)) top = std::max(top, v);
  }
  const auto shade = [&](double v) {
    if (!std::isfinite(v) || v <= 0 || top <= 0) return 0.0;
    return axes.log_scale ? std::log1p(v) / std::log1p(top) : v / top;
  };

  // Colour bar ticks in value units, placed by shade().
  std::vector<double> bar_ticks;
  double bar_step = 1;
  if (top > 0 && axes.log_scale) {
    bar_ticks.push_back(0);
    for (double t = 1; t <= top * (1 + 1e-9); t *= 10) bar_ticks.push_back(t);
    bar_step = 1;
  } else if (top > 0) {
    const Axis a = fixed_axis(0, top, 5);
    bar_ticks = a.ticks;
    bar_step = a.step;
  }
  const int bar_tick_w = max_tick_width(bar_ticks, bar_step, f);
  const int label_h = text_size("Ag", f.label).height;
  const int bar_w = std::max(12, style.width / 40);
  const int right_extra = 3 * f.pad + bar_w + f.tick_len + 4 + bar_tick_w +
                          (axes.value_label.empty() ? 0 : f.pad + label_h);

  const Axis xa = fixed_axis(axes.x_min, axes.x_max, 6);
  const Axis ya = fixed_axis(axes.y_min, axes.y_max, 6);
  cv::Mat img(style.height, style.width, CV_8UC3, kWhite);
  PlotArea area;
  cv::Rect r = inner_rect(style, f, max_tick_width(ya.ticks, ya.step, f), right_extra);
  // Whole pixels per cell keep the grid regular; the frame is one pixel larger on each side.
  const int cell = std::max(1, std::min((r.width - 2) / cols, (r.height - 2) / rows));
  // The map and its labels are centred in the room left by the cell rounding.
  r = cv::Rect(r.x + (r.width - cell * cols - 2) / 2, r.y + (r.height - cell * rows - 2) / 2,
               cell * cols + 2, cell * rows + 2);
  area.rect = r;
  area.x_min = axes.x_min, area.x_max = axes.x_max, area.y_min = axes.y_min,
  area.y_max = axes.y_max;

  cv::Mat grey(rows, cols, CV_8UC1);
  for (int i = 0; i < rows; ++i) {
    for (int j = 0; j < cols; ++j) {
      // Row 0 belongs at the bottom.
      grey.at<uint8_t>(rows - 1 - i, j) =
          cv::saturate_cast<uint8_t>(255.0 * shade(values[static_cast<size_t>(i) * cols + j]));
    }
  }
  cv::Mat coloured, scaled;
  cv::applyColorMap(grey, coloured, cv::COLORMAP_INFERNO);
  cv::resize(coloured, scaled, {cell * cols, cell * rows}, 0, 0, cv::INTER_NEAREST);
  scaled.copyTo(img(cv::Rect(r.x + 1, r.y + 1, scaled.cols, scaled.rows)));
  draw_axes(img, area, xa.ticks, xa.step, ya.ticks, ya.step, style, f, false, false);

  // Colour bar: bottom = 0, top = the largest value.
  const cv::Rect bar(r.x + r.width + 2 * f.pad, r.y, bar_w, r.height);
  cv::Mat ramp(bar.height, 1, CV_8UC1);
  for (int y = 0; y < bar.height; ++y) {
    ramp.at<uint8_t>(y) =
        cv::saturate_cast<uint8_t>(255.0 * (bar.height - 1 - y) / std::max(1, bar.height - 1));
  }
  cv::Mat ramp_colour, ramp_wide;
  cv::applyColorMap(ramp, ramp_colour, cv::COLORMAP_INFERNO);
  cv::resize(ramp_colour, ramp_wide, bar.size(), 0, 0, cv::INTER_NEAREST);
  ramp_wide.copyTo(img(bar));
  cv::rectangle(img, bar, kAxis, 1);
  for (double t : bar_ticks) {
    const int y = bar.y + static_cast<int>(std::lround((1 - shade(t)) * (bar.height - 1)));
    const int x = bar.x + bar.width;
    cv::line(img, {x, y}, {x + f.tick_len, y}, kAxis, 1);
    const std::string label = format_tick(t, bar_step);
    const cv::Size s = text_size(label, f.tick);
    put_text(img, label, {x + f.tick_len + 4, y - s.height / 2}, f.tick);
  }
  if (!axes.value_label.empty()) {
    put_vertical_text(img, axes.value_label,
                      {bar.x + bar.width + f.tick_len + 4 + bar_tick_w + f.pad + label_h / 2,
                       bar.y + bar.height / 2},
                      f.label);
  }
  put_title(img, style, f);
  if (area_out) *area_out = area;
  return img;
}

void write_png(const std::filesystem::path& path, const cv::Mat& bgr) {
  std::vector<uchar> bytes;
  bool ok = false;
  try {
    ok = cv::imencode(".png", bgr, bytes);
  } catch (const cv::Exception& e) {
    throw util::InputError(fmt::format("cannot encode PNG '{}': {}", path.string(), e.what()));
  }
  if (!ok) throw util::InputError(fmt::format("cannot encode PNG '{}'", path.string()));
  util::write_file_atomic(
      path.string(), std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace aligndetr::vis
