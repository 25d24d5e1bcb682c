#pragma once
// ResNet backbones with torchvision's module layout and parameter names (conv1, bn1,
// layer1..layer4, blocks with conv1/bn1/conv2/bn2[/conv3/bn3] and downsample.0/.1), so that
// torchvision state_dicts load by name. By default every batch norm is a FrozenBatchNorm2d, as in
// the reference detectors: its statistics and affine terms are buffers, never trained. A backbone
// trained from scratch needs a norm that learns (detectron2's norm "BN" or "GN"): `norm` selects
// it for the stages that are not frozen.

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/any.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "aligndetr/ops/tensor_stamp.h"

namespace aligndetr::model {

// y = x * w / sqrt(rv + eps) + (b - rm * w / sqrt(rv + eps)), per channel. The four tensors are
// registered as buffers named weight, bias, running_mean and running_var (torchvision's
// BatchNorm2d names), so they load from a checkpoint but hold no trainable parameters.
class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  explicit FrozenBatchNorm2dImpl(int64_t num_features, double eps = 1e-5);
  torch::Tensor forward(const torch::Tensor& x);
  // forward(conv(x)) as one convolution: the per-channel scale folded into the conv's weights,
  // the shift its bias. One pass over the output instead of two (and in training one fewer
  // backward): R50 inference at 800x1216 spent 3% of its time in the norms' separate pass.
  // The folded weights and bias are kept while the convolution and this norm keep theirs (same
  // storage, same version counters), so inference folds once, not at every image (R50: 53
  // folds of 23.5M weights per image; the copy kept costs their 94 MB). Not for concurrent
  // forwards of one module.
  torch::Tensor forward_after(torch::nn::Conv2dImpl& conv, const torch::Tensor& x);

  torch::Tensor weight, bias, running_mean, running_var;
  double eps;

 private:
  struct Folded {
    torch::Tensor weight, bias;
    ops::TensorStamp sources;  // the convolution's and the norm's tensors it was folded from
  };
  Folded folded_;
};
TORCH_MODULE(FrozenBatchNorm2d);

// One residual block. A Bottleneck (ResNet-50/101) has conv1 1x1, conv2 3x3 carrying the stride
// and the dilation (torchvision v1.5, detectron2 stride_in_1x1=False), conv3 1x1 with 4x
// expansion; a BasicBlock (ResNet-18/34) has two 3x3 convs, the first carrying the stride.
// The backbone's normalization layers. kBatchNorm: torch BatchNorm2d (batch statistics in
// training, torchvision's names, so torchvision checkpoints still load); kSyncBatchNorm: the
// same with statistics over every process of a data-parallel run (sync_batch_norm.h);
// kGroupNorm: 32 groups (weight and bias only).
enum class BackboneNorm { kFrozenBatchNorm, kBatchNorm, kSyncBatchNorm, kGroupNorm };

class ResidualBlockImpl : public torch::nn::Module {
 public:
  ResidualBlockImpl(int64_t in_channels, int64_t planes, int64_t stride, int64_t dilation,
                    bool bottleneck, BackboneNorm norm = BackboneNorm::kFrozenBatchNorm);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool bottleneck_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr};
  torch::nn::AnyModule bn1_, bn2_, bn3_;
  torch::nn::Sequential downsample_{nullptr};
};
TORCH_MODULE(ResidualBlock);

struct ResNetOptions {
  int depth = 50;  // 18, 34, 50 or 101
  // 0: nothing frozen; 1: the stem (conv1) frozen; k >= 2: the stem and layer1..layer(k-1).
  int freeze_at = 1;
  // Last stage with stride 1 and dilation 2 in every block's 3x3 convs (detectron2's
  // res5_dilation=2: torchvision leaves the first block of the stage undilated).
  bool dc5 = false;
  std::vector<int> out_stages = {2, 3, 4};  // 1..4 = layer1..layer4, i.e. res2..res5
  // Norm of the trainable stages; frozen ones (freeze_at) keep FrozenBatchNorm2d under kBatchNorm,
  // as detectron2 converts them, so their statistics cannot drift.
  BackboneNorm norm = BackboneNorm::kFrozenBatchNorm;
};

class ResNetImpl : public torch::nn::Module {
 public:
  explicit ResNetImpl(ResNetOptions options = {});
  // images: [B, 3, H, W]. Returns the requested stages' features, in out_stages order.
  std::vector<torch::Tensor> forward(torch::Tensor images);
  std::vector<int64_t> out_channels() const;
  std::vector<int64_t> out_strides() const;
  const ResNetOptions& options() const { return options_; }

 private:
  ResNetOptions options_;
  torch::nn::Conv2d conv1_{nullptr};
  torch::nn::AnyModule bn1_;
  std::vector<torch::nn::Sequential> layers_;
  std::vector<int64_t> stage_channels_, stage_strides_;
};
TORCH_MODULE(ResNet);

}  // namespace aligndetr::model
