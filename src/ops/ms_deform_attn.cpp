#include "aligndetr/ops/ms_deform_attn.h"

#include <cmath>

#include <torch/torch.h>

#include "ms_deform_attn_check.h"

namespace aligndetr::ops {

namespace F = torch::nn::functional;

void check_ms_deform_attn_inputs(const torch::Tensor& value, const SpatialShapes& shapes,
                                 const torch::Tensor& loc, const torch::Tensor& weights) {
  TORCH_CHECK(value.dim() == 4, "ms_deform_attn: value must be [B, S, heads, Dh], got ",
              value.sizes());
  int64_t tokens = 0;
  for (const auto& s : shapes) tokens += s[0] * s[1];
  TORCH_CHECK(value.size(1) == tokens, "ms_deform_attn: value has ", value.size(1),
              " tokens but the level shapes hold ", tokens);
  TORCH_CHECK(loc.dim() == 6 && loc.size(-1) == 2 && loc.size(3) == int64_t(shapes.size()),
              "ms_deform_attn: sampling_locations must be [B, Q, heads, L, P, 2], got ",
              loc.sizes());
  TORCH_CHECK(weights.sizes() == loc.sizes().slice(0, 5),
              "ms_deform_attn: attention_weights must be [B, Q, heads, L, P], got ",
              weights.sizes());
}

bool ms_deform_attn_needs_gradient(const torch::Tensor& value, const torch::Tensor& loc,
                                   const torch::Tensor& weights) {
  return torch::GradMode::is_enabled() &&
         (value.requires_grad() || loc.requires_grad() || weights.requires_grad());
}

torch::Tensor ms_deform_attn(const torch::Tensor& value, const SpatialShapes& shapes,
                             const torch::Tensor& sampling_locations,
                             const torch::Tensor& attention_weights) {
  const bool on_cpu = value.is_cpu() && sampling_locations.is_cpu() && attention_weights.is_cpu();
  if (on_cpu && value.is_floating_point()) {
    if (value.scalar_type() == torch::kBFloat16 &&
        !ms_deform_attn_needs_gradient(value, sampling_locations, attention_weights)) {
      // Inference under autocast: the kernel reads the bfloat16 value itself.
      return ms_deform_attn_cpu(value, shapes, sampling_locations.to(torch::kFloat),
                                attention_weights.to(torch::kFloat))
          .to(value.scalar_type());
    }
    // The CPU kernel runs in float32 or double: reduced-precision inputs (autocast's bfloat16)
    // are widened for it and the result narrowed back, as autocast does for its float32 ops.
    const auto dtype = value.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    const auto out = ms_deform_attn_cpu(value.to(dtype), shapes, sampling_locations.to(dtype),
                                        attention_weights.to(dtype));
    return out.to(value.scalar_type());
  }
  if (value.is_cuda() && ms_deform_attn_cuda_built()) {
    return ms_deform_attn_cuda(value, shapes, sampling_locations, attention_weights);
  }
  return ms_deform_attn_grid_sample(value, shapes, sampling_locations, attention_weights);
}

#ifndef ALIGNDETR_CUDA_KERNELS
bool ms_deform_attn_cuda_built() {
  return false;
}

torch::Tensor ms_deform_attn_cuda(const torch::Tensor&, const SpatialShapes&, const torch::Tensor&,
                                  const torch::Tensor&) {
  TORCH_CHECK(false,
              "ms_deform_attn_cuda: this build has no CUDA kernels (configure with "
              "-DALIGNDETR_CUDA=ON against a CUDA LibTorch)");
}
#endif

torch::Tensor ms_deform_attn_grid_sample(const torch::Tensor& value, const SpatialShapes& shapes,
                                         const torch::Tensor& sampling_locations,
                                         const torch::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, shapes, sampling_locations, attention_weights);
  const int64_t B = value.size(0), heads = value.size(2), dh = value.size(3);
  const int64_t Q = sampling_locations.size(1), L = int64_t(shapes.size());
  const int64_t P = sampling_locations.size(4);
  // grid_sample works on [-1, 1] with align_corners=False: pixel centres at (i + 0.5) / size.
  const auto grids = 2 * sampling_locations - 1;
  std::vector<torch::Tensor> sampled;
  sampled.reserve(static_cast<size_t>(L));
  int64_t start = 0;
  for (int64_t l = 0; l < L; ++l) {
    const int64_t h = shapes[size_t(l)][0], w = shapes[size_t(l)][1];
    // [B, hw, heads, Dh] -> [B*heads, Dh, h, w]
    const auto v =
        value.narrow(1, start, h * w).flatten(2).transpose(1, 2).reshape({B * heads, dh, h, w});
    start += h * w;
    // [B, Q, heads, P, 2] -> [B*heads, Q, P, 2]
    const auto g = grids.select(3, l).transpose(1, 2).flatten(0, 1);
    sampled.push_back(F::grid_sample(v, g,
                                     F::GridSampleFuncOptions()
                                         .mode(torch::kBilinear)
                                         .padding_mode(torch::kZeros)
                                         .align_corners(false)));  // [B*heads, Dh, Q, P]
  }
  // [B*heads, Dh, Q, L*P] weighted by [B*heads, 1, Q, L*P]
  const auto stacked = torch::stack(sampled, -2).flatten(-2);
  const auto w = attention_weights.transpose(1, 2).reshape({B * heads, 1, Q, L * P});
  return (stacked * w).sum(-1).view({B, heads * dh, Q}).transpose(1, 2).contiguous();
}

MSDeformAttnImpl::MSDeformAttnImpl(MSDeformAttnOptions options) : options_(options) {
  TORCH_CHECK(options_.embed_dim % options_.num_heads == 0, "embed_dim ", options_.embed_dim,
              " is not divisible by num_heads ", options_.num_heads);
  const int64_t hlp = options_.num_heads * options_.num_levels * options_.num_points;
  sampling_offsets = register_module("sampling_offsets", Linear(options_.embed_dim, hlp * 2));
  attention_weights = register_module("attention_weights", Linear(options_.embed_dim, hlp));
  value_proj = register_module("value_proj", Linear(options_.embed_dim, options_.embed_dim));
  output_proj = register_module("output_proj", Linear(options_.embed_dim, options_.embed_dim));
  reset_parameters();
}

void MSDeformAttnImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  const int64_t H = options_.num_heads, L = options_.num_levels, P = options_.num_points;
  // Offsets start on rays around the reference point, one direction per head, the p-th point at
  // distance p + 1 (Deformable DETR's initialisation).
  sampling_offsets->weight.zero_();
  const auto thetas = torch::arange(H, torch::kFloat32) * (2.0 * M_PI / double(H));
  auto grid = torch::stack({thetas.cos(), thetas.sin()}, -1);
  grid = grid / std::get<0>(grid.abs().max(-1, true));
  grid = grid.view({H, 1, 1, 2}).repeat({1, L, P, 1});
  for (int64_t p = 0; p < P; ++p) grid.select(2, p).mul_(double(p + 1));
  sampling_offsets->bias.copy_(grid.view({-1}));
  attention_weights->weight.zero_();
  attention_weights->bias.zero_();
  torch::nn::init::xavier_uniform_(value_proj->weight);
  value_proj->bias.zero_();
  torch::nn::init::xavier_uniform_(output_proj->weight);
  output_proj->bias.zero_();
}

torch::Tensor MSDeformAttnImpl::forward(const torch::Tensor& query, const torch::Tensor& value,
                                        const torch::Tensor& reference_points,
                                        const SpatialShapes& shapes,
                                        const torch::Tensor& value_padding_mask) {
  return attend(query, project_value(value, value_padding_mask), reference_points, shapes);
}

torch::Tensor MSDeformAttnImpl::project_value(const torch::Tensor& value,
                                              const torch::Tensor& value_padding_mask) {
  auto v = value_proj(value);
  // In place on the projection's fresh output (its backward does not read it). On the CPU a
  // mask with nothing to fill (one image, or images of one size) is seen first: a pass over the
  // mask instead of one over the value (R50 at 800x1216: 20k x 256).
  const auto& mask = value_padding_mask;
  const bool nothing_to_fill = mask.defined() && mask.is_cpu() && !mask.any().item<bool>();
  if (mask.defined() && !nothing_to_fill) v.masked_fill_(mask.unsqueeze(-1), 0.0);
  return v.view({value.size(0), value.size(1), options_.num_heads, -1});
}

torch::Tensor MSDeformAttnImpl::attend(const torch::Tensor& query, const torch::Tensor& v,
                                       const torch::Tensor& reference_points,
                                       const SpatialShapes& shapes) {
  const int64_t B = query.size(0), Q = query.size(1);
  const int64_t H = options_.num_heads, L = options_.num_levels, P = options_.num_points;
  TORCH_CHECK(int64_t(shapes.size()) == L, "MSDeformAttn: expected ", L, " levels, got ",
              shapes.size());
  // Offsets as rows of L x P x 2 per head, each reference coordinate (and scale) repeated over
  // the P points of its level to a row of the same length: the sum then runs along contiguous
  // rows of 2LP values, which ATen vectorises, where broadcasting [B, Q, 1, L, 1, 2] against
  // [B, Q, H, L, P, 2] ran inner loops of two (R50 inference at 800x1216: 0.07 s of it). The
  // arithmetic is element for element the same.
  const int64_t row = L * P * 2;
  const auto offsets = sampling_offsets(query).view({B, Q, H, row});
  const auto weights =
      attention_weights(query).view({B, Q, H, L * P}).softmax(-1).view({B, Q, H, L, P});
  const auto per_point = [&](const torch::Tensor& t) {  // [B, Q, L, 2] -> [B, Q, 1, L P 2]
    return t.unsqueeze(3).expand({B, Q, L, P, 2}).reshape({B, Q, 1, row});
  };
  torch::Tensor locations;
  if (reference_points.size(-1) == 2) {
    std::vector<float> wh;
    for (const auto& s : shapes) {
      for (int64_t p = 0; p < P; ++p) {
        wh.push_back(float(s[1]));
        wh.push_back(float(s[0]));
      }
    }
    const auto normalizer = torch::tensor(wh, query.options());
    // One pass, one tensor: ref + offsets / normalizer with the same two roundings.
    locations = torch::addcdiv(per_point(reference_points), offsets, normalizer);
  } else {
    TORCH_CHECK(reference_points.size(-1) == 4,
                "MSDeformAttn: reference points must have 2 or 4 "
                "coordinates, got ",
                reference_points.sizes());
    // xy + offsets / P * wh * 0.5 in one pass (the same roundings where P is a power of two).
    locations = torch::addcmul(per_point(reference_points.narrow(-1, 0, 2)), offsets,
                               per_point(reference_points.narrow(-1, 2, 2)), 0.5 / double(P));
  }
  locations = locations.view({B, Q, H, L, P, 2});
  const auto sampled = options_.kernel == MSDeformAttnKernel::kGridSample
                           ? ms_deform_attn_grid_sample(v, shapes, locations, weights)
                           : ms_deform_attn(v, shapes, locations, weights);
  return output_proj(sampled);
}

}  // namespace aligndetr::ops
