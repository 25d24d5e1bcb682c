#include "aligndetr/vis/draw.h"

#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "aligndetr/util/error.h"

namespace aligndetr::vis {

namespace {

cv::Scalar class_color(int label) {
  // Golden-angle hues give neighbouring labels distinct colours.
  const float hue = std::fmod(static_cast<float>(label) * 137.508f, 360.0f);
  cv::Mat3f hsv(1, 1, cv::Vec3f(hue, 0.85f, 0.95f));
  cv::Mat3f rgb;
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  const auto v = rgb(0, 0);
  return {255.0 * v[0], 255.0 * v[1], 255.0 * v[2]};
}

}  // namespace

void draw_boxes(cv::Mat& rgb, const std::vector<DrawnBox>& boxes,
                const std::vector<std::string>& class_names) {
  const double font_scale = std::clamp(std::min(rgb.rows, rgb.cols) / 900.0, 0.35, 0.8);
  const int thickness = std::max(1, std::min(rgb.rows, rgb.cols) / 400);
  for (const auto& d : boxes) {
    const cv::Scalar color = class_color(d.label);
    const cv::Point p0(cvRound(d.box[0]), cvRound(d.box[1]));
    const cv::Point p1(cvRound(d.box[2]), cvRound(d.box[3]));
    cv::rectangle(rgb, p0, p1, color, thickness, cv::LINE_AA);
    const std::string name = d.label >= 0 && static_cast<size_t>(d.label) < class_names.size()
                                 ? class_names[static_cast<size_t>(d.label)]
                                 : fmt::format("class {}", d.label);
    const std::string text = d.score >= 0 ? fmt::format("{} {:.2f}", name, d.score) : name;
    int baseline = 0;
    const cv::Size size = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, font_scale, 1, &baseline);
    const int top = std::max(0, p0.y - size.height - baseline - 2);
    const cv::Point label_origin(std::max(0, p0.x), top);
    cv::rectangle(rgb, label_origin,
                  label_origin + cv::Point(size.width + 4, size.height + baseline + 2), color,
                  cv::FILLED);
    cv::putText(rgb, text, label_origin + cv::Point(2, size.height + 1), cv::FONT_HERSHEY_SIMPLEX,
                font_scale, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
}

void write_image_rgb(const std::string& path, const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  bool ok = false;
  try {
    ok = cv::imwrite(path, bgr);
  } catch (const cv::Exception& e) {
    throw util::InputError(fmt::format("cannot write image '{}': {}", path, e.what()));
  }
  if (!ok) throw util::InputError(fmt::format("cannot write image '{}'", path));
}

}  // namespace aligndetr::vis
