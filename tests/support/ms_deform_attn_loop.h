#pragma once
// Multi-scale deformable attention written as explicit loops over every sample (slow, forward
// only, differentiable by autograd): the oracle the kernels are tested against.

#include <torch/types.h>

#include "aligndetr/ops/ms_deform_attn.h"

namespace aligndetr::testing {

// The arguments and result of ops::ms_deform_attn.
torch::Tensor ms_deform_attn_loop(const torch::Tensor& value, const ops::SpatialShapes& shapes,
                                  const torch::Tensor& sampling_locations,
                                  const torch::Tensor& attention_weights);

}  // namespace aligndetr::testing
