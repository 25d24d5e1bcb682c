#pragma once
// A linear layer that runs as one addmm over all leading dimensions. LibTorch's own forward
// (1.13 as Debian ships it) runs a 3-D input as mm and then a separate pass adding the bias: over
// the R50 encoder's 20k tokens that pass reads and writes every output once more. Parameters,
// names and initialisation are LibTorch's Linear's, so checkpoints map over unchanged.

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

namespace aligndetr::ops {

// y = x W^T + b on the last dimension of x, any number of leading dimensions.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias);

class LinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x) { return linear(x, weight, bias); }
};
TORCH_MODULE(Linear);

}  // namespace aligndetr::ops
