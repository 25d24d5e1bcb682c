#include "aligndetr/engine/predict.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/coco/results.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/engine/evaluation.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"
#include "aligndetr/util/progress.h"
#include "aligndetr/vis/draw.h"

namespace aligndetr::engine {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

// Whether `inner` is `outer` or lies under it (both made absolute, links resolved where they
// exist).
bool within(const fs::path& inner, const fs::path& outer) {
  const auto rel = fs::weakly_canonical(fs::absolute(inner))
                       .lexically_relative(fs::weakly_canonical(fs::absolute(outer)));
  return !rel.empty() && *rel.begin() != "..";
}

// The outputs may never replace an input: --out must lie outside the input directory and, for one
// image, must not be its own directory when the picture would take its name.
void check_output_location(const PredictOptions& o, bool single, const fs::path& first_file) {
  std::error_code ec;
  if (fs::exists(o.out_dir, ec) && !fs::is_directory(o.out_dir, ec)) {
    throw util::InputError(fmt::format("--out '{}' is a file, not a directory", o.out_dir));
  }
  if (!single && within(o.out_dir, o.input)) {
    throw util::InputError(fmt::format(
        "--out '{}' is inside the input directory '{}': the pictures would mix with (and could "
        "replace) the images; choose a directory outside it",
        o.out_dir, o.input));
  }
  if (single && within(fs::path(o.out_dir) / (first_file.stem().string() + ".png"), first_file)) {
    throw util::InputError(fmt::format(
        "--out '{}' would write the picture over the input '{}'; choose another directory",
        o.out_dir, o.input));
  }
}

// A picture name per input, in input order: <stem>.png, or <file name>.png when two inputs share
// a stem (a.jpg, a.png), with a counter if even that is taken.
std::vector<std::string> picture_names(const std::vector<fs::path>& files) {
  std::unordered_map<std::string, int> stems;
  for (const auto& f : files) ++stems[f.stem().string()];
  std::set<std::string> used;
  std::vector<std::string> out;
  for (const auto& f : files) {
    std::string name = f.stem().string() + ".png";
    if (stems[f.stem().string()] > 1 || used.count(name)) name = f.filename().string() + ".png";
    for (int k = 2; used.count(name); ++k) name = fmt::format("{}_{}.png", f.stem().string(), k);
    used.insert(name);
    out.push_back(name);
  }
  return out;
}

// results.json carries file names as JSON strings, which must be UTF-8.
void check_utf8_names(const std::vector<fs::path>& files) {
  for (const auto& f : files) {
    const std::string name = f.filename().string();
    if (util::is_valid_utf8(name)) continue;
    std::string shown;
    for (unsigned char c : name) {
      shown += c >= 0x20 && c < 0x7f ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
    }
    throw util::InputError(fmt::format(
        "image file name '{}' in '{}' is not UTF-8, which results.json (JSON) cannot hold; "
        "rename the file",
        shown, f.parent_path().string()));
  }
}

}  // namespace

coco::CategoryMap predict_categories(const model::DetectorImpl& model,
                                     const std::vector<std::string>& names,
                                     const std::string& ann_file, bool ignore_names) {
  coco::CocoDataset annotations;
  try {
    annotations = coco::read_coco(ann_file);
  } catch (const util::InputError& err) {
    if (names.size() != size_t(model.num_classes())) {
      spdlog::warn("no class names ({}); using class indices", err.what());
      return {};
    }
    spdlog::warn("{}; naming classes as the weights file does, category ids are the labels",
                 err.what());
    std::vector<coco::CocoCategory> categories(names.size());
    for (size_t k = 0; k < names.size(); ++k) {
      categories[k].id = int64_t(k);
      categories[k].name = names[k];
    }
    return coco::CategoryMap(categories);
  }
  coco::CategoryMap categories(annotations.categories);
  check_categories(model.num_classes(), names, categories, annotations.source, ignore_names);
  return categories;
}

PredictSummary predict_images(model::DetectorImpl& model, const data::TransformOptions& transforms,
                              const coco::CategoryMap& categories, const torch::Device& device,
                              const PredictOptions& o) {
  std::vector<fs::path> files;
  const bool single = fs::is_regular_file(o.input);
  if (single) {
    files.push_back(o.input);
  } else if (fs::is_directory(o.input)) {
    for (const auto& entry : fs::directory_iterator(o.input)) {
      if (entry.is_regular_file() && is_image_file(entry.path())) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    if (files.empty())
      throw util::InputError(fmt::format("no images (.jpg, .png, .bmp) in '{}'", o.input));
  } else {
    throw util::InputError(
        fmt::format("input '{}' is neither an image file nor a directory", o.input));
  }
  check_output_location(o, single, files.front());
  check_utf8_names(files);
  const auto pictures = picture_names(files);
  fs::create_directories(o.out_dir);
  std::vector<std::string> names;
  for (int c = 0; c < model.num_classes(); ++c) {
    names.push_back(c < categories.num_classes() ? categories.name(c) : fmt::format("class {}", c));
  }

  model.eval();
  torch::NoGradGuard no_grad;
  PredictSummary summary;
  std::vector<coco::Detection> results;
  std::unordered_map<int64_t, std::string> file_names;
  util::ProgressBar progress(int64_t(files.size()), "predict", "img");
  for (size_t i = 0; i < files.size(); ++i) {
    data::Annotated sample;
    try {
      sample.image = data::read_image_rgb(files[i].string(), o.exif);
    } catch (const util::InputError& e) {
      if (single) throw;
      spdlog::warn("skipped: {}", e.what());
      ++summary.skipped;
      continue;
    }
    const cv::Mat original = sample.image.clone();
    const std::array<int64_t, 2> orig{sample.image.rows, sample.image.cols};
    data::apply_eval_transforms(sample, transforms);
    const int64_t image_id = int64_t(i + 1);
    const data::Sample s = data::to_sample(sample, image_id, orig);
    const auto images = s.image.unsqueeze(0).to(device);
    const auto mask = torch::zeros({1, images.size(2), images.size(3)},
                                   torch::TensorOptions().dtype(torch::kBool).device(device));
    const auto out = model.forward(images, mask, nullptr);
    std::vector<int> labels;
    model::PostprocessOptions postprocess;
    postprocess.top_k = o.top_k;
    postprocess.clip_boxes = o.clip_boxes;
    const auto dets = to_coco_detections(out, {s.target}, categories, postprocess, &labels);
    std::vector<vis::DrawnBox> drawn;
    for (size_t k = 0; k < dets.size(); ++k) {
      const auto& d = dets[k];
      if (d.score < o.score_threshold) continue;
      drawn.push_back({{float(d.bbox[0]), float(d.bbox[1]), float(d.bbox[0] + d.bbox[2]),
                        float(d.bbox[1] + d.bbox[3])},
                       labels[k],
                       float(d.score)});
    }
    results.insert(results.end(), dets.begin(), dets.end());
    file_names[image_id] = files[i].filename().string();
    summary.detections += int64_t(dets.size());
    cv::Mat picture = original;
    vis::draw_boxes(picture, drawn, names);
    vis::write_image_rgb((fs::path(o.out_dir) / pictures[i]).string(), picture);
    ++summary.images;
    progress.advance();
  }
  progress.finish();
  summary.results_path = (fs::path(o.out_dir) / "results.json").string();
  coco::write_coco_results(results, summary.results_path, file_names);
  return summary;
}

}  // namespace aligndetr::engine
