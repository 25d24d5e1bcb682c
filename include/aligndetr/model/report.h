#pragma once
// Model size reports: parameter counts per top-level module. (FLOPs: model/flops.h.)

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace aligndetr::model {

struct ParameterCount {
  std::string name;       // a top-level child module's name; "(own)" for the module's direct ones
  int64_t trainable = 0;  // elements of parameters with requires_grad
  int64_t frozen = 0;     // elements of parameters without requires_grad
};

// "Trainable" means a parameter with requires_grad. Frozen batch norms keep their affine terms
// and statistics as buffers, so they count in neither column.
std::vector<ParameterCount> count_parameters(const torch::nn::Module& module);
int64_t count_trainable_parameters(const torch::nn::Module& module);

}  // namespace aligndetr::model
