#include "aligndetr/data/stats.h"

#include <unordered_set>

#include <fmt/format.h>

namespace aligndetr::data {

DatasetStats compute_stats(const coco::CocoDataset& ds, ValidationOptions options) {
  DatasetStats s;
  s.images = static_cast<int64_t>(ds.images.size());
  s.annotations = static_cast<int64_t>(ds.annotations.size());
  s.categories = static_cast<int64_t>(ds.categories.size());
  std::unordered_set<int64_t> used;
  std::unordered_set<int64_t> annotated;
  std::map<int64_t, int64_t> per_category;
  for (const auto& a : ds.annotations) {
    s.crowd += a.iscrowd;
    used.insert(a.category_id);
    annotated.insert(a.image_id);
    ++per_category[a.category_id];
  }
  s.categories_used = static_cast<int64_t>(used.size());
  for (const auto& im : ds.images) s.images_without_annotations += !annotated.count(im.id);
  for (const auto& [id, n] : per_category) {
    const auto it = ds.category_lookup.find(id);
    const std::string name = it == ds.category_lookup.end()
                                 ? fmt::format("unknown id {}", id)
                                 : ds.categories[static_cast<size_t>(it->second)].name;
    s.annotations_per_category[name] += n;
  }
  coco::CocoDataset copy = ds;
  options.on_invalid = OnInvalid::kSkip;
  const auto report = validate_coco(copy, options);
  s.invalid = report.counts;
  s.clipped_boxes = report.clipped_boxes;
  return s;
}

std::string DatasetStats::to_json() const {
  std::string invalid_json;
  for (const auto& [kind, n] : invalid) {
    invalid_json += fmt::format("{}\"{}\": {}", invalid_json.empty() ? "" : ", ", kind, n);
  }
  return fmt::format(
      "{{\"images\": {}, \"annotations\": {}, \"crowd\": {}, \"categories\": {}, "
      "\"categories_used\": {}, \"images_without_annotations\": {}, \"clipped_boxes\": {}, "
      "\"invalid\": {{{}}}}}",
      images, annotations, crowd, categories, categories_used, images_without_annotations,
      clipped_boxes, invalid_json);
}

std::string DatasetStats::to_text() const {
  std::string out = fmt::format(
      "images                      {}\n"
      "annotations                 {}\n"
      "  crowd                     {}\n"
      "categories                  {}\n"
      "  in use                    {}\n"
      "images without annotations  {}\n"
      "boxes clipped to the image  {}\n",
      images, annotations, crowd, categories, categories_used, images_without_annotations,
      clipped_boxes);
  if (invalid.empty()) {
    out += "invalid records             none\n";
  } else {
    out += "invalid records\n";
    for (const auto& [kind, n] : invalid) out += fmt::format("  {:<26}{}\n", kind, n);
  }
  return out;
}

}  // namespace aligndetr::data
