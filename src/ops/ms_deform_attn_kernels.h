#pragma once
// The loops of the fused CPU kernel of multi-scale deformable attention, free of LibTorch so that
// they compile twice: for any x86-64 (ms_deform_attn_cpu.cpp) and for AVX2 + FMA
// (ms_deform_attn_cpu_avx2.cpp, picked at run time when the CPU has them: 1.45x on the forward,
// 1.25x on forward + backward, bench_ms_deform_attn). Nothing here may be an inline function or
// a template shared with other files: the linker could keep the AVX2 copy for every caller.

#include <cstdint>

namespace aligndetr::ops::kernel {

// Sizes of one call: value [B, S, H, D], locations [B, Q, H, L, P, 2], weights [B, Q, H, L, P];
// level l is height[l] x width[l] tokens from start[l].
struct Geometry {
  int64_t B, S, H, D, Q, L, P;
  const int64_t* height;
  const int64_t* width;
  const int64_t* start;
};

// The forward also reads a bfloat16 value (its bits; inference under autocast): each element is
// widened exactly in registers and the sums are float32's, so the result is the float32 kernel's
// on the widened value, at half the memory traffic of the samples.

// Runs body(context, begin, end) over [0, n) in chunks of at least `grain`, in parallel.
using Body = void (*)(void* context, int64_t begin, int64_t end);
using ParallelFor = void (*)(int64_t n, int64_t grain, Body body, void* context);

// One set per instruction set: `generic` (any x86-64 or other CPU) and `avx2`.
#define ALIGNDETR_DEFORM_KERNELS(ns)                                                               \
  namespace ns {                                                                                   \
  void forward(const Geometry& g, const float* value, const float* loc, const float* attn,         \
               float* out, ParallelFor parallel);                                                  \
  void forward(const Geometry& g, const double* value, const double* loc, const double* attn,      \
               double* out, ParallelFor parallel);                                                 \
  void forward(const Geometry& g, const uint16_t* value_bf16, const float* loc, const float* attn, \
               float* out, ParallelFor parallel);                                                  \
  void backward(const Geometry& g, const float* value, const float* loc, const float* attn,        \
                const float* grad_out, float* grad_value, float* grad_loc, float* grad_attn,       \
                ParallelFor parallel);                                                             \
  void backward(const Geometry& g, const double* value, const double* loc, const double* attn,     \
                const double* grad_out, double* grad_value, double* grad_loc, double* grad_attn,   \
                ParallelFor parallel);                                                             \
  }
ALIGNDETR_DEFORM_KERNELS(generic)
ALIGNDETR_DEFORM_KERNELS(avx2)
#undef ALIGNDETR_DEFORM_KERNELS

}  // namespace aligndetr::ops::kernel
