#pragma once
// COCO instances files: reading (simdjson, fast and lean on memory), validation and writing.
// Plain C++: no LibTorch, so the evaluator and tools that only need annotations stay light.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aligndetr::coco {

struct CocoImage {
  int64_t id = 0;
  std::string file_name;
  int width = 0;
  int height = 0;
};

struct CocoAnnotation {
  int64_t id = 0;
  int64_t image_id = 0;
  int64_t category_id = 0;
  std::array<double, 4> bbox{};  // x, y, w, h in pixels
  double area = 0.0;             // the file's `area` (segment area); w*h where absent
  bool iscrowd = false;
};

struct CocoCategory {
  int64_t id = 0;
  std::string name;
  std::string supercategory;
};

struct CocoDataset {
  std::vector<CocoImage> images;
  std::vector<CocoAnnotation> annotations;
  std::vector<CocoCategory> categories;
  std::string source;  // the file it was read from, for messages

  // Index of the image with this id, or -1.
  int64_t image_index(int64_t image_id) const;
  // Rebuilds the id -> index lookups; call after editing `images` or `categories`.
  void reindex();
  // Annotation indices of each image, in file order.
  std::vector<std::vector<int32_t>> annotations_by_image() const;

  std::unordered_map<int64_t, int64_t> image_lookup;
  std::unordered_map<int64_t, int64_t> category_lookup;
};

// Reads an instances file. Throws InputError naming the file (and byte offset and line) on
// malformed JSON or on a record missing a required field. Segmentations are skipped unread.
CocoDataset read_coco(const std::string& path);
CocoDataset parse_coco(std::string_view json, const std::string& source_name);

// Writes an instances file (without segmentations) atomically.
void write_coco(const CocoDataset& dataset, const std::string& path);

// Contiguous training labels [0, C) for COCO category ids, in ascending id order (as detectron2).
class CategoryMap {
 public:
  CategoryMap() = default;
  explicit CategoryMap(const std::vector<CocoCategory>& categories);
  int num_classes() const { return static_cast<int>(ids_.size()); }
  // -1 for an unknown id.
  int label(int64_t category_id) const;
  int64_t category_id(int label) const { return ids_.at(static_cast<size_t>(label)); }
  const std::string& name(int label) const { return names_.at(static_cast<size_t>(label)); }

 private:
  std::vector<int64_t> ids_;
  std::vector<std::string> names_;
  std::unordered_map<int64_t, int> labels_;
};

}  // namespace aligndetr::coco
