// The CUDA kernels' autograd function: locations and weights are read in value's accumulation
// type (float32 for half, bfloat16 and float values) and their gradients are returned in the
// dtypes they came in.

#include <torch/torch.h>

#include "aligndetr/ops/ms_deform_attn.h"
#include "ms_deform_attn_check.h"
#include "ms_deform_attn_cuda.h"

namespace aligndetr::ops {
namespace {

class CudaMSDeformAttn : public torch::autograd::Function<CudaMSDeformAttn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& value,
                               const torch::Tensor& loc, const torch::Tensor& attn,
                               const std::vector<int64_t>& flat_shapes) {
    const auto acc = value.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat;
    const auto v = value.contiguous();
    const auto lc = loc.to(acc).contiguous(), a = attn.to(acc).contiguous();
    ctx->save_for_backward({v, lc, a});
    ctx->saved_data["shapes"] = flat_shapes;
    ctx->saved_data["loc_dtype"] = static_cast<int64_t>(loc.scalar_type());
    ctx->saved_data["attn_dtype"] = static_cast<int64_t>(attn.scalar_type());
    return cuda::forward(v, flat_shapes, lc, a);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &v = saved[0], &lc = saved[1], &a = saved[2];
    const auto go = grads[0].to(v.scalar_type()).contiguous();
    const auto g = cuda::backward(v, ctx->saved_data["shapes"].toIntVector(), lc, a, go);
    const auto loc_dtype = static_cast<torch::ScalarType>(ctx->saved_data["loc_dtype"].toInt());
    const auto attn_dtype = static_cast<torch::ScalarType>(ctx->saved_data["attn_dtype"].toInt());
    return {g[0], g[1].to(loc_dtype), g[2].to(attn_dtype), torch::Tensor()};
  }
};

}  // namespace

bool ms_deform_attn_cuda_built() {
  return true;
}

torch::Tensor ms_deform_attn_cuda(const torch::Tensor& value, const SpatialShapes& shapes,
                                  const torch::Tensor& sampling_locations,
                                  const torch::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, shapes, sampling_locations, attention_weights);
  TORCH_CHECK(value.is_cuda() && sampling_locations.device() == value.device() &&
                  attention_weights.device() == value.device(),
              "ms_deform_attn_cuda: all inputs must be on one CUDA device, got ", value.device(),
              ", ", sampling_locations.device(), ", ", attention_weights.device());
  TORCH_CHECK(value.is_floating_point() && sampling_locations.is_floating_point() &&
                  attention_weights.is_floating_point(),
              "ms_deform_attn_cuda: inputs must be floating point");
  TORCH_CHECK(
      value.size(0) == sampling_locations.size(0) && value.size(2) == sampling_locations.size(2),
      "ms_deform_attn_cuda: value ", value.sizes(), " and sampling_locations ",
      sampling_locations.sizes(), " disagree on batch or heads");
  std::vector<int64_t> flat;
  for (const auto& s : shapes) {
    flat.push_back(s[0]);
    flat.push_back(s[1]);
  }
  return CudaMSDeformAttn::apply(value, sampling_locations, attention_weights, flat);
}

}  // namespace aligndetr::ops
