#include "aligndetr/model/report.h"

namespace aligndetr::model {
std::vector<ParameterCount> count_parameters(const torch::nn::Module& module) {
  std::vector<ParameterCount> counts;
  const auto add = [](ParameterCount& c, const torch::Tensor& p) {
    (p.requires_grad() ? c.trainable : c.frozen) += p.numel();
  };
  ParameterCount own{"(own)"};
  for (const auto& p : module.parameters(/*recurse=*/false)) add(own, p);
  if (own.trainable + own.frozen > 0) counts.push_back(own);
  for (const auto& c : module.named_children()) {
    ParameterCount count{c.key()};
    for (const auto& p : c.value()->parameters()) add(count, p);
    counts.push_back(count);
  }
  return counts;
}

int64_t count_trainable_parameters(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) {
    if (p.requires_grad()) n += p.numel();
  }
  return n;
}

}  // namespace aligndetr::model
