// `aligndetr model info`: parameters per module and GFLOPs at an input size.

#include <memory>

#include <fmt/format.h>
#include <torch/torch.h>

#include "aligndetr/engine/experiment.h"
#include "aligndetr/model/flops.h"
#include "aligndetr/model/report.h"
#include "command.h"
#include "config_args.h"
#include "image_size.h"

namespace aligndetr::cli {
namespace {

void setup_model(CLI::App& app) {
  struct Args {
    ConfigArgs config;
    std::string size = "800x1333";
    bool json = false;
  };
  auto args = std::make_shared<Args>();
  auto* model_cmd = app.add_subcommand("model", "Inspect a model described by a config");
  model_cmd->require_subcommand(1);
  auto* cmd = model_cmd->add_subcommand(
      "info",
      "Trainable parameters per module and in total, and GFLOPs of one forward pass at an input "
      "size (fvcore's convention: a multiply-add is one flop; matrix products and convolutions "
      "only)");
  args->config.add_to(cmd);
  cmd->add_option("--size", args->size, "Input size HxW")->capture_default_str();
  cmd->add_flag("--json", args->json,
                "Print one JSON object: parameters, frozen_parameters, gflops, modules");
  cmd->callback([args] {
    const auto [h, w] = parse_image_size(args->size);
    const auto config = args->config.load();
    const auto model = engine::model_spec(config).build();
    model->eval();
    const auto counts = model::count_parameters(*model);
    int64_t trainable = 0, frozen = 0;
    for (const auto& c : counts) {
      trainable += c.trainable;
      frozen += c.frozen;
    }
    torch::NoGradGuard no_grad;
    const auto images = torch::zeros({1, 3, h, w});
    const auto mask = torch::zeros({1, h, w}, torch::kBool);
    const auto flops = model::count_flops([&] { model->forward(images, mask, nullptr); });
    const double gflops = double(flops.total) / 1e9;
    if (args->json) {
      std::string modules;
      for (const auto& c : counts) {
        modules += fmt::format("{}\"{}\": {}", modules.empty() ? "" : ", ", c.name, c.trainable);
      }
      std::printf(
          "{\"parameters\": %lld, \"frozen_parameters\": %lld, \"gflops\": %.3f, "
          "\"size\": [%lld, %lld], \"modules\": {%s}}\n",
          static_cast<long long>(trainable), static_cast<long long>(frozen), gflops,
          static_cast<long long>(h), static_cast<long long>(w), modules.c_str());
      return;
    }
    std::printf("%-24s %14s %12s\n", "module", "trainable", "frozen");
    for (const auto& c : counts) {
      std::printf("%-24s %14s %12s\n", c.name.c_str(), fmt::format("{}", c.trainable).c_str(),
                  fmt::format("{}", c.frozen).c_str());
    }
    std::printf("%-24s %14s %12s\n", "total", fmt::format("{}", trainable).c_str(),
                fmt::format("{}", frozen).c_str());
    std::printf("\n%.2fM trainable parameters; %.1f GFLOPs at %lldx%lld\n", trainable / 1e6, gflops,
                static_cast<long long>(h), static_cast<long long>(w));
  });
}

const CommandRegistrar model_registrar(50, setup_model);

}  // namespace
}  // namespace aligndetr::cli
