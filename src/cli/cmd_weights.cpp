// `aligndetr weights inspect|import`: look into checkpoint files and convert PyTorch state_dicts.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "aligndetr/engine/experiment.h"
#include "aligndetr/model/backbone.h"
#include "aligndetr/model/import.h"
#include "aligndetr/model/weights.h"
#include "aligndetr/util/error.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

std::string shape_text(const torch::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

std::string dtype_text(const torch::Tensor& t) {
  std::ostringstream out;
  out << t.dtype();
  return out.str();
}

void setup_inspect(CLI::App* weights) {
  auto file = std::make_shared<std::string>();
  auto* cmd = weights->add_subcommand(
      "inspect",
      "List the tensors of a checkpoint (ours or a PyTorch state_dict from torch.save): name, "
      "shape, dtype, element count, and the totals");
  cmd->add_option("FILE", *file, "Checkpoint file")->required();
  cmd->callback([file] {
    const model::TensorDict tensors = model::load_tensors(*file);
    size_t width = 4;
    for (const auto& item : tensors) width = std::max(width, item.key().size());
    int64_t total = 0, floating = 0;
    for (const auto& item : tensors) {
      const torch::Tensor& t = item.value();
      std::printf("%-*s  %-20s  %-8s  %lld\n", static_cast<int>(width), item.key().c_str(),
                  shape_text(t).c_str(), dtype_text(t).c_str(), static_cast<long long>(t.numel()));
      total += t.numel();
      if (t.is_floating_point()) floating += t.numel();
    }
    std::printf("%zu tensors, %lld elements (%lld floating point)\n", tensors.size(),
                static_cast<long long>(total), static_cast<long long>(floating));
  });
}

void setup_import(CLI::App* weights) {
  struct Args {
    std::string from, out;
    std::vector<std::string> prefix_map, drop;
    int backbone = 0;
    bool detectron2 = false;
    bool detrex = false;
    bool official_dino = false;
    std::string config;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = weights->add_subcommand(
      "import",
      "Convert a PyTorch state_dict (torch.save file, or a checkpoint dict with 'model' or "
      "'state_dict') to our checkpoint format, renaming tensors by prefix; --config (or "
      "--backbone) reports how the result loads into that model");
  cmd->add_option("--from", args->from, "PyTorch checkpoint")->required();
  cmd->add_option("--out", args->out, "Output checkpoint")->required();
  cmd->add_option("--prefix-map", args->prefix_map,
                  "OLD=NEW: names starting with OLD get NEW instead (first matching rule wins; "
                  "NEW may be empty)");
  cmd->add_flag("--detectron2-resnet", args->detectron2,
                "First rename detectron2 ResNet tensors (stem, res2..res5, shortcut, .norm; as "
                "in detrex and Align-DETR checkpoints) to torchvision's names, which ours use");
  cmd->add_flag("--detrex", args->detrex,
                "The file is a detrex DINO or Align-DETR checkpoint: drop the decoder's copies of "
                "the detector heads (each checked equal to its head) and rename the detectron2 "
                "ResNet as --detectron2-resnet does")
      ->excludes("--detectron2-resnet");
  cmd->add_flag("--official-dino", args->official_dino,
                "The file is an IDEA-Research DINO checkpoint (backbone.0.body.*, input_proj.*, "
                "shared decoder heads, transformer.enc_out_*): rename to ours, copy the shared "
                "heads into every layer and keep COCO's 80 classes (91 with a --config of "
                "model.num_classes 91). Use it with configs/dino_r50_4scale_official.yaml, which "
                "embeds positions as the official model does")
      ->excludes("--detectron2-resnet")
      ->excludes("--detrex");
  cmd->add_option("--drop", args->drop, "Leave out tensors whose names start with this prefix");
  cmd->add_option("--backbone", args->backbone,
                  "ResNet depth (18, 34, 50, 101): report how the converted tensors load into "
                  "that backbone (loaded, missing, unexpected, shape mismatches)")
      ->check(CLI::IsMember({18, 34, 50, 101}));
  cmd->add_option("--config", args->config,
                  "Model config: report how the converted tensors load into that model "
                  "(loaded, missing, unexpected, shape mismatches)")
      ->check(CLI::ExistingFile);
  cmd->callback([args] {
    model::ImportOptions options;
    if (args->detrex) options.layout = model::ImportLayout::kDetrex;
    if (args->detectron2) options.layout = model::ImportLayout::kDetectron2ResNet;
    if (args->official_dino) {
      options.layout = model::ImportLayout::kOfficialDino;
      if (!args->config.empty()) {
        const auto spec = engine::model_spec(engine::Config::load(args->config));
        options.num_classes = spec.num_classes();
        options.label_rows = spec.type == "dino" ? spec.dino.denoising.label_book_size : 0;
      }
    }
    for (const auto& rule : args->prefix_map) {
      options.prefix_map.push_back(model::parse_prefix_rule(rule));
    }
    options.drop = args->drop;
    const auto imported = model::import_weights(model::load_tensors(args->from), options);
    if (args->detrex || args->official_dino) {
      std::printf("%d decoder copies of the detector heads dropped (each equal to its head)\n",
                  imported.aliases_dropped);
    }
    if (args->detrex || args->detectron2) {
      std::printf("%d detectron2 ResNet names converted to torchvision's\n",
                  imported.layout_renamed);
    }
    const model::TensorDict& kept = imported.tensors;
    std::printf("%d tensors read, %d renamed, %d dropped, %zu written\n", imported.read,
                imported.prefix_renamed, imported.dropped, kept.size());
    if (args->backbone != 0) {
      model::ResNetOptions resnet;
      resnet.depth = args->backbone;
      model::ResNet net(resnet);
      const model::LoadReport report = model::load_state_dict(*net, kept, /*strict=*/false);
      std::printf("against ResNet-%d: %s\n", args->backbone, report.to_text().c_str());
    }
    if (!args->config.empty()) {
      const engine::Config config = engine::Config::load(args->config);
      const auto model = engine::model_spec(config).build();
      const model::LoadReport report = model::load_state_dict(*model, kept, /*strict=*/false);
      std::printf("against %s: %s\n", args->config.c_str(), report.to_text().c_str());
    }
    model::save_tensors(args->out, kept);
    spdlog::info("wrote {}", args->out);
  });
}

void setup_weights(CLI::App& app) {
  auto* weights = app.add_subcommand("weights", "Inspect and convert checkpoint files");
  weights->require_subcommand(1);
  setup_inspect(weights);
  setup_import(weights);
}

const CommandRegistrar weights_registrar(70, setup_weights);

}  // namespace
}  // namespace aligndetr::cli
