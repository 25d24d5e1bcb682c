#pragma once
// A COCO detection dataset: validated annotations, contiguous labels, decoded and transformed
// samples. Sample i of epoch e is a pure function of (seed, e, i).

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/batch.h"
#include "aligndetr/data/transforms.h"
#include "aligndetr/data/validate.h"

namespace aligndetr::data {

struct DatasetOptions {
  std::string ann_file;
  std::string images_dir;
  bool train = true;       // training transforms and targets (crowd boxes dropped)
  bool drop_empty = true;  // training only: leave out images without a non-crowd box
  OnInvalid on_invalid = OnInvalid::kSkip;
  ExifOrientation exif = ExifOrientation::kApply;  // data.exif_orientation
  TransformOptions transforms;
};

class CocoDetection {
 public:
  explicit CocoDetection(DatasetOptions options);

  size_t size() const { return indices_.size(); }
  // Decoded image (RGB) with its boxes (pixel xyxy) and labels, before any transform. Throws
  // CorruptInput naming the file when it cannot be decoded or is not of its record's size.
  Annotated load(size_t index) const;
  // The transformed, normalized sample; augmentation drawn from (seed, epoch, index).
  Sample get(size_t index, uint64_t seed, int64_t epoch) const;
  // The transformed image (uint8 RGB) and boxes, before normalization.
  Annotated get_annotated(size_t index, uint64_t seed, int64_t epoch) const;

  const coco::CocoImage& image_info(size_t index) const;
  const coco::CocoDataset& coco() const { return coco_; }
  const coco::CategoryMap& categories() const { return categories_; }
  const ValidationReport& validation() const { return report_; }
  const DatasetOptions& options() const { return options_; }

 private:
  DatasetOptions options_;
  coco::CocoDataset coco_;
  coco::CategoryMap categories_;
  ValidationReport report_;
  std::vector<size_t> indices_;                    // dataset index -> image index
  std::vector<std::vector<int32_t>> annotations_;  // per image index
};

// Decodes an image file to RGB, turned by its EXIF orientation tag or not as `exif` says. Throws
// InputError naming the file when it cannot be opened, CorruptInput when it cannot be decoded.
cv::Mat read_image_rgb(const std::string& path, ExifOrientation exif = ExifOrientation::kApply);

// Converts a transformed sample to tensors (normalized image, normalized cxcywh boxes).
Sample to_sample(const Annotated& annotated, int64_t image_id, std::array<int64_t, 2> orig_size);

// The generator for sample `index` of `epoch`: depends on nothing else.
uint64_t sample_seed(uint64_t seed, int64_t epoch, uint64_t index);

}  // namespace aligndetr::data
