#include "aligndetr/coco/annotations.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>
#include <simdjson.h>

#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"

namespace aligndetr::coco {

namespace od = simdjson::ondemand;

namespace {

std::string as_string(od::value v) {
  const std::string_view s = v.get_string();
  return std::string(s);
}

// An integer field: ids, sizes, flags. Some writers emit them as 12.0, which is accepted; a
// value the field cannot hold exactly is an error naming it, never a wrapped or rounded one
// (width 4294967297 read as 1, ids 1e20 and 2e20 read as one id).
int64_t get_int(od::value v, const char* field, int64_t lo = INT64_MIN, int64_t hi = INT64_MAX) {
  if (v.type() != od::json_type::number) throw simdjson::simdjson_error(simdjson::INCORRECT_TYPE);
  od::number n = v.get_number();
  int64_t out = 0;
  bool exact = true;
  if (n.is_int64()) {
    out = n.get_int64();
  } else if (n.is_uint64()) {
    exact = false;  // above INT64_MAX
  } else {
    const double d = n.get_double();
    // Doubles hold every integer up to 2^53 exactly, and none is guaranteed above.
    exact = std::floor(d) == d && std::abs(d) <= 9007199254740992.0;
    if (!exact && std::floor(d) != d) {
      throw util::InputError(fmt::format("\"{}\" is {}, not an integer", field, d));
    }
    out = exact ? static_cast<int64_t>(d) : 0;
  }
  if (!exact || out < lo || out > hi) {
    throw util::InputError(
        fmt::format("\"{}\" {} is outside the range this field can hold "
                    "([{}, {}])",
                    field, std::string_view(v.raw_json_token()), lo, hi));
  }
  return out;
}

CocoImage parse_image(od::object obj) {
  CocoImage img;
  bool has_id = false;
  for (auto field : obj) {
    const std::string_view key = field.unescaped_key();
    if (key == "id") {
      img.id = get_int(field.value(), "id");
      has_id = true;
    } else if (key == "file_name") {
      img.file_name = as_string(field.value());
    } else if (key == "width") {
      img.width = static_cast<int>(get_int(field.value(), "width", INT32_MIN, INT32_MAX));
    } else if (key == "height") {
      img.height = static_cast<int>(get_int(field.value(), "height", INT32_MIN, INT32_MAX));
    }
  }
  if (!has_id) throw util::InputError("an image record has no \"id\"");
  return img;
}

CocoAnnotation parse_annotation(od::object obj) {
  CocoAnnotation ann;
  bool has_id = false, has_image = false, has_cat = false, has_bbox = false, has_area = false;
  for (auto field : obj) {
    const std::string_view key = field.unescaped_key();
    if (key == "id") {
      ann.id = get_int(field.value(), "id");
      has_id = true;
    } else if (key == "image_id") {
      ann.image_id = get_int(field.value(), "image_id");
      has_image = true;
    } else if (key == "category_id") {
      ann.category_id = get_int(field.value(), "category_id");
      has_cat = true;
    } else if (key == "bbox") {
      size_t i = 0;
      for (auto x : field.value().get_array()) {
        if (i < 4) ann.bbox[i] = x.get_double();
        ++i;
      }
      if (i != 4) {
        throw util::InputError(fmt::format("annotation {} has a bbox of {} numbers, not 4",
                                           has_id ? std::to_string(ann.id) : "?", i));
      }
      has_bbox = true;
    } else if (key == "area") {
      ann.area = field.value().get_double();
      has_area = true;
    } else if (key == "iscrowd") {
      ann.iscrowd = get_int(field.value(), "iscrowd") != 0;
    }
  }
  const std::string id = has_id ? std::to_string(ann.id) : "without id";
  if (!has_id || !has_image || !has_cat || !has_bbox) {
    throw util::InputError(
        fmt::format("annotation {} lacks one of id, image_id, category_id, bbox", id));
  }
  if (!has_area) ann.area = ann.bbox[2] * ann.bbox[3];
  return ann;
}

CocoCategory parse_category(od::object obj) {
  CocoCategory cat;
  bool has_id = false;
  for (auto field : obj) {
    const std::string_view key = field.unescaped_key();
    if (key == "id") {
      cat.id = get_int(field.value(), "id");
      has_id = true;
    } else if (key == "name") {
      cat.name = as_string(field.value());
    } else if (key == "supercategory") {
      cat.supercategory = as_string(field.value());
    }
  }
  if (!has_id) throw util::InputError("a category record has no \"id\"");
  return cat;
}

// End (one past) of the array or object starting at data[i]; size if it never closes.
size_t skip_container(const char* data, size_t size, size_t i) {
  int depth = 0;
  while (i < size) {
    const char c = data[i++];
    if (c == '"') {
      while (i < size && data[i] != '"') i += data[i] == '\\' ? 2 : 1;
      ++i;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && --depth == 0) {
      return i;
    }
  }
  return size;
}

// Replaces every "segmentation" value by an empty array padded with spaces. Polygons are most of
// a COCO file's numbers; spaces are no structural characters to the parser, so its index of
// structural positions (4 bytes each) stays small. This halves peak memory on train2017.
void blank_segmentations(char* data, size_t size) {
  static constexpr std::string_view kKey = "\"segmentation\"";
  simdjson::dom::parser validator;
  const std::string_view text(data, size);
  size_t pos = text.find(kKey);
  while (pos != std::string_view::npos) {
    size_t i = pos + kKey.size();
    while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
      ++i;
    const bool is_key = (pos == 0 || data[pos - 1] != '\\') && i < size && data[i] == ':';
    if (is_key) {
      ++i;
      while (i < size && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
        ++i;
      if (i < size && (data[i] == '[' || data[i] == '{')) {
        const size_t end = skip_container(data, size, i);
        // Blanked, the value is never parsed: it is checked first, so that a malformed one is
        // an error as anywhere else in the file.
        if (end < size && validator.parse(data + i, end - i).error() != simdjson::SUCCESS) {
          throw util::InputError(fmt::format("malformed JSON in a \"segmentation\" value at {}",
                                             util::json_location(data, size, data + i)));
        }
        if (end < size && end - i >= 2) {
          data[i] = '[';
          data[i + 1] = ']';
          std::fill(data + i + 2, data + end, ' ');
        }
        i = end;
      }
    }
    pos = text.find(kKey, i);
  }
}

CocoDataset parse_padded(simdjson::padded_string& json, const std::string& source) {
  util::check_json_cpu_support();
  try {
    blank_segmentations(json.data(), json.size());
  } catch (const util::InputError& e) {
    throw util::InputError(fmt::format("{}: {}", source, e.what()));
  }
  CocoDataset ds;
  ds.source = source;
  od::parser parser;
  od::document doc;
  const char* base = json.data();
  const char* at = base;
  bool started = false;  // a document that failed to start (an empty file) has no location
  try {
    doc = parser.iterate(json);
    started = true;
    bool has_images = false, has_annotations = false;
    for (auto field : doc.get_object()) {
      const std::string_view key = field.unescaped_key();
      if (key == "images") {
        has_images = true;
        for (auto v : field.value().get_array()) ds.images.push_back(parse_image(v.get_object()));
      } else if (key == "annotations") {
        has_annotations = true;
        for (auto v : field.value().get_array()) {
          ds.annotations.push_back(parse_annotation(v.get_object()));
        }
      } else if (key == "categories") {
        for (auto v : field.value().get_array()) {
          ds.categories.push_back(parse_category(v.get_object()));
        }
      }
    }
    // At the document's end the iterator has no location left; anything else is more content.
    const char* rest = nullptr;
    if (doc.current_location().get(rest) == simdjson::SUCCESS) {
      throw util::InputError("content after the end of the JSON document");
    }
    if (!has_images) throw util::InputError("no \"images\" array");
    if (!has_annotations) throw util::InputError("no \"annotations\" array");
  } catch (const simdjson::simdjson_error& e) {
    const char* loc = nullptr;
    if (started && doc.current_location().get(loc) == simdjson::SUCCESS) at = loc;
    if (at == base) {
      // No position to give: the parser refused the document as a whole.
      throw util::InputError(fmt::format(
          "{}: malformed COCO JSON ({}): the file is cut short, holds more than one document, or "
          "is not JSON",
          source, e.what()));
    }
    throw util::InputError(fmt::format("{}: malformed COCO JSON at {}: {}", source,
                                       util::json_location(base, json.size(), at), e.what()));
  } catch (const util::InputError& e) {
    const char* loc = nullptr;
    if (started && doc.current_location().get(loc) == simdjson::SUCCESS) at = loc;
    throw util::InputError(fmt::format("{}: invalid COCO record near {}: {}", source,
                                       util::json_location(base, json.size(), at), e.what()));
  }
  ds.reindex();
  return ds;
}

}  // namespace

CocoDataset read_coco(const std::string& path) {
  simdjson::padded_string json;
  if (const auto err = simdjson::padded_string::load(path).get(json)) {
    throw util::InputError(fmt::format(
        "cannot read COCO file '{}': {}", path,
        err == simdjson::IO_ERROR ? "no such file or unreadable" : simdjson::error_message(err)));
  }
  return parse_padded(json, path);
}

CocoDataset parse_coco(std::string_view json, const std::string& source_name) {
  simdjson::padded_string padded(json);
  return parse_padded(padded, source_name);
}

}  // namespace aligndetr::coco
