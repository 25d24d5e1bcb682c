#include <algorithm>
#include <cstdio>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/runtime.h"
#include "aligndetr/engine/stop.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/util/error.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

std::vector<std::pair<int, CommandSetup>>& registry() {
  static std::vector<std::pair<int, CommandSetup>> commands;
  return commands;
}
int g_exit_code = util::kExitOk;

}  // namespace

CommandRegistrar::CommandRegistrar(int order, CommandSetup setup) {
  registry().emplace_back(order, std::move(setup));
}

void set_exit_code(int code) {
  g_exit_code = code;
}

}  // namespace aligndetr::cli

int main(int argc, char** argv) {
  using namespace aligndetr;
  CLI::App app{
      "aligndetr: Align-DETR object detection in C++ (train, evaluate, analyse, predict).\n"
      "Run 'aligndetr COMMAND --help' for the options of a command."};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Print help for every command");
  int threads = 0;
  app.add_option("--threads", threads, "Compute threads (default: all cores; at most 1024)")
      ->check(CLI::Range(0, 1024));
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));

  auto& commands = cli::registry();
  std::stable_sort(commands.begin(), commands.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [order, setup] : commands) setup(app);

  app.parse_complete_callback([&] {
    spdlog::set_level(spdlog::level::from_str(log_level));
    engine::configure_runtime(threads);
  });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? util::kExitOk : util::kExitUsage;
  } catch (const engine::DistributedFailure& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return util::kExitDistributed;
  } catch (const engine::TrainingDiverged& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return util::kExitDiverged;
  } catch (const engine::TrainingInterrupted& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return e.exit_code();
  } catch (const util::InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return util::kExitInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "internal error: %s\n", e.what());
    return util::kExitInternal;
  }
  return cli::g_exit_code;
}
