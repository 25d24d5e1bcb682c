#pragma once
// Validation of a COCO dataset against its own records and the image files on disk.
//
// Policy (`OnInvalid`):
//   fail  the first invalid record stops with an InputError naming the file and the id;
//   skip  every invalid record is counted, reported with a warning, and left out
//         (an invalid box drops its annotation; a missing or unreadable image drops the image).
// Boxes that reach outside their image are clipped to it and counted; that alone is not an
// error. A box whose clipped width or height is zero is invalid.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "aligndetr/coco/annotations.h"

namespace aligndetr::data {

enum class OnInvalid { kFail, kSkip };
OnInvalid parse_on_invalid(const std::string& text);  // "fail" | "skip"

struct ValidationOptions {
  OnInvalid on_invalid = OnInvalid::kSkip;
  // Directory holding the images; empty: image files are not checked.
  std::string images_dir;
  // Decode every image fully (finds corrupt and truncated files, costs a full decode);
  // otherwise only existence and the JPEG/PNG start and end markers are checked.
  bool decode_images = false;
  int threads = 0;  // 0: all cores
};

// What validation found, by kind. Keys are stable and appear in `dataset stats --json`.
struct ValidationReport {
  std::map<std::string, int64_t> counts;  // e.g. "box_non_positive_size": 3
  std::vector<std::string> messages;      // one line per problem, naming file and id
  int64_t clipped_boxes = 0;
  void add(const std::string& kind, std::string message);
  int64_t total() const;
};

// Checks the dataset and, under kSkip, removes what is invalid (clipping boxes in place).
// Under kFail throws InputError at the first problem. Problem kinds:
//   duplicate_image_id, duplicate_category_id, duplicate_annotation_id, image_bad_size,
//   annotation_unknown_image, annotation_unknown_category,
//   box_not_finite, box_non_positive_size, box_outside_image (degenerate once clipped),
//   image_missing, image_unreadable.
ValidationReport validate_coco(coco::CocoDataset& dataset, const ValidationOptions& options);

// Checks one image file. Returns an empty string if it is fine, else what is wrong.
std::string check_image_file(const std::string& path, bool decode);

}  // namespace aligndetr::data
