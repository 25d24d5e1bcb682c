// `aligndetr eval`: COCO bbox evaluation of trained weights on the configured validation set.

#include <filesystem>
#include <memory>

#include <spdlog/spdlog.h>

#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/util/atomic_file.h"
#include "command.h"
#include "config_args.h"

namespace aligndetr::cli {
namespace {

void setup_eval(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string weights, out;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "eval", "Evaluate weights on the config's validation set: the 12 COCO bbox numbers");
  args->config.add_to(cmd);
  cmd->add_option("--weights", args->weights, "model_final.pt or a training checkpoint")
      ->required();
  cmd->add_option("--out", args->out, "Directory for eval.json (and analysis outputs)");
  cmd->callback([args] {
    const auto e = make_experiment(args->config.load());
    const auto device = parse_device(e.train.device);
    const auto model = e.model.build();
    load_checkpoint(args->weights, *model);
    model->to(device);
    const CocoDetection val(e.data.val);
    const auto r = evaluate_model(*model, val, device, e);
    std::printf("%s\n", r.summary().c_str());
    if (!args->out.empty()) {
      std::filesystem::create_directories(args->out);
      const auto path = (std::filesystem::path(args->out) / "eval.json").string();
      write_file_atomic(path, r.stats_json() + "\n");
      spdlog::info("wrote {}", path);
    }
  });
}

const CommandRegistrar registrar(35, setup_eval);

}  // namespace
}  // namespace aligndetr::cli
