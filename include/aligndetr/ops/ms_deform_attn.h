#pragma once
// Multi-scale deformable attention (Deformable DETR), with the reference semantics: bilinear
// sampling with zero padding and align_corners=False, offsets normalized by each level's size,
// attention weights softmaxed over levels x points per head.
//
// `ms_deform_attn` is the one entry point of the sampling kernel: a fused kernel with its own
// backward pass on the CPU, and on CUDA when the library was built with ALIGNDETR_CUDA; the
// grid_sample formulation elsewhere.

#include <array>
#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "aligndetr/ops/linear.h"

namespace aligndetr::ops {

// Level sizes (height, width), coarse or fine in any order; value tokens are concatenated in
// this order.
using SpatialShapes = std::vector<std::array<int64_t, 2>>;

// value [B, S, heads, Dh] with S = sum(h*w); sampling_locations [B, Q, heads, L, P, 2] as (x, y)
// in [0, 1]; attention_weights [B, Q, heads, L, P]. Returns [B, Q, heads * Dh].
torch::Tensor ms_deform_attn(const torch::Tensor& value, const SpatialShapes& shapes,
                             const torch::Tensor& sampling_locations,
                             const torch::Tensor& attention_weights);

// Built from grid_sample, one call per level, differentiated by autograd: runs on any device.
torch::Tensor ms_deform_attn_grid_sample(const torch::Tensor& value, const SpatialShapes& shapes,
                                         const torch::Tensor& sampling_locations,
                                         const torch::Tensor& attention_weights);

// The fused CPU kernel (float or double; inputs on the CPU): one pass over the samples forward,
// one backward, threads over queries (forward) and over batch x heads (backward, so no two
// threads write the same value gradient). Gradients flow to all three tensor inputs. Without
// gradients, value may also be bfloat16 with float32 locations and weights: it is read as such
// (half the traffic) and the float32 result is the kernel's on value widened to float32.
torch::Tensor ms_deform_attn_cpu(const torch::Tensor& value, const SpatialShapes& shapes,
                                 const torch::Tensor& sampling_locations,
                                 const torch::Tensor& attention_weights);

// The fused CUDA kernel: value in float, double, half or bfloat16 (accumulated in float32, or
// double), locations and weights in any floating type (read in value's accumulation type, their
// gradients returned in their own dtypes). Throws c10::Error when the library was built without
// CUDA kernels.
torch::Tensor ms_deform_attn_cuda(const torch::Tensor& value, const SpatialShapes& shapes,
                                  const torch::Tensor& sampling_locations,
                                  const torch::Tensor& attention_weights);

// Whether this build holds the CUDA kernels (configured with -DALIGNDETR_CUDA=ON).
bool ms_deform_attn_cuda_built();

// The instruction set the fused CPU kernel runs with here: "avx2" (AVX2 + FMA, when the build
// has that copy and the CPU runs it) or "generic".
const char* ms_deform_attn_cpu_kernel();

// Which sampling kernel the module calls: kAuto is `ms_deform_attn` (fused where one exists);
// kGridSample forces the grid_sample formulation everywhere (a baseline, and a cross-check).
enum class MSDeformAttnKernel { kAuto, kGridSample };

struct MSDeformAttnOptions {
  int64_t embed_dim = 256;
  int64_t num_heads = 8;
  int64_t num_levels = 4;
  int64_t num_points = 4;
  MSDeformAttnKernel kernel = MSDeformAttnKernel::kAuto;
};

// The attention module, parameter names as detrex's MultiScaleDeformableAttention:
// sampling_offsets, attention_weights, value_proj, output_proj.
class MSDeformAttnImpl : public torch::nn::Module {
 public:
  explicit MSDeformAttnImpl(MSDeformAttnOptions options);
  void reset_parameters();

  // query [B, Q, D] (position embedding already added), value [B, S, D],
  // reference_points [B, Q, L, 2] (x, y) or [B, Q, L, 4] (cx, cy, w, h), all normalized;
  // value_padding_mask [B, S] true on padding (optional). Returns [B, Q, D] (no residual).
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& value,
                        const torch::Tensor& reference_points, const SpatialShapes& shapes,
                        const torch::Tensor& value_padding_mask = {});

  // forward in two halves, so that queries can be taken a block of rows at a time against one
  // projected value: project_value returns [B, S, heads, Dh] (padding zeroed), attend the
  // output for the queries given.
  torch::Tensor project_value(const torch::Tensor& value,
                              const torch::Tensor& value_padding_mask = {});
  torch::Tensor attend(const torch::Tensor& query, const torch::Tensor& projected_value,
                       const torch::Tensor& reference_points, const SpatialShapes& shapes);

  const MSDeformAttnOptions& options() const { return options_; }

 private:
  MSDeformAttnOptions options_;
  Linear sampling_offsets{nullptr}, attention_weights{nullptr}, value_proj{nullptr},
      output_proj{nullptr};
};
TORCH_MODULE(MSDeformAttn);

}  // namespace aligndetr::ops
