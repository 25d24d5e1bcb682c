#include "aligndetr/data/synth.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/progress.h"

namespace aligndetr::data {

namespace fs = std::filesystem;

namespace {

enum Shape { kCircle, kSquare, kTriangle, kStar, kCross, kRing, kDiamond, kHexagon, kNumShapes };

// Visible-fraction threshold below which an occluded object is not drawn at all, so that
// every visible shape is annotated.
constexpr double kMinVisible = 0.4;

struct Placement {
  Shape shape;
  cv::Point2d center;
  double radius;  // half of the larger extent
  double aspect;  // height / width scale
  double angle;   // radians
  cv::Scalar color;
};

std::vector<cv::Point> polygon(const Placement& p, const std::vector<cv::Point2d>& unit) {
  std::vector<cv::Point> pts;
  const double c = std::cos(p.angle), s = std::sin(p.angle);
  for (const auto& u : unit) {
    const double x = u.x * p.radius, y = u.y * p.radius * p.aspect;
    pts.emplace_back(cvRound(p.center.x + c * x - s * y), cvRound(p.center.y + s * x + c * y));
  }
  return pts;
}

std::vector<cv::Point2d> regular(int n, double phase, double inner = 0.0) {
  std::vector<cv::Point2d> pts;
  const int count = inner > 0 ? 2 * n : n;
  for (int i = 0; i < count; ++i) {
    const double r = (inner > 0 && i % 2) ? inner : 1.0;
    const double a = phase + 2 * M_PI * i / count;
    pts.emplace_back(r * std::cos(a), r * std::sin(a));
  }
  return pts;
}

void draw_mask(cv::Mat1b& mask, const Placement& p) {
  const cv::Size axes(std::max(1, cvRound(p.radius)), std::max(1, cvRound(p.radius * p.aspect)));
  const double deg = p.angle * 180 / M_PI;
  switch (p.shape) {
    case kCircle:
      cv::ellipse(mask, p.center, axes, deg, 0, 360, 255, cv::FILLED);
      break;
    case kRing: {
      cv::ellipse(mask, p.center, axes, deg, 0, 360, 255, cv::FILLED);
      const cv::Size hole(std::max(1, cvRound(axes.width * 0.55)),
                          std::max(1, cvRound(axes.height * 0.55)));
      cv::ellipse(mask, p.center, hole, deg, 0, 360, 0, cv::FILLED);
      break;
    }
    case kSquare:
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon(p, regular(4, M_PI / 4))},
                   255);
      break;
    case kDiamond:
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon(p, regular(4, 0))}, 255);
      break;
    case kTriangle:
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon(p, regular(3, -M_PI / 2))},
                   255);
      break;
    case kHexagon:
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon(p, regular(6, 0))}, 255);
      break;
    case kStar:
      cv::fillPoly(
          mask, std::vector<std::vector<cv::Point>>{polygon(p, regular(5, -M_PI / 2, 0.45))}, 255);
      break;
    case kCross: {
      const double t = 0.32;
      const std::vector<cv::Point2d> unit = {{-t, -1}, {t, -1}, {t, -t},  {1, -t},
                                             {1, t},   {t, t},  {t, 1},   {-t, 1},
                                             {-t, t},  {-1, t}, {-1, -t}, {-t, -t}};
      cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{polygon(p, unit)}, 255);
      break;
    }
    case kNumShapes:
      break;
  }
}

cv::Scalar random_color(std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  cv::Mat3f hsv(
      1, 1,
      cv::Vec3f(static_cast<float>(360 * u(rng)), static_cast<float>(0.35 + 0.65 * u(rng)),
                static_cast<float>(0.3 + 0.7 * u(rng))));
  cv::Mat3f rgb;
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  const auto v = rgb(0, 0);
  return {255.0 * v[0], 255.0 * v[1], 255.0 * v[2]};
}

// Two-colour gradient, low-frequency blotches and thin clutter lines.
cv::Mat3b background(int h, int w, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  const cv::Scalar a = random_color(rng), b = random_color(rng);
  cv::Mat3f img(h, w);
  const double gx = u(rng) - 0.5, gy = u(rng) - 0.5;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double t =
          std::clamp(0.5 + gx * (x - w / 2.0) / w * 2 + gy * (y - h / 2.0) / h * 2, 0.0, 1.0);
      for (int c = 0; c < 3; ++c) img(y, x)[c] = static_cast<float>(a[c] * (1 - t) + b[c] * t);
    }
  }
  cv::Mat1f blotch(6, 6);
  cv::randn(blotch, 0, 1);  // cv::theRNG is reseeded per image below
  cv::resize(blotch, blotch, cv::Size(w, h), 0, 0, cv::INTER_CUBIC);
  const double strength = 10 + 30 * u(rng);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) img(y, x)[c] += static_cast<float>(strength * blotch(y, x));
    }
  }
  cv::Mat3b out;
  img.convertTo(out, CV_8UC3);
  const int lines = std::uniform_int_distribution<int>(0, 6)(rng);
  for (int i = 0; i < lines; ++i) {
    const cv::Point p0(static_cast<int>(u(rng) * w), static_cast<int>(u(rng) * h));
    const cv::Point p1(static_cast<int>(u(rng) * w), static_cast<int>(u(rng) * h));
    cv::line(out, p0, p1, random_color(rng), 1 + static_cast<int>(u(rng) * 2), cv::LINE_AA);
  }
  return out;
}

struct Rendered {
  cv::Mat3b image;
  int width = 0;
  int height = 0;
  std::vector<coco::CocoAnnotation> annotations;  // ids and image id filled by the caller
};

Rendered render(int size, const SynthOptions& o, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> u(0, 1);
  cv::theRNG().state = rng();
  const int w = size;
  const int h = std::max(32, static_cast<int>(size * (0.7 + 0.3 * u(rng))));
  Rendered out;
  out.width = w;
  out.height = h;
  out.image = background(h, w, rng);

  const int n = std::uniform_int_distribution<int>(o.min_objects, o.max_objects)(rng);
  std::vector<Placement> objects;
  std::vector<cv::Mat1b> masks;
  for (int i = 0; i < n; ++i) {
    Placement p;
    p.shape = static_cast<Shape>(std::uniform_int_distribution<int>(0, kNumShapes - 1)(rng));
    // Log-uniform sizes, from the smallest diameter asked for to 60% of the shorter side.
    const double max_r = 0.3 * std::min(h, w), min_r = std::min(0.5 * o.min_object_size, max_r);
    p.radius = min_r * std::pow(max_r / min_r, u(rng));
    p.aspect = 0.7 + 0.6 * u(rng);
    p.angle = (u(rng) - 0.5) * (p.shape == kCircle || p.shape == kRing ? M_PI : M_PI / 5);
    p.center = {u(rng) * w, u(rng) * h};
    p.color = random_color(rng);
    cv::Mat1b m = cv::Mat1b::zeros(h, w);
    draw_mask(m, p);
    if (cv::countNonZero(m) < 12) continue;
    objects.push_back(p);
    masks.push_back(m);
  }
  // Later objects lie on top. Objects mostly hidden are dropped (never drawn).
  std::vector<bool> keep(objects.size(), true);
  std::vector<cv::Mat1b> visible(objects.size());
  for (size_t i = objects.size(); i-- > 0;) {
    cv::Mat1b v = masks[i].clone();
    for (size_t j = i + 1; j < objects.size(); ++j) {
      if (keep[j]) v.setTo(0, masks[j]);
    }
    keep[i] = cv::countNonZero(v) >= kMinVisible * cv::countNonZero(masks[i]);
    visible[i] = v;
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (!keep[i]) continue;
    // Each object gets its own shading so colour alone does not give the class away.
    cv::Mat3b fill(h, w, cv::Vec3b(0, 0, 0));
    fill.setTo(objects[i].color);
    cv::Mat1f shade(4, 4);
    cv::randn(shade, 1.0, 0.12);
    cv::resize(shade, shade, cv::Size(w, h), 0, 0, cv::INTER_LINEAR);
    cv::Mat3f fillf;
    fill.convertTo(fillf, CV_32FC3);
    cv::Mat3f shade3;
    cv::merge(std::vector<cv::Mat>{shade, shade, shade}, shade3);
    fillf = fillf.mul(shade3);
    fillf.convertTo(fill, CV_8UC3);
    fill.copyTo(out.image, masks[i]);
  }
  for (size_t i = 0; i < objects.size(); ++i) {
    if (!keep[i]) continue;
    const cv::Rect r = cv::boundingRect(visible[i]);
    coco::CocoAnnotation ann;
    ann.category_id = objects[i].shape + 1;
    ann.bbox = {double(r.x), double(r.y), double(r.width), double(r.height)};
    ann.area = cv::countNonZero(visible[i]);
    out.annotations.push_back(ann);
  }
  cv::Mat noise(h, w, CV_16SC3);
  cv::randn(noise, 0, 4 + 6 * u(rng));
  cv::Mat img16;
  out.image.convertTo(img16, CV_16SC3);
  img16 += noise;
  img16.convertTo(out.image, CV_8UC3);
  return out;
}

void write_split(const SynthOptions& o, const std::string& split, int count, uint64_t split_seed) {
  const fs::path image_dir = fs::path(o.out_dir) / "images" / split;
  fs::create_directories(image_dir);
  std::vector<Rendered> results(static_cast<size_t>(count));
  std::atomic<int> next{0};
  std::mutex io_mutex;
  util::ProgressBar progress(static_cast<int64_t>(count), "synth " + split);
  std::exception_ptr error;
  auto work = [&] {
    for (int i = next++; i < count; i = next++) {
      try {
        std::mt19937_64 rng(sample_seed(o.seed, static_cast<int64_t>(split_seed), uint64_t(i)));
        Rendered r = render(o.size, o, rng);
        cv::Mat bgr;
        cv::cvtColor(r.image, bgr, cv::COLOR_RGB2BGR);
        const auto path = image_dir / fmt::format("{:06d}.jpg", i + 1);
        if (!cv::imwrite(path.string(), bgr, {cv::IMWRITE_JPEG_QUALITY, 92})) {
          throw util::InputError(fmt::format("cannot write image '{}'", path.string()));
        }
        r.image.release();
        results[static_cast<size_t>(i)] = std::move(r);
        std::lock_guard<std::mutex> lock(io_mutex);
        progress.advance();
      } catch (...) {
        std::lock_guard<std::mutex> lock(io_mutex);
        if (!error) error = std::current_exception();
        next = count;
      }
    }
  };
  const int threads =
      o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(work);
  for (auto& t : pool) t.join();
  progress.finish();
  if (error) std::rethrow_exception(error);

  coco::CocoDataset ds;
  for (size_t c = 0; c < synth_class_names().size(); ++c) {
    ds.categories.push_back({static_cast<int64_t>(c + 1), synth_class_names()[c], "shape"});
  }
  int64_t ann_id = 1;
  for (int i = 0; i < count; ++i) {
    const auto& r = results[static_cast<size_t>(i)];
    coco::CocoImage im;
    im.id = i + 1;
    im.file_name = fmt::format("{:06d}.jpg", i + 1);
    im.width = r.width;
    im.height = r.height;
    ds.images.push_back(im);
    for (auto a : r.annotations) {
      a.id = ann_id++;
      a.image_id = im.id;
      ds.annotations.push_back(a);
    }
  }
  fs::create_directories(fs::path(o.out_dir) / "annotations");
  coco::write_coco(
      ds, (fs::path(o.out_dir) / "annotations" / ("instances_" + split + ".json")).string());
}

}  // namespace

const std::vector<std::string>& synth_class_names() {
  static const std::vector<std::string> names = {"circle", "square", "triangle", "star",
                                                 "cross",  "ring",   "diamond",  "hexagon"};
  return names;
}

void write_synthetic_dataset(const SynthOptions& o) {
  if (o.out_dir.empty()) throw util::InputError("synth: no output directory given");
  if (o.size < 64)
    throw util::InputError(fmt::format("synth: --size {} is below 64 pixels", o.size));
  if (o.train_images < 0 || o.val_images < 0) throw util::InputError("synth: negative image count");
  if (o.min_objects < 1 || o.max_objects < o.min_objects) {
    throw util::InputError("synth: need 1 <= min objects <= max objects");
  }
  if (o.min_object_size < 4) {
    throw util::InputError(
        fmt::format("synth: --min-object-size {} is below 4 pixels", o.min_object_size));
  }
  write_split(o, "train", o.train_images, 1);
  write_split(o, "val", o.val_images, 2);
}

}  // namespace aligndetr::data
