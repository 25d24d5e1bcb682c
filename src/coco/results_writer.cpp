// The results writer: compiled without the readers' AVX2 flags, so it runs on any CPU.

#include <cmath>
#include <iterator>

#include <fmt/format.h>

#include "aligndetr/coco/results.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::coco {

void write_coco_results(const std::vector<Detection>& detections, const std::string& path,
                        const std::unordered_map<int64_t, std::string>& file_names) {
  fmt::memory_buffer out;
  out.reserve(detections.size() * 110 + 4);
  out.push_back('[');
  for (size_t i = 0; i < detections.size(); ++i) {
    const Detection& d = detections[i];
    if (!std::isfinite(d.bbox[0]) || !std::isfinite(d.bbox[1]) || !std::isfinite(d.bbox[2]) ||
        !std::isfinite(d.bbox[3]) || !std::isfinite(d.score)) {
      throw util::InputError(
          fmt::format("{}: detection {} has a non-finite number, which JSON cannot hold", path, i));
    }
    fmt::format_to(std::back_inserter(out), "{}{{\"image_id\": {}, ", i ? ",\n" : "", d.image_id);
    if (const auto name = file_names.find(d.image_id); name != file_names.end()) {
      fmt::format_to(std::back_inserter(out), "\"file_name\": \"{}\", ",
                     util::json_escape(name->second));
    }
    fmt::format_to(std::back_inserter(out),
                   "\"category_id\": {}, \"bbox\": [{}, {}, {}, {}], \"score\": {}}}",
                   d.category_id, d.bbox[0], d.bbox[1], d.bbox[2], d.bbox[3], d.score);
  }
  out.append(std::string_view("]\n"));
  util::write_file_atomic(path, std::string_view(out.data(), out.size()));
}

}  // namespace aligndetr::coco
