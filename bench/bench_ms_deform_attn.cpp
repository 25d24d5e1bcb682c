// Multi-scale deformable attention (grid_sample kernel) at the tiny config's encoder shape
// (width 128, 4 heads, 4 levels, 4 points, a 256x320 image: 1,700 tokens), next to the
// ResNet-18 backbone's forward and backward on the same image as the baseline. One encoder
// layer's attention costs more than the whole backbone: it is where a fused kernel would pay.
//
//   ./build/bench/bench_ms_deform_attn

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "aligndetr/engine/runtime.h"
#include "aligndetr/model/backbone.h"
#include "aligndetr/ops/ms_deform_attn.h"

namespace {

using namespace aligndetr;

const ops::SpatialShapes kShapes = {{32, 40}, {16, 20}, {8, 10}, {4, 5}};

void BM_DeformAttnForward(benchmark::State& state) {
  torch::manual_seed(0);
  ops::MSDeformAttn attn(ops::MSDeformAttnOptions{128, 4, 4, 4});
  const auto q = torch::randn({1, 1700, 128});
  const auto ref = torch::rand({1, 1700, 4, 2});
  torch::NoGradGuard no_grad;
  for (auto _ : state) benchmark::DoNotOptimize(attn->forward(q, q, ref, kShapes).data_ptr());
}

void BM_DeformAttnForwardBackward(benchmark::State& state) {
  torch::manual_seed(0);
  ops::MSDeformAttn attn(ops::MSDeformAttnOptions{128, 4, 4, 4});
  const auto q = torch::randn({1, 1700, 128}, torch::requires_grad());
  const auto ref = torch::rand({1, 1700, 4, 2});
  for (auto _ : state) attn->forward(q, q, ref, kShapes).sum().backward();
}

void BM_ResNet18ForwardBackward(benchmark::State& state) {
  ResNetOptions o;
  o.depth = 18;
  ResNet net(o);
  const auto x = torch::randn({1, 3, 256, 320});
  for (auto _ : state) {
    const auto f = net->forward(x);
    (f[0].sum() + f[1].sum() + f[2].sum()).backward();
  }
}

BENCHMARK(BM_DeformAttnForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_DeformAttnForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_ResNet18ForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  configure_runtime(0);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
