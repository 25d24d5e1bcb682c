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
#include "aligndetr/model/detrex.h"
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
    const TensorDict tensors = load_tensors(*file);
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
    std::vector<std::pair<std::string, std::string>> rules;
    for (const auto& rule : args->prefix_map) {
      const size_t eq = rule.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw InputError("--prefix-map expects OLD=NEW with a non-empty OLD, got '" + rule + "'");
      }
      rules.emplace_back(rule.substr(0, eq), rule.substr(eq + 1));
    }
    const TensorDict source = load_tensors(args->from);
    int detectron2_renamed = 0;
    TensorDict torchvision_named = source;
    if (args->detrex) {
      DetrexConversion converted = detrex_to_ours(source);
      std::printf("%d decoder copies of the detector heads dropped (each equal to its head)\n",
                  converted.aliases_dropped);
      detectron2_renamed = converted.resnet_renamed;
      torchvision_named = std::move(converted.tensors);
    } else if (args->detectron2) {
      torchvision_named = detectron2_resnet_to_torchvision(source, &detectron2_renamed);
    }
    int renamed = 0;
    const TensorDict mapped = rename_prefixes(torchvision_named, rules, &renamed);
    TensorDict kept;
    int dropped = 0;
    for (const auto& item : mapped) {
      bool drop = false;
      for (const auto& prefix : args->drop) drop = drop || item.key().rfind(prefix, 0) == 0;
      if (drop) {
        ++dropped;
      } else {
        kept.insert(item.key(), item.value());
      }
    }
    if (args->detrex || args->detectron2) {
      std::printf("%d detectron2 ResNet names converted to torchvision's\n", detectron2_renamed);
    }
    std::printf("%zu tensors read, %d renamed, %d dropped, %zu written\n", source.size(), renamed,
                dropped, kept.size());
    if (args->backbone != 0) {
      ResNetOptions options;
      options.depth = args->backbone;
      ResNet net(options);
      const LoadReport report = load_state_dict(*net, kept, /*strict=*/false);
      std::printf("against ResNet-%d: %s\n", args->backbone, report.to_text().c_str());
    }
    if (!args->config.empty()) {
      const Config config = Config::load(args->config);
      const auto model = model_spec(config).build();
      const LoadReport report = load_state_dict(*model, kept, /*strict=*/false);
      std::printf("against %s: %s\n", args->config.c_str(), report.to_text().c_str());
    }
    save_tensors(args->out, kept);
    spdlog::info("wrote {}", args->out);
  });
}

void setup_weights(CLI::App& app) {
  auto* weights = app.add_subcommand("weights", "Inspect and convert checkpoint files");
  weights->require_subcommand(1);
  setup_inspect(weights);
  setup_import(weights);
}

const CommandRegistrar registrar(70, setup_weights);

}  // namespace
}  // namespace aligndetr::cli
