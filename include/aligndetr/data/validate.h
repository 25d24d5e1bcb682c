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

// A JPEG's EXIF orientation tag (`data.exif_orientation`): kApply turns the pixels as a viewer
// shows them (detectron2, and so detrex and the Align-DETR release); kIgnore keeps the stored
// pixels (PIL-based pipelines: the official DETR and DINO). Whichever is chosen, the annotations
// must describe those pixels: an image whose decoded size is not its record's width and height is
// an invalid record (`image_size_mismatch`), never silently rescaled.
enum class ExifOrientation { kApply, kIgnore };
ExifOrientation parse_exif_orientation(const std::string& text);  // "apply" | "ignore"

struct ValidationOptions {
  OnInvalid on_invalid = OnInvalid::kSkip;
  // Directory holding the images; empty: image files are not checked.
  std::string images_dir;
  // Decode every image fully (finds corrupt and truncated files, costs a full decode);
  // otherwise only existence and the JPEG/PNG start and end markers are checked.
  // Full decodes also compare each image's decoded size with its record's width and height, the
  // pixels turned (or not) as this says, and treat libjpeg's warnings as unreadable data.
  bool decode_images = false;
  ExifOrientation exif = ExifOrientation::kApply;
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
//   image_missing, image_unreadable, image_size_mismatch (full decodes only).
ValidationReport validate_coco(coco::CocoDataset& dataset, const ValidationOptions& options);

// What is wrong with one image file; empty when nothing is.
struct ImageCheck {
  std::string problem;
  bool size_mismatch = false;  // decoded fine, but not at the expected size
};

// Checks one image file. With `decode`, decodes it in full (libjpeg's warnings are problems) and,
// when expected_width and expected_height are positive, compares its size with them.
ImageCheck check_image_file(const std::string& path, bool decode,
                            ExifOrientation exif = ExifOrientation::kApply,
                            int64_t expected_width = 0, int64_t expected_height = 0);

// Why an image decoded to width x height when its record says expected_width x expected_height,
// with what to do about it (e.g. that turning it by its EXIF tag, or not, gives the record's size).
std::string size_mismatch_message(int64_t width, int64_t height, int64_t expected_width,
                                  int64_t expected_height, ExifOrientation exif);

// cv::imdecode's flags for a colour image under the orientation policy.
int imdecode_flags(ExifOrientation exif);

}  // namespace aligndetr::data
