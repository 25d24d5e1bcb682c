#pragma once
// A linear layer that runs as one product over all leading dimensions: addmm, or for many float32
// rows on the CPU oneDNN's 1x1 convolution (forward only in training). LibTorch's own forward
// (1.13 as Debian ships it) runs a 3-D input as mm and then a separate pass adding the bias: over
// the R50 encoder's 20k tokens that pass reads and writes every output once more. Parameters,
// names and initialisation are LibTorch's Linear's, so checkpoints map over unchanged.

#include <memory>

#include <torch/nn/modules/linear.h>
#include <torch/types.h>

namespace aligndetr::ops {

// y = x W^T + b on the last dimension of x, any number of leading dimensions.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias);

struct PackedLinearWeight;

class LinearImpl : public torch::nn::LinearImpl {
 public:
  using torch::nn::LinearImpl::LinearImpl;
  torch::Tensor forward(const torch::Tensor& x);
  // relu(x W^T + b), the ReLU applied as the product's results are written where oneDNN runs it.
  torch::Tensor forward_relu(const torch::Tensor& x);

 private:
  torch::Tensor run(const torch::Tensor& x, bool relu);
  // At inference on the CPU the weight is reordered once into oneDNN's blocked layout, for the
  // number of rows of the first input, and kept while the weight and bias keep their storage and
  // version counters: the R50 encoder runs its linear layers on blocks of 1024 rows, and a
  // reorder per call was 0.135 s per image. Forwards on several threads are safe.
  std::shared_ptr<PackedLinearWeight> packed_;
};
TORCH_MODULE(Linear);

}  // namespace aligndetr::ops
