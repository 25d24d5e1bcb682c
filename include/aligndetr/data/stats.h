#pragma once
// Summary statistics of a COCO dataset, as printed by `aligndetr dataset stats`.

#include <cstdint>
#include <map>
#include <string>

#include "aligndetr/data/validate.h"

namespace aligndetr::data {

struct DatasetStats {
  int64_t images = 0;
  int64_t annotations = 0;
  int64_t crowd = 0;
  int64_t categories = 0;
  int64_t categories_used = 0;
  int64_t images_without_annotations = 0;
  int64_t clipped_boxes = 0;
  std::map<std::string, int64_t> invalid;                   // by kind, see validate.h
  std::map<std::string, int64_t> annotations_per_category;  // by category name

  std::string to_json() const;
  std::string to_text() const;
};

// Counts are of the file as written; `invalid` and `clipped_boxes` come from validating a copy
// (image files are checked when options.images_dir is set).
DatasetStats compute_stats(const coco::CocoDataset& dataset, ValidationOptions options);

}  // namespace aligndetr::data
