// `aligndetr eval`: COCO bbox evaluation of trained weights on the configured validation set.

#include <filesystem>
#include <memory>

#include <spdlog/spdlog.h>

#include "aligndetr/engine/evaluation.h"
#include "command.h"
#include "config_args.h"

namespace aligndetr::cli {
namespace {

void setup_eval(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string weights, out;
    bool analysis = false, ignore_names = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval", "Evaluate weights on the config's validation set: the 12 COCO bbox numbers");
  args->config.add_to(cmd);
  cmd->add_option("--weights", args->weights, "model_final.pt or a training checkpoint")
      ->required();
  cmd->add_option("--out", args->out, "Directory for eval.json (and analysis outputs)");
  cmd->add_flag(
      "--analysis", args->analysis,
      "Also measure classification-regression alignment on the final layer: recall of "
      "best-regressed samples among the top-N / 2N confident queries, IoU histograms, "
      "confidence-IoU Pearson correlation and density (alignment.json and PNGs in --out)");
  cmd->add_flag("--ignore-category-names", args->ignore_names,
                "Evaluate even when the class names the weights file records differ from the "
                "dataset's categories (same classes in the same order, named differently)");
  cmd->callback([args] {
    engine::check_output_directory(args->out);
    const auto e = engine::make_experiment(args->config.load());
    const auto device = engine::parse_device(e.train.device);
    std::vector<std::string> names;
    const auto model = e.model.load(args->weights, device, &names);
    const data::CocoDetection val(e.data.val);
    engine::check_categories(model->num_classes(), names, val.categories(), val.coco().source,
                             args->ignore_names);
    const auto result = engine::evaluate_with_analysis(*model, val, device, e, args->analysis);
    std::printf("%s\n\n%s", result.coco.summary().c_str(),
                result.coco.per_category_table().c_str());
    if (result.alignment) {
      const auto& a = *result.alignment;
      std::printf(
          "alignment: BR recall top-N %.4f, top-2N %.4f, Pearson(confidence, IoU) %.4f over "
          "%lld matched samples\n",
          a.br_recall_top_n, a.br_recall_top_2n, a.pearson, static_cast<long long>(a.matched));
    }
    if (!args->out.empty()) {
      const auto files = engine::write_evaluation(result, args->out);
      for (const auto& f : files) spdlog::info("wrote {}", f);
    }
  });
}

const CommandRegistrar eval_registrar(35, setup_eval);

}  // namespace
}  // namespace aligndetr::cli
