#include "aligndetr/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

namespace aligndetr::data {

namespace {

int uniform_int(std::mt19937_64& rng, int lo, int hi) {  // inclusive
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

int choose(std::mt19937_64& rng, const std::vector<int>& values) {
  if (values.empty()) throw std::invalid_argument("transform size list is empty");
  return values[static_cast<size_t>(uniform_int(rng, 0, static_cast<int>(values.size()) - 1))];
}

}  // namespace

std::array<int, 2> shortest_edge_size(int height, int width, int short_edge, int max_size) {
  const double size = short_edge;
  const double scale = size / std::min(height, width);
  double new_h = height < width ? size : scale * height;
  double new_w = height < width ? scale * width : size;
  if (max_size > 0 && std::max(new_h, new_w) > max_size) {
    const double s = max_size / std::max(new_h, new_w);
    new_h *= s;
    new_w *= s;
  }
  return {static_cast<int>(new_h + 0.5), static_cast<int>(new_w + 0.5)};
}

void hflip(Annotated& sample) {
  cv::flip(sample.image, sample.image, 1);
  const float w = static_cast<float>(sample.image.cols);
  for (auto& b : sample.boxes) {
    const float x0 = b[0];
    b[0] = w - b[2];
    b[2] = w - x0;
  }
}

void resize(Annotated& sample, int new_height, int new_width) {
  const float sx = static_cast<float>(new_width) / static_cast<float>(sample.image.cols);
  const float sy = static_cast<float>(new_height) / static_cast<float>(sample.image.rows);
  if (new_width != sample.image.cols || new_height != sample.image.rows) {
    cv::Mat out;
    cv::resize(sample.image, out, cv::Size(new_width, new_height), 0, 0, cv::INTER_LINEAR);
    sample.image = out;
  }
  for (auto& b : sample.boxes) {
    b[0] *= sx;
    b[1] *= sy;
    b[2] *= sx;
    b[3] *= sy;
  }
}

void resize_shortest_edge(Annotated& sample, int short_edge, int max_size) {
  const auto [h, w] =
      shortest_edge_size(sample.image.rows, sample.image.cols, short_edge, max_size);
  resize(sample, h, w);
}

void crop(Annotated& sample, int x0, int y0, int width, int height) {
  sample.image = sample.image(cv::Rect(x0, y0, width, height)).clone();
  const float fw = static_cast<float>(width);
  const float fh = static_cast<float>(height);
  for (auto& b : sample.boxes) {
    b[0] = std::clamp(b[0] - static_cast<float>(x0), 0.0f, fw);
    b[1] = std::clamp(b[1] - static_cast<float>(y0), 0.0f, fh);
    b[2] = std::clamp(b[2] - static_cast<float>(x0), 0.0f, fw);
    b[3] = std::clamp(b[3] - static_cast<float>(y0), 0.0f, fh);
  }
  drop_degenerate(sample);
}

void drop_degenerate(Annotated& sample) {
  size_t w = 0;
  for (size_t i = 0; i < sample.boxes.size(); ++i) {
    const auto& b = sample.boxes[i];
    if (b[2] - b[0] > 1e-5f && b[3] - b[1] > 1e-5f) {
      sample.boxes[w] = b;
      sample.labels[w] = sample.labels[i];
      ++w;
    }
  }
  sample.boxes.resize(w);
  sample.labels.resize(w);
}

void apply_train_transforms(Annotated& sample, const TransformOptions& o, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  if (unit(rng) < o.flip_prob) hflip(sample);
  if (unit(rng) < o.crop_prob) {
    resize_shortest_edge(sample, choose(rng, o.crop_resize_sizes), 0);
    // "absolute_range" crop: each side uniform in [min, max], limited by the image.
    const int h = sample.image.rows, w = sample.image.cols;
    const int ch = uniform_int(rng, std::min(h, o.crop_min), std::min(h, o.crop_max));
    const int cw = uniform_int(rng, std::min(w, o.crop_min), std::min(w, o.crop_max));
    const int y0 = uniform_int(rng, 0, h - ch);
    const int x0 = uniform_int(rng, 0, w - cw);
    crop(sample, x0, y0, cw, ch);
  }
  resize_shortest_edge(sample, choose(rng, o.train_short_sizes), o.train_max_size);
  drop_degenerate(sample);
}

void apply_eval_transforms(Annotated& sample, const TransformOptions& o) {
  resize_shortest_edge(sample, o.test_short_size, o.test_max_size);
}

}  // namespace aligndetr::data
