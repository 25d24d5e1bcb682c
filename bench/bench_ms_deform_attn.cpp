// Multi-scale deformable attention at the tiny config's encoder shape (width 128, 4 heads of 32,
// 4 levels, 4 points, a 256x320 image: 1,700 tokens, every token a query). The fused CPU kernel
// against the grid_sample formulation (the baseline), forward and forward+backward, then the
// whole attention module (projections included) and the ResNet-18 backbone on the same image for
// scale. Then the R50 DINO-4scale encoder's shape (800x1216: 20,197 tokens, 8 heads of 32) with
// every query sampling near its own position as the trained model does (uniform random locations
// would hide how the kernel uses the cache): forward, and forward+backward at the training
// shape (two 320x480 images).
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

// Queries of every level at their pixel centres, each head's points 1..P pixels away along its
// own direction (DINO's initial sampling offsets), value, locations and weights as the encoder
// passes them.
Inputs encoder_inputs(const ops::SpatialShapes& shapes, int64_t batch, bool grad) {
  constexpr int64_t heads = 8;
  torch::manual_seed(0);
  std::vector<torch::Tensor> refs;
  for (const auto& s : shapes) {
    const auto y = (torch::arange(s[0]).to(torch::kFloat) + 0.5) / s[0];
    const auto x = (torch::arange(s[1]).to(torch::kFloat) + 0.5) / s[1];
    const auto grid = torch::meshgrid({y, x}, "ij");
    refs.push_back(torch::stack({grid[1].flatten(), grid[0].flatten()}, -1));
  }
  const auto ref = torch::cat(refs).view({1, -1, 1, 1, 1, 2});
  const int64_t tokens = ref.size(1);
  const auto angle = torch::arange(heads).to(torch::kFloat) * (2 * M_PI / heads);
  const auto dir = torch::stack({angle.cos(), angle.sin()}, -1).view({1, 1, heads, 1, 1, 2});
  const auto step = (torch::arange(kPoints).to(torch::kFloat) + 1).view({1, 1, 1, 1, -1, 1});
  std::vector<float> size_xy;
  for (const auto& s : shapes) size_xy.insert(size_xy.end(), {float(s[1]), float(s[0])});
  const auto level = torch::tensor(size_xy).view({1, 1, 1, kLevels, 1, 2});
  const auto loc = (ref + dir * step / level).expand({batch, tokens, heads, kLevels, kPoints, 2});
  const auto opts = torch::TensorOptions().requires_grad(grad);
  return {torch::randn({batch, tokens, heads, kHeadDim}, opts),
          loc.contiguous().set_requires_grad(grad),
          torch::rand({batch, tokens, heads, kLevels, kPoints}, opts)};
}

const ops::SpatialShapes kR50Inference = {{100, 152}, {50, 76}, {25, 38}, {13, 19}};
const ops::SpatialShapes kR50Training = {{40, 60}, {20, 30}, {10, 15}, {5, 8}};

void BM_FusedForwardR50Encoder(benchmark::State& state) {
  const Inputs in = encoder_inputs(kR50Inference, 1, false);
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        ops::ms_deform_attn_cpu(in.value, kR50Inference, in.loc, in.weights).data_ptr());
  }
}

void BM_FusedForwardBackwardR50EncoderTraining(benchmark::State& state) {
  const Inputs in = encoder_inputs(kR50Training, 2, true);
  for (auto _ : state) {
    ops::ms_deform_attn_cpu(in.value, kR50Training, in.loc, in.weights).sum().backward();
  }
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
BENCHMARK(BM_FusedForwardR50Encoder)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FusedForwardBackwardR50EncoderTraining)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  return run_torch_benchmarks(argc, argv);
}
