// `aligndetr dataset stats|show|convert`: inspect a COCO dataset, or write one from YOLO or VOC.

#include <cstdio>
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "aligndetr/coco/annotations.h"
#include "aligndetr/data/convert.h"
#include "aligndetr/data/dataset.h"
#include "aligndetr/data/stats.h"
#include "aligndetr/vis/preview.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

void add_policy_option(CLI::App* cmd, std::string& policy) {
  cmd->add_option("--on-invalid", policy,
                  "What to do with an invalid record (bad box, unknown category or image id, "
                  "duplicate image id, missing or unreadable image): 'skip' warns and leaves it "
                  "out, 'fail' stops with an error")
      ->check(CLI::IsMember({"skip", "fail"}))
      ->capture_default_str();
}

void setup_stats(CLI::App* dataset) {
  struct Args {
    std::string ann, images, exif = "apply";
    bool json = false, decode = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = dataset->add_subcommand(
      "stats",
      "Count images, annotations, crowd boxes, categories (all and in use), images without "
      "annotations, clipped boxes, and invalid records by kind");
  cmd->add_option("--ann", args->ann, "COCO instances JSON")->required();
  cmd->add_option("--images", args->images,
                  "Image directory; when given, every image file is checked (existence, JPEG "
                  "start and end markers)");
  cmd->add_flag("--decode", args->decode,
                "With --images: decode every image fully (slower): finds corrupt data inside "
                "files (libjpeg's warnings included) and images whose decoded size is not their "
                "record's width and height");
  cmd->add_option("--exif-orientation", args->exif,
                  "With --decode: 'apply' turns JPEGs by their EXIF orientation tag as training "
                  "does by default, 'ignore' keeps the stored pixels (data.exif_orientation)")
      ->check(CLI::IsMember({"apply", "ignore"}))
      ->capture_default_str();
  cmd->add_flag("--json", args->json,
                "Print one JSON object (keys images, annotations, crowd, categories, "
                "categories_used, images_without_annotations, clipped_boxes, invalid)");
  cmd->callback([args] {
    const coco::CocoDataset ds = coco::read_coco(args->ann);
    data::ValidationOptions options;
    options.images_dir = args->images;
    options.decode_images = args->decode;
    options.exif = data::parse_exif_orientation(args->exif);
    const data::DatasetStats s = data::compute_stats(ds, options);
    std::printf("%s\n", args->json ? s.to_json().c_str() : s.to_text().c_str());
  });
}

void setup_show(CLI::App* dataset) {
  struct Args {
    std::string ann, images, policy = "skip";
    vis::PreviewOptions preview;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = dataset->add_subcommand(
      "show", "Draw the ground-truth boxes with class names on the first images");
  cmd->add_option("--ann", args->ann, "COCO instances JSON")->required();
  cmd->add_option("--images", args->images, "Image directory")->required();
  cmd->add_option("--out", args->preview.out_dir, "Output directory for the PNGs")->required();
  cmd->add_option("--limit", args->preview.limit, "Number of images")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_flag("--augment", args->preview.augment,
                "Apply the training transforms (flip, resize, crop) before drawing");
  cmd->add_option("--seed", args->preview.seed, "Augmentation seed")->capture_default_str();
  add_policy_option(cmd, args->policy);
  cmd->callback([args] {
    data::DatasetOptions options;
    options.ann_file = args->ann;
    options.images_dir = args->images;
    options.train = args->preview.augment;
    options.drop_empty = false;
    options.on_invalid = data::parse_on_invalid(args->policy);
    const data::CocoDetection dataset(options);
    const int n = vis::render_preview(dataset, args->preview);
    spdlog::info("wrote {} image(s) to {}", n, args->preview.out_dir);
  });
}

void setup_convert(CLI::App* dataset) {
  struct Args {
    std::string from, images, labels, ann, classes, out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = dataset->add_subcommand(
      "convert",
      "Write a COCO instances file from YOLO labels (one 'class cx cy w h' line per box, "
      "normalized; an image without a label file is a background image) or Pascal VOC XML. "
      "Category ids are 1, 2, ... in the order of --classes");
  cmd->add_option("--from", args->from, "Source format")
      ->required()
      ->check(CLI::IsMember({"yolo", "voc"}));
  cmd->add_option("--images", args->images,
                  "Image directory (YOLO; file names are relative to it)");
  cmd->add_option("--labels", args->labels, "YOLO label directory (<image stem>.txt)");
  cmd->add_option("--ann", args->ann, "VOC annotation directory (one .xml per image)");
  cmd->add_option("--classes", args->classes, "Class names, one per line")->required();
  cmd->add_option("--out", args->out, "COCO instances file to write")->required();
  cmd->callback([args] {
    const auto classes = data::read_class_names(args->classes);
    coco::CocoDataset converted;
    if (args->from == "yolo") {
      if (args->images.empty() || args->labels.empty()) {
        throw CLI::ValidationError("--from yolo", "needs --images and --labels");
      }
      converted = data::convert_yolo(args->images, args->labels, classes);
    } else {
      if (args->ann.empty()) throw CLI::ValidationError("--from voc", "needs --ann");
      converted = data::convert_voc(args->ann, classes);
    }
    coco::write_coco(converted, args->out);
    std::printf("%zu images, %zu annotations, %zu categories -> %s\n", converted.images.size(),
                converted.annotations.size(), converted.categories.size(), args->out.c_str());
  });
}

void setup_dataset(CLI::App& app) {
  auto* dataset = app.add_subcommand("dataset", "Inspect a COCO-format dataset");
  dataset->require_subcommand(1);
  setup_stats(dataset);
  setup_show(dataset);
  setup_convert(dataset);
}

const CommandRegistrar dataset_registrar(20, setup_dataset);

}  // namespace
}  // namespace aligndetr::cli
