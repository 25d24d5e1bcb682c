// The fused CPU kernel of multi-scale deformable attention. The grid_sample formulation
// materialises every sample as a [B*heads, Dh, Q, P] tensor per level and lets autograd keep
// them all; here each sample is read, weighted and accumulated in place, and the backward pass
// recomputes the bilinear weights instead of storing them.

#include <cmath>
#include <vector>

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "aligndetr/ops/ms_deform_attn.h"
#include "ms_deform_attn_check.h"

#define ALIGNDETR_KERNEL_SET generic
#include "ms_deform_attn_kernels.inc"
#undef ALIGNDETR_KERNEL_SET

namespace aligndetr::ops {
namespace {

// The sizes of a call, with the level tables the kernel's Geometry points into (hence neither
// copied nor moved).
struct Shapes {
  std::vector<int64_t> height, width, start;
  kernel::Geometry g{};

  Shapes(const torch::Tensor& value, const std::vector<int64_t>& flat_shapes,
         const torch::Tensor& loc) {
    const int64_t L = loc.size(3);
    int64_t first = 0;
    for (int64_t l = 0; l < L; ++l) {
      height.push_back(flat_shapes[size_t(2 * l)]);
      width.push_back(flat_shapes[size_t(2 * l + 1)]);
      start.push_back(first);
      first += height.back() * width.back();
    }
    g = {value.size(0), value.size(1), value.size(2), value.size(3), loc.size(1), L,
         loc.size(4),   height.data(), width.data(),  start.data()};
  }
  Shapes(const Shapes&) = delete;
  Shapes& operator=(const Shapes&) = delete;
};

void parallel_for(int64_t n, int64_t grain, kernel::Body body, void* context) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) { body(context, begin, end); });
}

// The AVX2 + FMA loops where the build has them and the CPU runs them.
bool use_avx2() {
#if defined(ALIGNDETR_KERNEL_AVX2)
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
#else
  return false;
#endif
}

// V is the value's element type: T, or a bfloat16's bits (uint16_t) with T = float.
template <typename V, typename T>
void forward_kernel(const kernel::Geometry& g, const V* value, const T* loc, const T* attn,
                    T* out) {
#if defined(ALIGNDETR_KERNEL_AVX2)
  if (use_avx2()) return kernel::avx2::forward(g, value, loc, attn, out, parallel_for);
#endif
  kernel::generic::forward(g, value, loc, attn, out, parallel_for);
}

template <typename T>
void backward_kernel(const kernel::Geometry& g, const T* value, const T* loc, const T* attn,
                     const T* grad_out, T* grad_value, T* grad_loc, T* grad_attn) {
#if defined(ALIGNDETR_KERNEL_AVX2)
  if (use_avx2()) {
    return kernel::avx2::backward(g, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn,
                                  parallel_for);
  }
#endif
  kernel::generic::backward(g, value, loc, attn, grad_out, grad_value, grad_loc, grad_attn,
                            parallel_for);
}

class FusedMSDeformAttn : public torch::autograd::Function<FusedMSDeformAttn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& value,
                               const torch::Tensor& loc, const torch::Tensor& attn,
                               const std::vector<int64_t>& flat_shapes) {
    // Named for profilers (aligndetr bench, LibTorch's): the kernel is no ATen operator.
    RECORD_FUNCTION("aligndetr::ms_deform_attn_cpu", std::vector<c10::IValue>());
    const auto v = value.contiguous(), lc = loc.contiguous(), a = attn.contiguous();
    ctx->save_for_backward({v, lc, a});
    ctx->saved_data["shapes"] = flat_shapes;
    const Shapes shapes(v, flat_shapes, lc);
    const auto& g = shapes.g;
    auto out = torch::empty({g.B, g.Q, g.H * g.D}, v.options());
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
      forward_kernel(g, v.data_ptr<scalar_t>(), lc.data_ptr<scalar_t>(), a.data_ptr<scalar_t>(),
                     out.data_ptr<scalar_t>());
    });
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    RECORD_FUNCTION("aligndetr::ms_deform_attn_cpu_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const auto &v = saved[0], &lc = saved[1], &a = saved[2];
    const Shapes shapes(v, ctx->saved_data["shapes"].toIntVector(), lc);
    const auto& g = shapes.g;
    const auto go = grads[0].contiguous();
    auto grad_value = torch::zeros_like(v);
    auto grad_loc = torch::empty_like(lc);
    auto grad_attn = torch::empty_like(a);
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "ms_deform_attn_cpu_backward", [&] {
      backward_kernel<scalar_t>(g, v.data_ptr<scalar_t>(), lc.data_ptr<scalar_t>(),
                                a.data_ptr<scalar_t>(), go.data_ptr<scalar_t>(),
                                grad_value.data_ptr<scalar_t>(), grad_loc.data_ptr<scalar_t>(),
                                grad_attn.data_ptr<scalar_t>());
    });
    return {grad_value, grad_loc, grad_attn, torch::Tensor()};
  }
};

}  // namespace

const char* ms_deform_attn_cpu_kernel() {
  return use_avx2() ? "avx2" : "generic";
}

torch::Tensor ms_deform_attn_cpu(const torch::Tensor& value, const SpatialShapes& shapes,
                                 const torch::Tensor& sampling_locations,
                                 const torch::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, shapes, sampling_locations, attention_weights);
  TORCH_CHECK(value.is_cpu() && sampling_locations.is_cpu() && attention_weights.is_cpu(),
              "ms_deform_attn_cpu: all inputs must be on the CPU");
  TORCH_CHECK(
      value.size(0) == sampling_locations.size(0) && value.size(2) == sampling_locations.size(2),
      "ms_deform_attn_cpu: value ", value.sizes(), " and sampling_locations ",
      sampling_locations.sizes(), " disagree on batch or heads");
  std::vector<int64_t> flat;
  for (const auto& s : shapes) {
    flat.push_back(s[0]);
    flat.push_back(s[1]);
  }
  if (value.scalar_type() == torch::kBFloat16) {
    TORCH_CHECK(sampling_locations.scalar_type() == torch::kFloat &&
                    attention_weights.scalar_type() == torch::kFloat,
                "ms_deform_attn_cpu: a bfloat16 value takes float32 locations and weights");
    TORCH_CHECK(!ms_deform_attn_needs_gradient(value, sampling_locations, attention_weights),
                "ms_deform_attn_cpu: a bfloat16 value is for inference (no gradients)");
    RECORD_FUNCTION("aligndetr::ms_deform_attn_cpu", std::vector<c10::IValue>());
    const auto v = value.contiguous(), lc = sampling_locations.contiguous(),
               a = attention_weights.contiguous();
    const Shapes s(v, flat, lc);
    auto out = torch::empty({s.g.B, s.g.Q, s.g.H * s.g.D}, lc.options());
    forward_kernel(s.g, reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>()),
                   lc.data_ptr<float>(), a.data_ptr<float>(), out.data_ptr<float>());
    return out;
  }
  TORCH_CHECK(value.scalar_type() == sampling_locations.scalar_type() &&
                  value.scalar_type() == attention_weights.scalar_type(),
              "ms_deform_attn_cpu: value, locations and weights must share one dtype");
  return FusedMSDeformAttn::apply(value, sampling_locations, attention_weights, flat);
}

}  // namespace aligndetr::ops
