// `aligndetr train`: train a detector from a config.

#include <filesystem>
#include <memory>

#include <spdlog/spdlog.h>

#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/stop.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/util/progress.h"
#include "command.h"
#include "config_args.h"

namespace aligndetr::cli {
namespace {

void setup_train(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string output = "output";
    bool resume = false;
    bool resume_with_changes = false;
    std::string init;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "train",
      "Train a detector. Writes OUTPUT/config.yaml, metrics.jsonl, checkpoints/, model_final.pt "
      "and eval_final.json; --resume continues from the newest checkpoint");
  args->config.add_to(cmd);
  cmd->add_option("--output", args->output, "Output directory")->capture_default_str();
  cmd->add_flag("--resume", args->resume, "Continue from the newest checkpoint in OUTPUT");
  cmd->add_flag("--resume-with-changes", args->resume_with_changes,
                "With --resume: continue even though the config differs from the checkpoint's "
                "in settings that change what is computed (lr, seed, batch, model...); without "
                "it such a resume is refused, listing the differences");
  cmd->add_option("--init", args->init,
                  "Start a new run from these weights (replaces model.init_weights): our "
                  "checkpoints and weight files, detrex / Align-DETR checkpoints, torchvision or "
                  "detectron2-named ResNets; classes that differ from the dataset's are "
                  "re-initialised (see model.init_class_map)")
      ->check(CLI::ExistingFile);
  cmd->callback([args] {
    auto config = args->config.load();
    if (!args->init.empty()) engine::set_init_weights(config, args->init);
    if (args->resume_with_changes && !args->resume) {
      throw CLI::ValidationError("--resume-with-changes", "needs --resume");
    }
    auto experiment = engine::make_experiment(config);
    experiment.train.resume_with_changes = args->resume_with_changes;
    const auto env = engine::launch_env_from_environment();
    if (env.world_size > 1) {
      // Rank 0 logs as a single process does; the others only warnings and errors, with their
      // rank.
      if (env.rank > 0) {
        spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] [%l] %v", env.rank));
        if (spdlog::get_level() < spdlog::level::warn) spdlog::set_level(spdlog::level::warn);
        util::set_progress_enabled(false);
      }
    }
    engine::DistributedOptions dist_options;
    dist_options.backend = experiment.train.dist_backend;
    dist_options.timeout_s = experiment.train.dist_timeout_s;
    const auto dist = engine::Distributed::connect(env, dist_options,
                                                   engine::parse_device(experiment.train.device));
    if (dist->world_size() > 1) {
      spdlog::info("data-parallel: {} ranks ({}), {} image(s) per rank per step",
                   dist->world_size(), dist->backend(), experiment.data.batch_size);
    }
    engine::install_stop_handlers();
    const auto result = engine::train(experiment, args->output, args->resume, *dist);
    if (result.final_eval) {
      std::printf("%s\n", result.final_eval->summary().c_str());
    }
    if (dist->is_main()) spdlog::info("weights: {}", result.final_weights);
  });
}

const CommandRegistrar train_registrar(30, setup_train);

}  // namespace
}  // namespace aligndetr::cli
