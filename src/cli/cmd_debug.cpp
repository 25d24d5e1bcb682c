// `aligndetr debug criterion --case FILE`: computes the criterion on a golden case and prints the
// unweighted terms of every layer, to compare with a reference implementation.

#include <cstdio>
#include <memory>
#include <string>

#include "aligndetr/engine/criterion_case.h"
#include "command.h"

namespace aligndetr::cli {
namespace {

void setup_debug(CLI::App& app) {
  auto* debug = app.add_subcommand("debug", "Developer tools: run one component on fixed inputs");
  debug->require_subcommand(1);

  auto case_file = std::make_shared<std::string>();
  auto* criterion = debug->add_subcommand(
      "criterion",
      "Compute the Align-DETR criterion on a case file (../shared/docs/criterion-case-format.md) "
      "and print {\"layers\":[{\"loss_class\":..,\"loss_bbox\":..,\"loss_giou\":..},..]}");
  criterion->add_option("--case", *case_file, "Criterion case JSON")->required();
  criterion->callback([case_file] {
    const engine::CriterionCase c = engine::read_criterion_case(*case_file);
    std::printf("%s\n", engine::criterion_case_result_json(c).c_str());
  });
}

const CommandRegistrar debug_registrar(60, setup_debug);

}  // namespace
}  // namespace aligndetr::cli
