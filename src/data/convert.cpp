#include "aligndetr/data/convert.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <pugixml.hpp>

#include "aligndetr/util/error.h"

namespace aligndetr::data {

namespace fs = std::filesystem;

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") + 1 - begin);
}

std::vector<fs::path> files_with(const std::string& dir, const std::set<std::string>& extensions,
                                 const char* what) {
  if (!fs::is_directory(dir)) {
    throw util::InputError(fmt::format("{} directory '{}' not found", what, dir));
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && extensions.count(lower(entry.path().extension().string()))) {
      files.push_back(entry.path());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

coco::CocoDataset with_categories(const std::vector<std::string>& classes) {
  coco::CocoDataset d;
  for (size_t i = 0; i < classes.size(); ++i) {
    d.categories.push_back({int64_t(i + 1), classes[i], ""});
  }
  return d;
}

coco::CocoAnnotation box(int64_t id, int64_t image_id, int64_t category_id, double x, double y,
                         double w, double h, bool crowd) {
  coco::CocoAnnotation a;
  a.id = id;
  a.image_id = image_id;
  a.category_id = category_id;
  a.bbox = {x, y, w, h};
  a.area = w * h;
  a.iscrowd = crowd;
  return a;
}

// A VOC element's number; InputError naming the file and the field otherwise.
double number(const pugi::xml_node& parent, const char* name, const std::string& where) {
  const auto node = parent.child(name);
  const std::string text = trim(node.child_value());
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (!node || text.empty() || *end != '\0' || !std::isfinite(v)) {
    throw util::InputError(fmt::format("{}: <{}> is not a number ('{}')", where, name, text));
  }
  return v;
}

}  // namespace

std::vector<std::string> read_class_names(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw util::InputError(fmt::format("class list '{}' not found", path));
  std::vector<std::string> names;
  std::set<std::string> seen;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto name = trim(line);
    if (name.empty()) continue;
    if (!seen.insert(name).second) {
      throw util::InputError(fmt::format("{}:{}: class '{}' is listed twice", path, number, name));
    }
    names.push_back(name);
  }
  if (names.empty()) throw util::InputError(fmt::format("class list '{}' names no class", path));
  return names;
}

coco::CocoDataset convert_yolo(const std::string& images_dir, const std::string& labels_dir,
                               const std::vector<std::string>& classes) {
  if (!fs::is_directory(labels_dir)) {
    throw util::InputError(fmt::format("labels directory '{}' not found", labels_dir));
  }
  auto d = with_categories(classes);
  for (const auto& image : files_with(images_dir, {".jpg", ".jpeg", ".png", ".bmp"}, "images")) {
    // Decoded as training reads it (EXIF orientation applied), so width and height agree.
    const cv::Mat decoded = cv::imread(image.string(), cv::IMREAD_COLOR);
    if (decoded.empty()) {
      throw util::InputError(fmt::format("'{}' cannot be decoded as an image", image.string()));
    }
    coco::CocoImage im;
    im.id = int64_t(d.images.size() + 1);
    im.file_name = fs::relative(image, images_dir).string();
    im.width = decoded.cols;
    im.height = decoded.rows;
    d.images.push_back(im);
    const fs::path label = fs::path(labels_dir) / (image.stem().string() + ".txt");
    std::ifstream in(label);
    if (!in) continue;  // a background image
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      if (trim(line).empty()) continue;
      const std::string where = fmt::format("{}:{}", label.string(), number);
      std::istringstream fields(line);
      std::vector<double> v;
      std::string field;
      while (fields >> field) {
        char* end = nullptr;
        const double x = std::strtod(field.c_str(), &end);
        if (*end != '\0' || !std::isfinite(x)) {
          throw util::InputError(fmt::format("{}: '{}' is not a number", where, field));
        }
        v.push_back(x);
      }
      if (v.size() != 5) {
        throw util::InputError(
            fmt::format("{}: expected 5 numbers (class cx cy w h), got {}", where, v.size()));
      }
      if (v[0] != std::floor(v[0]) || v[0] < 0 || v[0] >= double(classes.size())) {
        throw util::InputError(fmt::format("{}: class {} is not one of the {} classes (0..{})",
                                           where, v[0], classes.size(), classes.size() - 1));
      }
      const double w = v[3] * im.width, h = v[4] * im.height;
      d.annotations.push_back(box(int64_t(d.annotations.size() + 1), im.id, int64_t(v[0]) + 1,
                                  v[1] * im.width - w / 2, v[2] * im.height - h / 2, w, h, false));
    }
  }
  d.reindex();
  return d;
}

coco::CocoDataset convert_voc(const std::string& annotations_dir,
                              const std::vector<std::string>& classes) {
  auto d = with_categories(classes);
  for (const auto& file : files_with(annotations_dir, {".xml"}, "annotations")) {
    pugi::xml_document doc;
    const auto parsed = doc.load_file(file.string().c_str());
    if (!parsed) {
      throw util::InputError(fmt::format("{}: malformed XML at byte {}: {}", file.string(),
                                         parsed.offset, parsed.description()));
    }
    const auto root = doc.child("annotation");
    if (!root) throw util::InputError(fmt::format("{}: no <annotation> element", file.string()));
    coco::CocoImage im;
    im.id = int64_t(d.images.size() + 1);
    im.file_name = trim(root.child("filename").child_value());
    if (im.file_name.empty()) {
      throw util::InputError(fmt::format("{}: no <filename>", file.string()));
    }
    const auto size = root.child("size");
    im.width = int(number(size, "width", file.string() + ": <size>"));
    im.height = int(number(size, "height", file.string() + ": <size>"));
    d.images.push_back(im);
    int index = 0;
    for (const auto object : root.children("object")) {
      const std::string where = fmt::format("{}: object {}", file.string(), index++);
      const std::string name = trim(object.child("name").child_value());
      const auto it = std::find(classes.begin(), classes.end(), name);
      if (it == classes.end()) {
        throw util::InputError(fmt::format("{}: class '{}' is not in the class list", where, name));
      }
      const auto bndbox = object.child("bndbox");
      const double xmin = number(bndbox, "xmin", where), ymin = number(bndbox, "ymin", where);
      const double xmax = number(bndbox, "xmax", where), ymax = number(bndbox, "ymax", where);
      const bool difficult = trim(object.child("difficult").child_value()) == "1";
      d.annotations.push_back(box(int64_t(d.annotations.size() + 1), im.id,
                                  int64_t(it - classes.begin()) + 1, xmin - 1, ymin - 1,
                                  xmax - xmin + 1, ymax - ymin + 1, difficult));
    }
  }
  d.reindex();
  return d;
}

}  // namespace aligndetr::data
