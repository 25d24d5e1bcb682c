#pragma once
// Batch norm with statistics over every process of a data-parallel run (PyTorch's
// SyncBatchNorm, detectron2's "SyncBN"), for backbones trained from scratch at a few images per
// process. Its tensors are BatchNorm2d's (weight, bias, running_mean, running_var,
// num_batches_tracked), so checkpoints move between the two.
//
// In training, the per-channel sum, sum of squares and count of the local batch are summed over
// the processes by the reducer, and so are the backward pass's sums of dy and dy * x_hat: the
// input gradient is that of the sum of every process's loss, the affine terms' gradients are the
// local ones (the data-parallel gradient average then makes them the mean's). Without a reducer,
// or in evaluation, it is BatchNorm2d.

#include <cstdint>
#include <functional>

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace aligndetr::model {

// Sums a tensor in place over every process (each process calls it with its own tensor).
using SumReducer = std::function<void(torch::Tensor&)>;

class SyncBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit SyncBatchNorm2dImpl(int64_t num_features, double eps = 1e-5, double momentum = 0.1);
  torch::Tensor forward(const torch::Tensor& x);
  void set_reducer(SumReducer reducer) { reducer_ = std::move(reducer); }
  const SumReducer& reducer() const { return reducer_; }

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;

 private:
  SumReducer reducer_;
};
TORCH_MODULE(SyncBatchNorm2d);

// Gives every SyncBatchNorm2d under `module` the reducer; returns how many.
int set_sync_batch_norm_reducer(torch::nn::Module& module, const SumReducer& reducer);

}  // namespace aligndetr::model
