#include "aligndetr/engine/predict.h"

#include <algorithm>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include "aligndetr/data/dataset.h"
#include "aligndetr/model/postprocess.h"
#include "aligndetr/util/atomic_file.h"
#include "aligndetr/util/error.h"
#include "aligndetr/util/json.h"
#include "aligndetr/util/progress.h"
#include "aligndetr/vis/draw.h"

namespace aligndetr {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

}  // namespace

PredictSummary predict_images(model::DetectorImpl& model, const TransformOptions& transforms,
                              const CategoryMap& categories, const torch::Device& device,
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
      throw InputError(fmt::format("no images (.jpg, .png, .bmp) in '{}'", o.input));
  } else {
    throw InputError(fmt::format("input '{}' is neither an image file nor a directory", o.input));
  }
  fs::create_directories(o.out_dir);
  std::vector<std::string> names;
  for (int c = 0; c < model.num_classes(); ++c) {
    names.push_back(c < categories.num_classes() ? categories.name(c) : fmt::format("class {}", c));
  }

  model.eval();
  torch::NoGradGuard no_grad;
  PredictSummary summary;
  std::string results = "[";
  ProgressBar progress(int64_t(files.size()), "predict", "img");
  for (size_t i = 0; i < files.size(); ++i) {
    Annotated sample;
    try {
      sample.image = read_image_rgb(files[i].string());
    } catch (const InputError& e) {
      if (single) throw;
      spdlog::warn("skipped: {}", e.what());
      ++summary.skipped;
      continue;
    }
    const cv::Mat original = sample.image.clone();
    const std::array<int64_t, 2> orig{sample.image.rows, sample.image.cols};
    apply_eval_transforms(sample, transforms);
    const Sample s = to_sample(sample, int64_t(i + 1), orig);
    const auto images = s.image.unsqueeze(0).to(device);
    const auto mask = torch::zeros({1, images.size(2), images.size(3)},
                                   torch::TensorOptions().dtype(torch::kBool).device(device));
    const auto out = model.forward(images, mask, nullptr);
    const auto det =
        model::postprocess(out.decoder.back().logits, out.decoder.back().boxes, {orig}, o.top_k)[0];
    const auto boxes = det.boxes.to(torch::kCPU).contiguous();
    const auto scores = det.scores.to(torch::kCPU).contiguous();
    const auto labels = det.labels.to(torch::kCPU).contiguous();
    std::vector<DrawnBox> drawn;
    for (int64_t k = 0; k < scores.size(0); ++k) {
      const float* b = boxes.data_ptr<float>() + 4 * k;
      const int label = int(labels.data_ptr<int64_t>()[k]);
      const float score = scores.data_ptr<float>()[k];
      const int64_t category =
          label < categories.num_classes() ? categories.category_id(label) : label;
      results += fmt::format(
          "{}\n{{\"image_id\": {}, \"file_name\": \"{}\", \"category_id\": {}, \"bbox\": [{:.2f}, "
          "{:.2f}, {:.2f}, {:.2f}], \"score\": {:.5f}}}",
          summary.detections ? "," : "", i + 1, json_escape(files[i].filename().string()), category,
          b[0], b[1], b[2] - b[0], b[3] - b[1], score);
      ++summary.detections;
      if (score >= o.score_threshold) drawn.push_back({{b[0], b[1], b[2], b[3]}, label, score});
    }
    cv::Mat picture = original;
    draw_boxes(picture, drawn, names);
    write_image_rgb((fs::path(o.out_dir) / files[i].stem()).string() + ".png", picture);
    ++summary.images;
    progress.advance();
  }
  progress.finish();
  summary.results_path = (fs::path(o.out_dir) / "results.json").string();
  write_file_atomic(summary.results_path, results + "\n]\n");
  return summary;
}

}  // namespace aligndetr
