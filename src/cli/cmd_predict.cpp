// `aligndetr predict`: detect objects in images.

#include <memory>

#include <spdlog/spdlog.h>

#include "aligndetr/engine/evaluation.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/predict.h"
#include "aligndetr/util/error.h"
#include "command.h"
#include "config_args.h"

namespace aligndetr::cli {
namespace {

void setup_predict(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string weights;
    engine::PredictOptions predict;
    bool ignore_names = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "predict",
      "Detect objects in an image or a directory of images: OUT/results.json (COCO results, "
      "with file names) and OUT/<image>.png with boxes, class names and scores drawn "
      "(OUT/<image file name>.png when two inputs share a name, as a.jpg and a.png). OUT must "
      "lie outside the input directory: inputs are never written over");
  args->config.add_to(cmd);
  cmd->add_option("--weights", args->weights, "model_final.pt or a training checkpoint")
      ->required();
  cmd->add_option("--input", args->predict.input, "Image file or directory")->required();
  cmd->add_option("--out", args->predict.out_dir, "Output directory")->required();
  cmd->add_option("--score-thr", args->predict.score_threshold,
                  "Smallest score drawn on the pictures")
      ->check(CLI::Validator(
          [](std::string& text) -> std::string {
            // CLI::Range lets NaN through (no comparison with it is false).
            double v = 0;
            try {
              v = std::stod(text);
            } catch (const std::exception&) {
              return "not a number: " + text;
            }
            return v >= 0.0 && v <= 1.0 ? "" : "must be in [0, 1], got " + text;
          },
          "in [0, 1]"))
      ->capture_default_str();
  cmd->add_option("--top-k", args->predict.top_k, "Detections kept per image in results.json")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--ignore-category-names", args->ignore_names,
                "Name detections by the validation annotations' categories even when they differ "
                "from the class names the weights file records");
  cmd->callback([args] {
    const auto e = engine::make_experiment(args->config.load());
    const auto device = engine::parse_device(e.train.device);
    std::vector<std::string> names;
    const auto model = e.model.load(args->weights, device, &names);
    args->predict.clip_boxes = e.model.clip_boxes;
    args->predict.exif = e.data.val.exif;
    const auto categories =
        engine::predict_categories(*model, names, e.data.val.ann_file, args->ignore_names);
    const auto s =
        engine::predict_images(*model, e.data.val.transforms, categories, device, args->predict);
    spdlog::info("{} image(s), {} detection(s){}; results in {}", s.images, s.detections,
                 s.skipped ? fmt::format(", {} unreadable file(s) skipped", s.skipped) : "",
                 s.results_path);
  });
}

const CommandRegistrar predict_registrar(37, setup_predict);

}  // namespace
}  // namespace aligndetr::cli
