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

namespace aligndetr::ops {
namespace {

struct Geometry {
  int64_t B, S, H, D, Q, L, P;
  std::vector<int64_t> height, width, start;
};

Geometry geometry(const torch::Tensor& value, const std::vector<int64_t>& flat_shapes,
                  const torch::Tensor& loc) {
  Geometry g{value.size(0),
             value.size(1),
             value.size(2),
             value.size(3),
             loc.size(1),
             loc.size(3),
             loc.size(4),
             {},
             {},
             {}};
  int64_t start = 0;
  for (int64_t l = 0; l < g.L; ++l) {
    g.height.push_back(flat_shapes[size_t(2 * l)]);
    g.width.push_back(flat_shapes[size_t(2 * l + 1)]);
    g.start.push_back(start);
    start += g.height.back() * g.width.back();
  }
  return g;
}

// The up to four pixels a sample at continuous pixel coordinates (x, y) reads, with their
// bilinear weights and the weights' derivatives along x and y. Pixels outside the level are left
// out (zero padding).
template <typename T>
struct Corners {
  int n = 0;
  int64_t token[4];
  T weight[4], dweight_dx[4], dweight_dy[4];

  Corners(T x, T y, int64_t h, int64_t w) {
    // Written so that NaN coordinates read nothing.
    if (!(x > T(-1) && y > T(-1) && x < T(w) && y < T(h))) return;
    const T xf = std::floor(x), yf = std::floor(y);
    const T fx = x - xf, fy = y - yf;
    const auto x0 = int64_t(xf), y0 = int64_t(yf);
    for (int dy = 0; dy <= 1; ++dy) {
      const int64_t yi = y0 + dy;
      if (yi < 0 || yi >= h) continue;
      const T wy = dy ? fy : 1 - fy;
      const T sy = dy ? T(1) : T(-1);
      for (int dx = 0; dx <= 1; ++dx) {
        const int64_t xi = x0 + dx;
        if (xi < 0 || xi >= w) continue;
        const T wx = dx ? fx : 1 - fx;
        const T sx = dx ? T(1) : T(-1);
        token[n] = yi * w + xi;
        weight[n] = wx * wy;
        dweight_dx[n] = sx * wy;
        dweight_dy[n] = wx * sy;
        ++n;
      }
    }
  }
};

// Eight partial sums so the compiler can vectorise the reduction without reordering licence.
template <typename T>
T dot_product(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

template <typename T>
void forward_kernel(const Geometry& g, const T* value, const T* loc, const T* attn, T* out) {
  const int64_t H = g.H, D = g.D, L = g.L, P = g.P, Q = g.Q;
  at::parallel_for(0, g.B * Q, 16, [&](int64_t begin, int64_t end) {
    for (int64_t bq = begin; bq < end; ++bq) {
      const T* vb = value + (bq / Q) * g.S * H * D;
      for (int64_t h = 0; h < H; ++h) {
        T* __restrict o = out + (bq * H + h) * D;
        for (int64_t d = 0; d < D; ++d) o[d] = 0;
        for (int64_t l = 0; l < L; ++l) {
          for (int64_t p = 0; p < P; ++p) {
            const int64_t i = ((bq * H + h) * L + l) * P + p;
            const Corners<T> c(loc[2 * i] * T(g.width[l]) - T(0.5),
                               loc[2 * i + 1] * T(g.height[l]) - T(0.5), g.height[l], g.width[l]);
            for (int k = 0; k < c.n; ++k) {
              const T* v = vb + ((g.start[l] + c.token[k]) * H + h) * D;
              const T a = attn[i] * c.weight[k];
              for (int64_t d = 0; d < D; ++d) o[d] += a * v[d];
            }
          }
        }
      }
    }
  });
}

template <typename T>
void backward_kernel(const Geometry& g, const T* value, const T* loc, const T* attn,
                     const T* grad_out, T* grad_value, T* grad_loc, T* grad_attn) {
  const int64_t H = g.H, D = g.D, L = g.L, P = g.P, Q = g.Q;
  // Each (batch, head) owns its own slice of grad_value: threads never write the same element.
  at::parallel_for(0, g.B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T* vb = value + b * g.S * H * D;
      T* gvb = grad_value + b * g.S * H * D;
      for (int64_t q = 0; q < Q; ++q) {
        const int64_t bq = b * Q + q;
        const T* go = grad_out + (bq * H + h) * D;
        for (int64_t l = 0; l < L; ++l) {
          const T w = T(g.width[l]), hh = T(g.height[l]);
          for (int64_t p = 0; p < P; ++p) {
            const int64_t i = ((bq * H + h) * L + l) * P + p;
            const Corners<T> c(loc[2 * i] * w - T(0.5), loc[2 * i + 1] * hh - T(0.5), g.height[l],
                               g.width[l]);
            T sample_dot = 0, gx = 0, gy = 0;
            for (int k = 0; k < c.n; ++k) {
              const int64_t offset = ((g.start[l] + c.token[k]) * H + h) * D;
              const T dot = dot_product(go, vb + offset, D);
              T* __restrict gv = gvb + offset;
              const T a = attn[i] * c.weight[k];
              for (int64_t d = 0; d < D; ++d) gv[d] += a * go[d];
              sample_dot += c.weight[k] * dot;
              gx += c.dweight_dx[k] * dot;
              gy += c.dweight_dy[k] * dot;
            }
            grad_attn[i] = sample_dot;
            grad_loc[2 * i] = attn[i] * gx * w;
            grad_loc[2 * i + 1] = attn[i] * gy * hh;
          }
        }
      }
    }
  });
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
    const Geometry g = geometry(v, flat_shapes, lc);
    auto out = torch::empty({g.B, g.Q, g.H * g.D}, v.options());
    AT_DISPATCH_FLOATING_TYPES(v.scalar_type(), "ms_deform_attn_cpu_forward", [&] {
      forward_kernel<scalar_t>(g, v.data_ptr<scalar_t>(), lc.data_ptr<scalar_t>(),
                               a.data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
    });
    return out;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    RECORD_FUNCTION("aligndetr::ms_deform_attn_cpu_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const auto &v = saved[0], &lc = saved[1], &a = saved[2];
    const Geometry g = geometry(v, ctx->saved_data["shapes"].toIntVector(), lc);
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

torch::Tensor ms_deform_attn_cpu(const torch::Tensor& value, const SpatialShapes& shapes,
                                 const torch::Tensor& sampling_locations,
                                 const torch::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, shapes, sampling_locations, attention_weights);
  TORCH_CHECK(value.is_cpu() && sampling_locations.is_cpu() && attention_weights.is_cpu(),
              "ms_deform_attn_cpu: all inputs must be on the CPU");
  TORCH_CHECK(value.scalar_type() == sampling_locations.scalar_type() &&
                  value.scalar_type() == attention_weights.scalar_type(),
              "ms_deform_attn_cpu: value, locations and weights must share one dtype");
  TORCH_CHECK(
      value.size(0) == sampling_locations.size(0) && value.size(2) == sampling_locations.size(2),
      "ms_deform_attn_cpu: value ", value.sizes(), " and sampling_locations ",
      sampling_locations.sizes(), " disagree on batch or heads");
  std::vector<int64_t> flat;
  for (const auto& s : shapes) {
    flat.push_back(s[0]);
    flat.push_back(s[1]);
  }
  return FusedMSDeformAttn::apply(value, sampling_locations, attention_weights, flat);
}

}  // namespace aligndetr::ops
