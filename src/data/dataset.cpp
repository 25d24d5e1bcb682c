#include "aligndetr/data/dataset.h"

#include <filesystem>
#include <fstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "aligndetr/boxes/boxes.h"
#include "aligndetr/util/error.h"

namespace aligndetr::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

uint64_t sample_seed(uint64_t seed, int64_t epoch, uint64_t index) {
  return splitmix64(splitmix64(splitmix64(seed) ^ static_cast<uint64_t>(epoch)) ^ index);
}

cv::Mat read_image_rgb(const std::string& path, ExifOrientation exif) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw util::InputError(fmt::format("cannot open image '{}'", path));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.empty()) throw util::CorruptInput(fmt::format("image '{}' is empty", path));
  const cv::Mat raw(1, static_cast<int>(bytes.size()), CV_8UC1, bytes.data());
  cv::Mat bgr = cv::imdecode(raw, imdecode_flags(exif));
  if (bgr.empty()) throw util::CorruptInput(fmt::format("image '{}' cannot be decoded", path));
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

CocoDetection::CocoDetection(DatasetOptions options) : options_(std::move(options)) {
  coco_ = coco::read_coco(options_.ann_file);
  const size_t in_file = coco_.images.size();
  ValidationOptions v;
  v.on_invalid = options_.on_invalid;
  v.images_dir = options_.images_dir;
  v.exif = options_.exif;
  report_ = validate_coco(coco_, v);
  categories_ = coco::CategoryMap(coco_.categories);
  annotations_ = coco_.annotations_by_image();
  size_t dropped = 0;
  for (size_t i = 0; i < coco_.images.size(); ++i) {
    if (options_.train && options_.drop_empty) {
      bool has_box = false;
      for (int32_t a : annotations_[i])
        has_box |= !coco_.annotations[static_cast<size_t>(a)].iscrowd;
      if (!has_box) {
        ++dropped;
        continue;
      }
    }
    indices_.push_back(i);
  }
  if (dropped > 0) {
    spdlog::info("{}: left out {} training image(s) without annotations", coco_.source, dropped);
  }
  if (indices_.empty()) {
    std::string why;
    if (in_file == 0) {
      why = "the file lists none";
    } else {
      const size_t invalid = in_file - coco_.images.size();
      why = fmt::format("of the {} it lists, {} {} invalid (see the warnings above)", in_file,
                        invalid, invalid == 1 ? "is" : "are");
      if (dropped > 0) {
        why += fmt::format(
            " and {} {} no annotation (data.train.keep_empty: true keeps such "
            "images as negatives)",
            dropped, dropped == 1 ? "has" : "have");
      }
    }
    throw util::InputError(fmt::format("{}: no usable images: {}", coco_.source, why));
  }
}

const coco::CocoImage& CocoDetection::image_info(size_t index) const {
  return coco_.images.at(indices_.at(index));
}

Annotated CocoDetection::load(size_t index) const {
  const size_t image_index = indices_.at(index);
  const auto& info = coco_.images[image_index];
  Annotated out;
  const auto path = (std::filesystem::path(options_.images_dir) / info.file_name).string();
  out.image = read_image_rgb(path, options_.exif);
  // The boxes are in the record's pixels: an image of another size (turned by its EXIF tag, or
  // another version of the file) would put them in the wrong place.
  if (out.image.cols != info.width || out.image.rows != info.height) {
    throw util::CorruptInput(
        fmt::format("image {}: '{}' {}", info.id, path,
                    size_mismatch_message(out.image.cols, out.image.rows, info.width, info.height,
                                          options_.exif)));
  }
  for (int32_t a : annotations_[image_index]) {
    const auto& ann = coco_.annotations[static_cast<size_t>(a)];
    if (options_.train && ann.iscrowd) continue;
    const auto& b = ann.bbox;
    out.boxes.push_back({static_cast<float>(b[0]), static_cast<float>(b[1]),
                         static_cast<float>(b[0] + b[2]), static_cast<float>(b[1] + b[3])});
    out.labels.push_back(categories_.label(ann.category_id));
  }
  return out;
}

Annotated CocoDetection::get_annotated(size_t index, uint64_t seed, int64_t epoch) const {
  Annotated sample = load(index);
  if (options_.train) {
    std::mt19937_64 rng(sample_seed(seed, epoch, index));
    apply_train_transforms(sample, options_.transforms, rng);
  } else {
    apply_eval_transforms(sample, options_.transforms);
  }
  return sample;
}

Sample CocoDetection::get(size_t index, uint64_t seed, int64_t epoch) const {
  const auto& info = image_info(index);
  return to_sample(get_annotated(index, seed, epoch), info.id, {info.height, info.width});
}

Sample to_sample(const Annotated& a, int64_t image_id, std::array<int64_t, 2> orig_size) {
  const int64_t h = a.image.rows, w = a.image.cols;
  TORCH_CHECK(a.image.type() == CV_8UC3 && a.image.isContinuous(), "to_sample: expected RGB uint8");
  // One pass from HWC uint8 to normalized CHW float: the loader's hottest loop.
  Sample s;
  s.image = torch::empty({3, h, w}, torch::kFloat32);
  float* out = s.image.data_ptr<float>();
  const int64_t plane = h * w;
  float scale[3], offset[3];
  for (int c = 0; c < 3; ++c) {
    scale[c] = 1.0f / kPixelStd[static_cast<size_t>(c)];
    offset[c] = -kPixelMean[static_cast<size_t>(c)] * scale[c];
  }
  const uint8_t* in = a.image.ptr<uint8_t>();
  for (int64_t p = 0; p < plane; ++p) {
    out[p] = static_cast<float>(in[3 * p]) * scale[0] + offset[0];
    out[plane + p] = static_cast<float>(in[3 * p + 1]) * scale[1] + offset[1];
    out[2 * plane + p] = static_cast<float>(in[3 * p + 2]) * scale[2] + offset[2];
  }
  const auto n = static_cast<int64_t>(a.boxes.size());
  auto xyxy = torch::empty({n, 4}, torch::kFloat32);
  // No boxes: an empty vector's data() may be null, which memcpy may not be given.
  if (n > 0) {
    std::memcpy(xyxy.data_ptr<float>(), a.boxes.data(), sizeof(float) * 4 * static_cast<size_t>(n));
  }
  s.target.boxes = boxes::xyxy_to_cxcywh(boxes::normalize(xyxy, double(h), double(w)));
  s.target.labels = torch::empty({n}, torch::kInt64);
  std::copy(a.labels.begin(), a.labels.end(), s.target.labels.data_ptr<int64_t>());
  s.target.image_id = image_id;
  s.target.orig_size = orig_size;
  s.target.size = {h, w};
  return s;
}

}  // namespace aligndetr::data
