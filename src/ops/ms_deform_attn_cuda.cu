// CUDA kernels of multi-scale deformable attention, with the CPU kernel's semantics (bilinear,
// zero padding, align_corners=False). One warp per (batch, query, head): its lanes run over the
// head's channels, so the value reads of a sample are coalesced, and the backward pass reduces
// the per-sample sums (attention-weight and location gradients) with warp shuffles instead of
// shared memory. Value gradients are scattered with float32 (double for double) atomics; half
// and bfloat16 values are read as they are and accumulated in float32.

#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "ms_deform_attn_cuda.h"

namespace aligndetr::ops::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;

struct Levels {
  int count;
  int height[kMaxLevels], width[kMaxLevels];
  int64_t start[kMaxLevels];
};

struct Problem {
  int64_t warps;  // B * Q * H
  int64_t tokens;
  int Q, H, D, P;
  Levels levels;
};

// The up to four pixels a sample at continuous pixel coordinates (x, y) reads; pixels outside
// the level get weight 0 and token -1.
template <typename acc_t>
struct Corners {
  int64_t token[4];
  acc_t weight[4], dweight_dx[4], dweight_dy[4];

  __device__ Corners(acc_t x, acc_t y, int h, int w) {
    for (int k = 0; k < 4; ++k) {
      token[k] = -1;
      weight[k] = dweight_dx[k] = dweight_dy[k] = acc_t(0);
    }
    // Written so that NaN coordinates read nothing.
    if (!(x > acc_t(-1) && y > acc_t(-1) && x < acc_t(w) && y < acc_t(h))) return;
    const acc_t xf = floor(x), yf = floor(y);
    const acc_t fx = x - xf, fy = y - yf;
    const int x0 = int(xf), y0 = int(yf);
    for (int dy = 0; dy <= 1; ++dy) {
      const int yi = y0 + dy;
      const acc_t wy = dy ? fy : acc_t(1) - fy;
      const acc_t sy = dy ? acc_t(1) : acc_t(-1);
      for (int dx = 0; dx <= 1; ++dx) {
        const int xi = x0 + dx;
        if (yi < 0 || yi >= h || xi < 0 || xi >= w) continue;
        const int k = 2 * dy + dx;
        const acc_t wx = dx ? fx : acc_t(1) - fx;
        const acc_t sx = dx ? acc_t(1) : acc_t(-1);
        token[k] = int64_t(yi) * w + xi;
        weight[k] = wx * wy;
        dweight_dx[k] = sx * wy;
        dweight_dy[k] = wx * sy;
      }
    }
  }
};

template <typename acc_t>
__device__ acc_t warp_sum(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ value, const acc_t* __restrict__ loc,
                               const acc_t* __restrict__ attn, scalar_t* __restrict__ out,
                               Problem pb) {
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = int(threadIdx.x % kWarp);
  if (warp >= pb.warps) return;
  const int64_t b = warp / (int64_t(pb.Q) * pb.H);
  const int h = int(warp % pb.H);
  const int H = pb.H, D = pb.D, P = pb.P;
  const scalar_t* vb = value + b * pb.tokens * H * D;
  for (int d = lane; d < D; d += kWarp) {
    acc_t acc = 0;
    for (int l = 0; l < pb.levels.count; ++l) {
      const int lh = pb.levels.height[l], lw = pb.levels.width[l];
      for (int p = 0; p < P; ++p) {
        const int64_t i = (warp * pb.levels.count + l) * P + p;
        const Corners<acc_t> c(loc[2 * i] * acc_t(lw) - acc_t(0.5),
                               loc[2 * i + 1] * acc_t(lh) - acc_t(0.5), lh, lw);
        const acc_t a = attn[i];
        for (int k = 0; k < 4; ++k) {
          if (c.token[k] < 0) continue;
          const acc_t v =
              static_cast<acc_t>(vb[((pb.levels.start[l] + c.token[k]) * H + h) * D + d]);
          acc += a * c.weight[k] * v;
        }
      }
    }
    out[warp * D + d] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ value, const acc_t* __restrict__ loc,
                                const acc_t* __restrict__ attn,
                                const scalar_t* __restrict__ grad_out,
                                acc_t* __restrict__ grad_value, acc_t* __restrict__ grad_loc,
                                acc_t* __restrict__ grad_attn, Problem pb) {
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = int(threadIdx.x % kWarp);
  // The whole warp leaves together (warp is the same for its 32 lanes), so the shuffles below
  // always see every lane.
  if (warp >= pb.warps) return;
  const int64_t b = warp / (int64_t(pb.Q) * pb.H);
  const int h = int(warp % pb.H);
  const int H = pb.H, D = pb.D, P = pb.P;
  const int64_t base = b * pb.tokens * H * D;
  const scalar_t* vb = value + base;
  acc_t* gvb = grad_value + base;
  const scalar_t* go = grad_out + warp * D;
  for (int l = 0; l < pb.levels.count; ++l) {
    const int lh = pb.levels.height[l], lw = pb.levels.width[l];
    for (int p = 0; p < P; ++p) {
      const int64_t i = (warp * pb.levels.count + l) * P + p;
      const Corners<acc_t> c(loc[2 * i] * acc_t(lw) - acc_t(0.5),
                             loc[2 * i + 1] * acc_t(lh) - acc_t(0.5), lh, lw);
      const acc_t a = attn[i];
      acc_t sample_dot = 0, gx = 0, gy = 0;
      for (int d = lane; d < D; d += kWarp) {
        const acc_t g = static_cast<acc_t>(go[d]);
        for (int k = 0; k < 4; ++k) {
          if (c.token[k] < 0) continue;
          const int64_t offset = ((pb.levels.start[l] + c.token[k]) * H + h) * D + d;
          const acc_t dot = g * static_cast<acc_t>(vb[offset]);
          atomicAdd(gvb + offset, a * c.weight[k] * g);
          sample_dot += c.weight[k] * dot;
          gx += c.dweight_dx[k] * dot;
          gy += c.dweight_dy[k] * dot;
        }
      }
      sample_dot = warp_sum(sample_dot);
      gx = warp_sum(gx);
      gy = warp_sum(gy);
      if (lane == 0) {
        grad_attn[i] = sample_dot;
        grad_loc[2 * i] = a * gx * acc_t(lw);
        grad_loc[2 * i + 1] = a * gy * acc_t(lh);
      }
    }
  }
}

Problem problem(const at::Tensor& value, const std::vector<int64_t>& flat_shapes,
                const at::Tensor& loc) {
  Problem pb{};
  pb.warps = value.size(0) * loc.size(1) * value.size(2);
  pb.tokens = value.size(1);
  pb.Q = int(loc.size(1));
  pb.H = int(value.size(2));
  pb.D = int(value.size(3));
  pb.P = int(loc.size(4));
  pb.levels.count = int(flat_shapes.size() / 2);
  TORCH_CHECK(pb.levels.count <= kMaxLevels, "ms_deform_attn_cuda: at most ", kMaxLevels,
              " levels, got ", pb.levels.count);
  int64_t start = 0;
  for (int l = 0; l < pb.levels.count; ++l) {
    pb.levels.height[l] = int(flat_shapes[size_t(2 * l)]);
    pb.levels.width[l] = int(flat_shapes[size_t(2 * l + 1)]);
    pb.levels.start[l] = start;
    start += flat_shapes[size_t(2 * l)] * flat_shapes[size_t(2 * l + 1)];
  }
  return pb;
}

unsigned blocks(const Problem& pb) {
  return unsigned((pb.warps * kWarp + kThreads - 1) / kThreads);
}

}  // namespace

at::Tensor forward(const at::Tensor& value, const std::vector<int64_t>& flat_shapes,
                   const at::Tensor& loc, const at::Tensor& attn) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Problem pb = problem(value, flat_shapes, loc);
  auto out =
      at::empty({value.size(0), loc.size(1), value.size(2) * value.size(3)}, value.options());
  if (pb.warps == 0) return out;
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::ScalarType::Half, at::ScalarType::BFloat16,
                                  value.scalar_type(), "ms_deform_attn_cuda_forward", [&] {
                                    using acc_t = at::acc_type<scalar_t, true>;
                                    forward_kernel<scalar_t, acc_t>
                                        <<<blocks(pb), kThreads, 0, stream>>>(
                                            value.data_ptr<scalar_t>(), loc.data_ptr<acc_t>(),
                                            attn.data_ptr<acc_t>(), out.data_ptr<scalar_t>(), pb);
                                    C10_CUDA_KERNEL_LAUNCH_CHECK();
                                  });
  return out;
}

std::array<at::Tensor, 3> backward(const at::Tensor& value, const std::vector<int64_t>& flat_shapes,
                                   const at::Tensor& loc, const at::Tensor& attn,
                                   const at::Tensor& grad_out) {
  const c10::cuda::CUDAGuard guard(value.device());
  const Problem pb = problem(value, flat_shapes, loc);
  auto grad_value = at::zeros(value.sizes(), value.options().dtype(loc.scalar_type()));
  auto grad_loc = at::zeros_like(loc);
  auto grad_attn = at::zeros_like(attn);
  if (pb.warps == 0) return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
  const auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::ScalarType::Half, at::ScalarType::BFloat16, value.scalar_type(),
      "ms_deform_attn_cuda_backward", [&] {
        using acc_t = at::acc_type<scalar_t, true>;
        backward_kernel<scalar_t, acc_t><<<blocks(pb), kThreads, 0, stream>>>(
            value.data_ptr<scalar_t>(), loc.data_ptr<acc_t>(), attn.data_ptr<acc_t>(),
            grad_out.data_ptr<scalar_t>(), grad_value.data_ptr<acc_t>(), grad_loc.data_ptr<acc_t>(),
            grad_attn.data_ptr<acc_t>(), pb);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {grad_value.to(value.scalar_type()), grad_loc, grad_attn};
}

}  // namespace aligndetr::ops::cuda
