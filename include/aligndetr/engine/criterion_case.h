#pragma once
// Golden criterion cases (format: ../shared/docs/criterion-case-format.md): inputs of the
// criterion for a stack of decoder layers and the per-layer loss values a reference computed.

#include <map>
#include <string>
#include <vector>

#include "aligndetr/loss/criterion.h"

namespace aligndetr::engine {

struct CriterionCase {
  model::DetectorOutputs inputs;  // decoder layers only
  std::vector<boxes::Target> targets;
  loss::CriterionOptions options;
  // Unweighted loss_class, loss_bbox, loss_giou per layer, first to last; empty when absent.
  std::vector<std::map<std::string, double>> expected;
};

// Reads a case; tensors are float32 on the CPU, like the reference's. Throws InputError naming
// the file and the field on malformed input.
CriterionCase read_criterion_case(const std::string& path);

// Unweighted terms of every layer, first to last, as {"layers":[{"loss_class":..,..},..]}.
std::string criterion_case_result_json(const CriterionCase& c);

}  // namespace aligndetr::engine
