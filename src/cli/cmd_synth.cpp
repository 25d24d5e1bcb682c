// `aligndetr synth`: write the built-in synthetic detection dataset.

#include <memory>

#include <spdlog/spdlog.h>

#include "aligndetr/data/synth.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

void setup_synth(CLI::App& app) {
  auto options = std::make_shared<data::SynthOptions>();
  auto* cmd = app.add_subcommand(
      "synth",
      "Write a synthetic COCO-format detection dataset (8 shape classes, small to large "
      "objects, textured backgrounds, occlusion): DIR/images/{train,val}/*.jpg and "
      "DIR/annotations/instances_{train,val}.json");
  cmd->add_option("--out", options->out_dir, "Output directory")->required();
  cmd->add_option("--train", options->train_images, "Training images")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--val", options->val_images, "Validation images")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--size", options->size, "Longer image side in pixels")
      ->check(CLI::Range(64, 4096))
      ->capture_default_str();
  cmd->add_option("--seed", options->seed, "Random seed (same seed, same dataset)")
      ->capture_default_str();
  cmd->add_option("--max-objects", options->max_objects, "Most objects per image")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  cmd->add_option("--min-object-size", options->min_object_size,
                  "Smallest object diameter in pixels (sizes are log-uniform up to 60% of the "
                  "shorter image side)")
      ->check(CLI::Range(4, 4096))
      ->capture_default_str();
  cmd->callback([options] {
    data::write_synthetic_dataset(*options);
    spdlog::info("wrote {} training and {} validation images to {}", options->train_images,
                 options->val_images, options->out_dir);
  });
}

const CommandRegistrar synth_registrar(10, setup_synth);

}  // namespace
}  // namespace aligndetr::cli
