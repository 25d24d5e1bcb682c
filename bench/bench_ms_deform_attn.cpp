// Multi-scale deformable attention at the tiny config's encoder shape (width 128, 4 heads of 32,
// 4 levels, 4 points, a 256x320 image: 1,700 tokens, every token a query). The fused CPU kernel
// against the grid_sample formulation (the baseline), forward and forward+backward, then the
// whole attention module (projections included) and the ResNet-18 backbone on the same image for
// scale.
//
//   ./build/bench/bench_ms_deform_attn   (ALIGNDETR_BENCH_THREADS=1 for one thread)

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/ops/ms_deform_attn.h"
#include "bench_threads.h"

namespace {

using namespace aligndetr;

const ops::SpatialShapes kShapes = {{32, 40}, {16, 20}, {8, 10}, {4, 5}};
constexpr int64_t kTokens = 1700, kHeads = 4, kHeadDim = 32, kLevels = 4, kPoints = 4;

struct Inputs {
  torch::Tensor value, loc, weights;
};

Inputs inputs(bool grad) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().requires_grad(grad);
  return {torch::randn({1, kTokens, kHeads, kHeadDim}, opts),
          torch::rand({1, kTokens, kHeads, kLevels, kPoints, 2}, opts),
          torch::rand({1, kTokens, kHeads, kLevels, kPoints}, opts)};
}

template <typename Kernel>
void kernel_forward(benchmark::State& state, Kernel kernel) {
  const Inputs in = inputs(false);
  for (auto _ : state) {
    benchmark::DoNotOptimize(kernel(in.value, kShapes, in.loc, in.weights).data_ptr());
  }
}

template <typename Kernel>
void kernel_forward_backward(benchmark::State& state, Kernel kernel) {
  const Inputs in = inputs(true);
  for (auto _ : state) kernel(in.value, kShapes, in.loc, in.weights).sum().backward();
}

void BM_FusedForward(benchmark::State& s) {
  kernel_forward(s, ops::ms_deform_attn_cpu);
}
void BM_GridSampleForward(benchmark::State& s) {
  kernel_forward(s, ops::ms_deform_attn_grid_sample);
}
void BM_FusedForwardBackward(benchmark::State& s) {
  kernel_forward_backward(s, ops::ms_deform_attn_cpu);
}
void BM_GridSampleForwardBackward(benchmark::State& s) {
  kernel_forward_backward(s, ops::ms_deform_attn_grid_sample);
}

void BM_AttentionModuleForwardBackward(benchmark::State& state) {
  torch::manual_seed(0);
  ops::MSDeformAttnOptions o;
  o.embed_dim = kHeads * kHeadDim;
  o.num_heads = kHeads;
  o.num_levels = kLevels;
  o.num_points = kPoints;
  ops::MSDeformAttn attn(o);
  const auto q = torch::randn({1, kTokens, kHeads * kHeadDim}, torch::requires_grad());
  const auto ref = torch::rand({1, kTokens, kLevels, 2});
  for (auto _ : state) attn->forward(q, q, ref, kShapes).sum().backward();
}

void BM_ResNet18ForwardBackward(benchmark::State& state) {
  model::ResNetOptions o;
  o.depth = 18;
  model::ResNet net(o);
  const auto x = torch::randn({1, 3, 256, 320});
  for (auto _ : state) {
    const auto f = net->forward(x);
    (f[0].sum() + f[1].sum() + f[2].sum()).backward();
  }
}

BENCHMARK(BM_FusedForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GridSampleForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FusedForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GridSampleForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionModuleForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ResNet18ForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  return run_torch_benchmarks(argc, argv);
}
