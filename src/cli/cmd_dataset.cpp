// `aligndetr dataset stats|show`: inspect a COCO dataset.

#include <cstdio>
#include <string>

#include "aligndetr/data/coco.h"
#include "aligndetr/data/stats.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

void setup_dataset(CLI::App& app) {
  auto* dataset = app.add_subcommand("dataset", "Inspect a COCO-format dataset");
  dataset->require_subcommand(1);

  struct StatsArgs {
    std::string ann, images;
    bool json = false, decode = false;
  };
  auto stats_args = std::make_shared<StatsArgs>();
  auto* stats = dataset->add_subcommand(
      "stats",
      "Count images, annotations, crowd boxes, categories, images without annotations, and "
      "invalid records by kind (boxes, categories, missing or unreadable images)");
  stats->add_option("--ann", stats_args->ann, "COCO instances JSON")->required();
  stats->add_option("--images", stats_args->images,
                    "Image directory; when given, every image file is checked");
  stats->add_flag("--decode", stats_args->decode,
                  "Decode every image fully (slower; finds corrupt data inside files)");
  stats->add_flag("--json", stats_args->json, "Print one JSON object instead of a table");
  stats->callback([stats_args] {
    const CocoDataset ds = read_coco(stats_args->ann);
    ValidationOptions options;
    options.images_dir = stats_args->images;
    options.decode_images = stats_args->decode;
    const DatasetStats s = compute_stats(ds, options);
    std::printf("%s\n", stats_args->json ? s.to_json().c_str() : s.to_text().c_str());
  });
}

const CommandRegistrar registrar(20, setup_dataset);

}  // namespace
}  // namespace aligndetr::cli
