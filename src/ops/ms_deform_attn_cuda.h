#pragma once
// The CUDA kernels' host entry points (internal to ops; compiled only with ALIGNDETR_CUDA).
// value [B, S, heads, Dh] in float, double, half or bfloat16; locations and weights contiguous in
// value's accumulation type (float, or double for double values); all on one CUDA device.

#include <array>
#include <cstdint>
#include <vector>

#include <ATen/core/Tensor.h>

namespace aligndetr::ops::cuda {

constexpr int kMaxLevels = 16;

// flat_shapes: h0, w0, h1, w1, ... Returns [B, Q, heads * Dh] in value's dtype.
at::Tensor forward(const at::Tensor& value, const std::vector<int64_t>& flat_shapes,
                   const at::Tensor& loc, const at::Tensor& attn);

// Gradients of value (value's dtype), locations and weights (their accumulation type).
std::array<at::Tensor, 3> backward(const at::Tensor& value, const std::vector<int64_t>& flat_shapes,
                                   const at::Tensor& loc, const at::Tensor& attn,
                                   const at::Tensor& grad_out);

}  // namespace aligndetr::ops::cuda
