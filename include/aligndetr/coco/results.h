#pragma once
// COCO results files: a JSON array of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}
// records (other fields are skipped), as detectors write them and pycocotools' loadRes reads them.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aligndetr::coco {

// One detection of a results file.
struct Detection {
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels
  double score = 0.0;
};

// Throws InputError naming the file, the record (0-based index) and its byte offset on malformed
// JSON, a missing field, a bbox that is not 4 numbers, or a negative box size or score.
// Whether the ids exist in the ground truth is checked by eval::CocoEvaluator::evaluate().
// Files of several megabytes are parsed on two threads unless `threads` is 1 (<= 0: all cores).
std::vector<Detection> read_coco_results(const std::string& path, int threads = 0);
std::vector<Detection> parse_coco_results(std::string_view json, const std::string& source_name,
                                          int threads = 0);

// Writes the detections atomically, every number in its shortest form that reads back exactly.
// With `file_names`, each record of an image listed there also carries its "file_name".
void write_coco_results(const std::vector<Detection>& detections, const std::string& path,
                        const std::unordered_map<int64_t, std::string>& file_names = {});

}  // namespace aligndetr::coco
