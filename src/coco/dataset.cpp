// The parts of the COCO annotations module that do not parse JSON: lookups, category labels and
// the writer. Compiled without the readers' AVX2 flags, so they run on any CPU.

#include "aligndetr/coco/annotations.h"

#include <algorithm>

#include <fmt/format.h>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::coco {

void CocoDataset::reindex() {
  image_lookup.clear();
  image_lookup.reserve(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    image_lookup.emplace(images[i].id, static_cast<int64_t>(i));  // first one wins on duplicates
  }
  category_lookup.clear();
  for (size_t i = 0; i < categories.size(); ++i) {
    category_lookup.emplace(categories[i].id, static_cast<int64_t>(i));
  }
}

int64_t CocoDataset::image_index(int64_t image_id) const {
  const auto it = image_lookup.find(image_id);
  return it == image_lookup.end() ? -1 : it->second;
}

std::vector<std::vector<int32_t>> CocoDataset::annotations_by_image() const {
  std::vector<std::vector<int32_t>> out(images.size());
  for (size_t a = 0; a < annotations.size(); ++a) {
    const int64_t i = image_index(annotations[a].image_id);
    if (i >= 0) out[static_cast<size_t>(i)].push_back(static_cast<int32_t>(a));
  }
  return out;
}

void write_coco(const CocoDataset& ds, const std::string& path) {
  std::string out;
  out.reserve(256 + ds.images.size() * 96 + ds.annotations.size() * 128);
  out += "{\n\"images\": [";
  for (size_t i = 0; i < ds.images.size(); ++i) {
    const auto& im = ds.images[i];
    out += fmt::format("{}\n{{\"id\": {}, \"file_name\": \"{}\", \"width\": {}, \"height\": {}}}",
                       i ? "," : "", im.id, util::json_escape(im.file_name), im.width, im.height);
  }
  out += "],\n\"annotations\": [";
  for (size_t i = 0; i < ds.annotations.size(); ++i) {
    const auto& a = ds.annotations[i];
    out += fmt::format(
        "{}\n{{\"id\": {}, \"image_id\": {}, \"category_id\": {}, \"bbox\": [{}, {}, {}, {}], "
        "\"area\": {}, \"iscrowd\": {}}}",
        i ? "," : "", a.id, a.image_id, a.category_id, a.bbox[0], a.bbox[1], a.bbox[2], a.bbox[3],
        a.area, a.iscrowd ? 1 : 0);
  }
  out += "],\n\"categories\": [";
  for (size_t i = 0; i < ds.categories.size(); ++i) {
    const auto& c = ds.categories[i];
    out +=
        fmt::format("{}\n{{\"id\": {}, \"name\": \"{}\", \"supercategory\": \"{}\"}}", i ? "," : "",
                    c.id, util::json_escape(c.name), util::json_escape(c.supercategory));
  }
  out += "]\n}\n";
  util::write_file_atomic(path, out);
}

CategoryMap::CategoryMap(const std::vector<CocoCategory>& categories) {
  std::vector<const CocoCategory*> sorted;
  for (const auto& c : categories) sorted.push_back(&c);
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const CocoCategory* a, const CocoCategory* b) { return a->id < b->id; });
  for (const auto* c : sorted) {
    if (labels_.count(c->id)) continue;
    labels_.emplace(c->id, static_cast<int>(ids_.size()));
    ids_.push_back(c->id);
    names_.push_back(c->name);
  }
}

int CategoryMap::label(int64_t category_id) const {
  const auto it = labels_.find(category_id);
  return it == labels_.end() ? -1 : it->second;
}

}  // namespace aligndetr::coco
