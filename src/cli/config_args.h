#pragma once
// The --config / --set options shared by the commands that run a model.

#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "aligndetr/engine/config.h"

namespace aligndetr::cli {

struct ConfigArgs {
  std::string path;
  std::vector<std::string> overrides;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--config", path, "YAML config (may extend others with _base_)")
        ->required()
        ->check(CLI::ExistingFile);
    cmd->add_option("--set", overrides,
                    "Override a config value, e.g. --set solver.lr=2e-4 (repeatable; the key "
                    "must exist)");
  }

  engine::Config load() const {
    engine::Config c = engine::Config::load(path);
    for (const auto& o : overrides) c.set(o);
    return c;
  }
};

}  // namespace aligndetr::cli
