#pragma once
// Each subcommand lives in its own cmd_*.cpp and registers itself here, so adding one touches
// no other file. Commands only parse arguments and call the library.

#include <functional>

#include <CLI/CLI.hpp>

namespace aligndetr::cli {

using CommandSetup = std::function<void(CLI::App& app)>;

// `order` sorts commands in --help.
struct CommandRegistrar {
  CommandRegistrar(int order, CommandSetup setup);
};

// Set by the command's callback; main() returns it.
void set_exit_code(int code);

}  // namespace aligndetr::cli
