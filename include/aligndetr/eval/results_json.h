#pragma once
// COCO results files: a JSON array of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}
// records (other fields are skipped), as detectors write them and pycocotools' loadRes reads them.

#include <string>
#include <string_view>
#include <vector>

#include "aligndetr/eval/coco_eval.h"

namespace aligndetr {

// Throws InputError naming the file, the record (0-based index) and its byte offset on malformed
// JSON, a missing field, a bbox that is not 4 numbers, or a negative box size or score.
// Whether the ids exist in the ground truth is checked by CocoEvaluator::evaluate().
// Files of several megabytes are parsed on two threads unless `threads` is 1 (<= 0: all cores).
std::vector<Detection> read_coco_results(const std::string& path, int threads = 0);
std::vector<Detection> parse_coco_results(std::string_view json, const std::string& source_name,
                                          int threads = 0);

// Writes the detections atomically, every number in its shortest form that reads back exactly.
void write_coco_results(const std::vector<Detection>& detections, const std::string& path);

}  // namespace aligndetr
