#include "aligndetr/ops/linear.h"

#include <torch/torch.h>

namespace aligndetr::ops {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  if (x.dim() < 2 || !bias.defined()) return torch::nn::functional::linear(x, weight, bias);
  // reshape copies only an input whose rows cannot be viewed as one matrix.
  const auto rows = x.reshape({-1, x.size(-1)});
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  return torch::addmm(bias, rows, weight.t()).view(sizes);
}

}  // namespace aligndetr::ops
