#pragma once
// Checks shared by the deformable attention kernels.

#include "aligndetr/ops/ms_deform_attn.h"

namespace aligndetr::ops {

// Throws c10::Error naming the offending tensor and its shape.
void check_ms_deform_attn_inputs(const torch::Tensor& value, const SpatialShapes& shapes,
                                 const torch::Tensor& loc, const torch::Tensor& weights);

// Whether autograd will want gradients of this call (grad mode on and an input requiring them).
bool ms_deform_attn_needs_gradient(const torch::Tensor& value, const torch::Tensor& loc,
                                   const torch::Tensor& weights);

}  // namespace aligndetr::ops
