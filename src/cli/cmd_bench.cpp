// `aligndetr bench`: the speed of a configured detector here, against the hardware's roofline.

#include <cstdio>
#include <memory>

#include "aligndetr/engine/bench.h"
#include "command.h"
#include "config_args.h"
#include "image_size.h"

namespace aligndetr::cli {
namespace {

void setup_bench(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string size = "800x1216", amp = "off";
    engine::BenchOptions bench;
    bool json = false, no_profile = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand(
      "bench",
      "Time inference (forward and post-processing) or whole training steps (--train) of the "
      "configured detector on random images: median and spread after a warm-up, peak memory, "
      "time by stage and the top operators by self time, and the roofline (the model's "
      "multiply-adds at this machine's measured convolution and matrix-product rates) with the "
      "ratio to it. Random weights; the time of the work, not of reading files");
  args->config.add_to(cmd);
  cmd->add_option("--size", args->size, "Image size HxW")->capture_default_str();
  cmd->add_option("--batch", args->bench.batch, "Images per iteration")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_flag("--train", args->bench.train,
                "Whole training steps: forward with denoising, criterion, backward, clipping, "
                "AdamW");
  cmd->add_option("--amp", args->amp,
                  "off, or bf16: bfloat16 autocast (float32 weights, losses and matching)")
      ->check(CLI::IsMember({"off", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--iterations", args->bench.iterations, "Timed iterations")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--warmup", args->bench.warmup, "Untimed iterations first")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  cmd->add_flag("--no-profile", args->no_profile,
                "Leave out the operator profile (one more iteration, observed op by op)");
  cmd->add_option("--top", args->bench.top_operators,
                  "How many operators the profile lists, by self time")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object instead of the tables");
  cmd->callback([args] {
    const auto [height, width] = parse_image_size(args->size);
    args->bench.height = height;
    args->bench.width = width;
    args->bench.bf16 = args->amp == "bf16";
    args->bench.profile = !args->no_profile;
    const auto e = engine::make_experiment(args->config.load());
    const auto report = engine::run_bench(e, args->bench);
    std::printf("%s\n", args->json ? report.json().c_str() : report.text().c_str());
  });
}

const CommandRegistrar bench_registrar(55, setup_bench);

}  // namespace
}  // namespace aligndetr::cli
