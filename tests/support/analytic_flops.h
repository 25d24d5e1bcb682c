#pragma once
// FLOPs of the backbone and neck counted by formula, per convolution, to check the operator-level
// count of model/flops.h against an independent one.
//
// Convention: fvcore's (detectron2's FlopCountAnalysis, the GFLOPs of the DETR papers): one fused
// multiply-add is one flop. A convolution costs out_h * out_w * C_out * C_in / groups * k_h * k_w;
// biases, normalisation, activations, pooling and element-wise ops count zero. Batch size 1.

#include <array>
#include <cstdint>
#include <vector>

#include <torch/nn/modules/conv.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/neck.h"

namespace aligndetr::testing {

using model::ChannelMapperImpl;
using model::ResNetImpl;

using SpatialSize = std::array<int64_t, 2>;  // {height, width}

// One convolution at an input size: its flops, and its output size in `out`.
int64_t conv2d_flops(const torch::nn::Conv2dImpl& conv, SpatialSize in, SpatialSize* out);

struct FlopCount {
  int64_t flops = 0;
  std::vector<SpatialSize> out_sizes;  // one per output level
};

// The backbone at an image of `image` size; out_sizes are those of its out_stages.
FlopCount resnet_flops(const model::ResNetImpl& net, SpatialSize image);
// The neck on backbone levels of the given sizes (resnet_flops(...).out_sizes).
FlopCount channel_mapper_flops(const model::ChannelMapperImpl& neck,
                               const std::vector<SpatialSize>& in);

}  // namespace aligndetr::testing
