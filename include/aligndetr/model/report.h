#pragma once
// Model size and cost reports: parameter counts per top-level module, and an analytic FLOP count
// of the backbone and neck at an input size.
//
// FLOP convention: fvcore's, which detectron2's FlopCountAnalysis (and so the GFLOPs of the DETR
// papers) uses: one fused multiply-add is one flop. A convolution costs
// out_h * out_w * C_out * C_in / groups * k_h * k_w, a linear layer in * out per row; biases,
// normalisation (batch, group, frozen), activations, pooling and element-wise ops count zero,
// as detectron2 ignores them. Batch size 1.

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

namespace aligndetr {

class ResNetImpl;
class ChannelMapperImpl;

struct ParameterCount {
  std::string name;       // a top-level child module's name; "(own)" for the module's direct ones
  int64_t trainable = 0;  // elements of parameters with requires_grad
  int64_t frozen = 0;     // elements of parameters without requires_grad
};

// "Trainable" means a parameter with requires_grad. Frozen batch norms keep their affine terms
// and statistics as buffers, so they count in neither column.
std::vector<ParameterCount> count_parameters(const torch::nn::Module& module);
int64_t count_trainable_parameters(const torch::nn::Module& module);

using SpatialSize = std::array<int64_t, 2>;  // {height, width}

// One convolution at an input size: its flops, and its output size in `out`.
int64_t conv2d_flops(const torch::nn::Conv2dImpl& conv, SpatialSize in, SpatialSize* out);

struct FlopCount {
  int64_t flops = 0;
  std::vector<SpatialSize> out_sizes;  // one per output level
};

// The backbone at an image of `image` size; out_sizes are those of its out_stages.
FlopCount resnet_flops(const ResNetImpl& net, SpatialSize image);
// The neck on backbone levels of the given sizes (resnet_flops(...).out_sizes).
FlopCount channel_mapper_flops(const ChannelMapperImpl& neck, const std::vector<SpatialSize>& in);

}  // namespace aligndetr
