#include "aligndetr/engine/predict.h"

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/coco/results.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/engine/inference.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
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

}  // namespace

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
      sample.image = data::read_image_rgb(files[i].string());
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
    vis::write_image_rgb((fs::path(o.out_dir) / files[i].stem()).string() + ".png", picture);
    ++summary.images;
    progress.advance();
  }
  progress.finish();
  summary.results_path = (fs::path(o.out_dir) / "results.json").string();
  coco::write_coco_results(results, summary.results_path, file_names);
  return summary;
}

}  // namespace aligndetr::engine
