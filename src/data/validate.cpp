#include "aligndetr/data/validate.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <opencv2/imgcodecs.hpp>

#include "aligndetr/util/error.h"
#include "jpeg_check.h"

namespace aligndetr::data {

namespace fs = std::filesystem;

OnInvalid parse_on_invalid(const std::string& text) {
  if (text == "fail") return OnInvalid::kFail;
  if (text == "skip") return OnInvalid::kSkip;
  throw util::InputError(
      fmt::format("unknown invalid-record policy '{}': use 'fail' or 'skip'", text));
}

ExifOrientation parse_exif_orientation(const std::string& text) {
  if (text == "apply") return ExifOrientation::kApply;
  if (text == "ignore") return ExifOrientation::kIgnore;
  throw util::InputError(
      fmt::format("unknown EXIF orientation policy '{}': use 'apply' or 'ignore'", text));
}

int imdecode_flags(ExifOrientation exif) {
  return exif == ExifOrientation::kApply ? cv::IMREAD_COLOR
                                         : cv::IMREAD_COLOR | cv::IMREAD_IGNORE_ORIENTATION;
}

std::string size_mismatch_message(int64_t width, int64_t height, int64_t expected_width,
                                  int64_t expected_height, ExifOrientation exif) {
  std::string text = fmt::format("decodes to {}x{}, not the {}x{} its record gives", width, height,
                                 expected_width, expected_height);
  if (width == expected_height && height == expected_width) {
    // A quarter turn: what an EXIF orientation tag of 5 to 8 does.
    text += exif == ExifOrientation::kApply
                ? "; its EXIF orientation turns it: if the annotations describe the stored pixels, "
                  "set data.exif_orientation: ignore"
                : "; it is stored turned: if the annotations follow its EXIF orientation tag, set "
                  "data.exif_orientation: apply";
  } else {
    text += "; the annotations were made on another version of the file";
  }
  return text;
}

void ValidationReport::add(const std::string& kind, std::string message) {
  ++counts[kind];
  messages.push_back(std::move(message));
}

int64_t ValidationReport::total() const {
  int64_t n = 0;
  for (const auto& [kind, count] : counts) n += count;
  return n;
}

namespace {

// A JPEG starts with FF D8 and ends with FF D9, possibly followed by padding some writers add.
// libjpeg decodes a truncated file with only a warning, so the end marker is what tells.
// Only the last 4 KiB are searched: an embedded EXIF thumbnail has its own end marker earlier.
bool jpeg_is_complete(const std::string& tail) {
  if (tail.size() < 2) return false;
  const size_t stop = tail.size() > 4096 ? tail.size() - 4096 : 0;
  for (size_t i = tail.size() - 1; i-- > stop;) {
    if (static_cast<unsigned char>(tail[i]) == 0xFF &&
        static_cast<unsigned char>(tail[i + 1]) == 0xD9) {
      return true;
    }
  }
  return false;
}

bool is_jpeg(const std::string& bytes) {
  return bytes.size() >= 3 && static_cast<unsigned char>(bytes[0]) == 0xFF &&
         static_cast<unsigned char>(bytes[1]) == 0xD8 &&
         static_cast<unsigned char>(bytes[2]) == 0xFF;
}

bool is_png(const std::string& bytes) {
  return bytes.size() >= 8 && bytes.compare(0, 8, "\x89PNG\r\n\x1a\n") == 0;
}

// Applies the policy to one problem: throws under kFail, records it under kSkip.
class Recorder {
 public:
  Recorder(ValidationReport& report, OnInvalid policy, const std::string& source)
      : report_(report), policy_(policy), source_(source) {}
  void operator()(const std::string& kind, const std::string& what) {
    std::string message = fmt::format("{}: {}", source_, what);
    if (policy_ == OnInvalid::kFail) {
      throw util::InputError(message + " (pass --on-invalid skip to leave such records out)");
    }
    report_.add(kind, std::move(message));
  }

 private:
  ValidationReport& report_;
  OnInvalid policy_;
  const std::string& source_;
};

}  // namespace

ImageCheck check_image_file(const std::string& path, bool decode, ExifOrientation exif,
                            int64_t expected_width, int64_t expected_height) {
  const auto fail = [](std::string problem) { return ImageCheck{std::move(problem), false}; };
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return fail("file not found");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return fail("cannot open");
  const auto size = static_cast<size_t>(in.tellg());
  if (size == 0) return fail("empty file");
  // Without a full decode only the head and the tail are read: cheap on large datasets.
  std::string head(std::min<size_t>(size, 16), '\0');
  std::string bytes;
  if (decode) {
    bytes.resize(size);
    in.seekg(0);
    in.read(bytes.data(), static_cast<std::streamsize>(size));
  } else {
    in.seekg(0);
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    const size_t tail = std::min<size_t>(size, 4096);
    bytes.resize(tail);
    in.seekg(static_cast<std::streamoff>(size - tail));
    in.read(bytes.data(), static_cast<std::streamsize>(tail));
  }
  if (!in) return fail("read error");
  const std::string& start = decode ? bytes : head;
  const bool jpeg = is_jpeg(start);
  if (jpeg) {
    if (!jpeg_is_complete(bytes)) return fail("truncated JPEG (no end-of-image marker)");
  } else if (!is_png(start)) {
    return fail("not a JPEG or PNG file");
  }
  if (!decode) return {};
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data());
  const cv::Mat image = cv::imdecode(raw, imdecode_flags(exif));
  if (image.empty()) return fail("cannot be decoded as an image");
  if (jpeg) {
    const std::string warning = jpeg_decoder_problem(bytes);
    if (!warning.empty()) return fail("corrupt JPEG data: libjpeg says \"" + warning + "\"");
  }
  if (expected_width > 0 && expected_height > 0 &&
      (image.cols != expected_width || image.rows != expected_height)) {
    return {size_mismatch_message(image.cols, image.rows, expected_width, expected_height, exif),
            true};
  }
  return {};
}

ValidationReport validate_coco(coco::CocoDataset& ds, const ValidationOptions& options) {
  ValidationReport report;
  Recorder problem(report, options.on_invalid, ds.source);

  // Images: unique ids and positive sizes.
  std::unordered_set<int64_t> seen;
  std::vector<char> keep_image(ds.images.size(), 1);
  for (size_t i = 0; i < ds.images.size(); ++i) {
    const auto& im = ds.images[i];
    if (!seen.insert(im.id).second) {
      problem("duplicate_image_id",
              fmt::format("image id {} ('{}') appears more than once", im.id, im.file_name));
      keep_image[i] = 0;
    } else if (im.width <= 0 || im.height <= 0) {
      problem("image_bad_size", fmt::format("image {} ('{}') has size {}x{}", im.id, im.file_name,
                                            im.width, im.height));
      keep_image[i] = 0;
    }
  }

  // Categories: unique ids (a second record of an id would give one label two meanings).
  std::unordered_set<int64_t> seen_categories;
  std::vector<coco::CocoCategory> categories;
  for (const auto& c : ds.categories) {
    if (!seen_categories.insert(c.id).second) {
      problem("duplicate_category_id",
              fmt::format("category id {} ('{}') appears more than once", c.id, c.name));
      continue;
    }
    categories.push_back(c);
  }
  if (categories.size() != ds.categories.size()) {
    ds.categories = std::move(categories);
    ds.reindex();
  }

  // Image files.
  if (!options.images_dir.empty()) {
    int threads = options.threads > 0 ? options.threads
                                      : static_cast<int>(std::thread::hardware_concurrency());
    threads = std::max(1, threads);
    std::vector<ImageCheck> file_error(ds.images.size());
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t i = next++; i < ds.images.size(); i = next++) {
          if (!keep_image[i]) continue;
          const auto& im = ds.images[i];
          file_error[i] =
              check_image_file((fs::path(options.images_dir) / im.file_name).string(),
                               options.decode_images, options.exif, im.width, im.height);
        }
      });
    }
    for (auto& th : pool) th.join();
    for (size_t i = 0; i < ds.images.size(); ++i) {
      const auto& check = file_error[i];
      if (check.problem.empty()) continue;
      const auto path = (fs::path(options.images_dir) / ds.images[i].file_name).string();
      const char* kind = check.size_mismatch                 ? "image_size_mismatch"
                         : check.problem == "file not found" ? "image_missing"
                                                             : "image_unreadable";
      problem(kind, fmt::format("image {}: '{}': {}", ds.images[i].id, path, check.problem));
      keep_image[i] = 0;
    }
  }

  // Annotations: known image and category, finite positive box, inside the image once clipped.
  std::vector<char> keep_ann(ds.annotations.size(), 1);
  std::unordered_set<int64_t> seen_annotations;
  for (size_t a = 0; a < ds.annotations.size(); ++a) {
    auto& ann = ds.annotations[a];
    if (!seen_annotations.insert(ann.id).second) {
      problem(
          "duplicate_annotation_id",
          fmt::format("annotation id {} (image {}) appears more than once", ann.id, ann.image_id));
      keep_ann[a] = 0;
      continue;
    }
    const int64_t img_index = ds.image_index(ann.image_id);
    if (img_index < 0) {
      problem("annotation_unknown_image",
              fmt::format("annotation {} refers to unknown image id {}", ann.id, ann.image_id));
      keep_ann[a] = 0;
      continue;
    }
    if (!ds.category_lookup.count(ann.category_id)) {
      problem("annotation_unknown_category",
              fmt::format("annotation {} (image {}) has unknown category id {}", ann.id,
                          ann.image_id, ann.category_id));
      keep_ann[a] = 0;
      continue;
    }
    // An image left out (bad size, missing file) takes its boxes with it: they are not box
    // problems of their own.
    if (!keep_image[static_cast<size_t>(img_index)]) {
      keep_ann[a] = 0;
      continue;
    }
    auto& b = ann.bbox;
    if (!std::all_of(b.begin(), b.end(), [](double v) { return std::isfinite(v); })) {
      problem("box_not_finite",
              fmt::format("annotation {} (image {}) has a non-finite bbox", ann.id, ann.image_id));
      keep_ann[a] = 0;
      continue;
    }
    if (b[2] <= 0 || b[3] <= 0) {
      problem("box_non_positive_size",
              fmt::format("annotation {} (image {}) has bbox width {} and height {}", ann.id,
                          ann.image_id, b[2], b[3]));
      keep_ann[a] = 0;
      continue;
    }
    const auto& im = ds.images[static_cast<size_t>(img_index)];
    const double x0 = std::clamp(b[0], 0.0, double(im.width));
    const double y0 = std::clamp(b[1], 0.0, double(im.height));
    const double x1 = std::clamp(b[0] + b[2], 0.0, double(im.width));
    const double y1 = std::clamp(b[1] + b[3], 0.0, double(im.height));
    if (x1 <= x0 || y1 <= y0) {
      problem("box_outside_image",
              fmt::format("annotation {} (image {}) bbox [{}, {}, {}, {}] lies outside the {}x{} "
                          "image",
                          ann.id, ann.image_id, b[0], b[1], b[2], b[3], im.width, im.height));
      keep_ann[a] = 0;
      continue;
    }
    if (x0 != b[0] || y0 != b[1] || x1 != b[0] + b[2] || y1 != b[1] + b[3]) {
      ++report.clipped_boxes;
      b = {x0, y0, x1 - x0, y1 - y0};
    }
    if (!keep_image[static_cast<size_t>(img_index)]) keep_ann[a] = 0;
  }

  // Remove what was invalid (only reached under kSkip, or with nothing to remove).
  size_t w = 0;
  for (size_t i = 0; i < ds.images.size(); ++i) {
    if (!keep_image[i]) continue;
    if (w != i) ds.images[w] = std::move(ds.images[i]);  // self-move would empty the strings
    ++w;
  }
  ds.images.resize(w);
  w = 0;
  for (size_t a = 0; a < ds.annotations.size(); ++a) {
    if (keep_ann[a]) ds.annotations[w++] = ds.annotations[a];
  }
  ds.annotations.resize(w);
  ds.reindex();

  if (report.total() > 0) {
    spdlog::warn("{}: left out {} invalid record(s):", ds.source, report.total());
    const size_t shown = std::min<size_t>(report.messages.size(), 10);
    for (size_t i = 0; i < shown; ++i) spdlog::warn("  {}", report.messages[i]);
    if (report.messages.size() > shown) {
      spdlog::warn("  ... and {} more", report.messages.size() - shown);
    }
  }
  if (report.clipped_boxes > 0) {
    spdlog::info("{}: clipped {} box(es) to their image", ds.source, report.clipped_boxes);
  }
  return report;
}

}  // namespace aligndetr::data
