// Self-attention at the R50 DINO decoder's training shape: 2 images x 8 heads of 32, 1,100 queries
// (900 matching + 200 denoising) under DINO's denoising mask. ops::blocked_attention against the
// dense formulation LibTorch's MultiheadAttention runs (bmm, masked softmax, bmm: the baseline),
// forward alone and forward+backward. The arguments are the blocked version's rows per block and
// whether it runs the fused AVX-512 loops (1, where the CPU has them) or two BLAS products and
// LibTorch's softmax per block (0).
//
//   ./build/bench/bench_attention   (ALIGNDETR_BENCH_THREADS=1 for one thread)

#include <limits>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "aligndetr/model/denoising.h"
#include "aligndetr/ops/attention.h"
#include "bench_threads.h"

namespace {

using namespace aligndetr;

// Five denoising groups of 40 (20 boxes, positive and negative) under the model's own mask.
constexpr int64_t kImages = 2, kHeads = 8, kHeadDim = 32, kMatching = 900, kGroups = 5,
                  kGroupSize = 40, kQueries = kMatching + kGroups * kGroupSize;

struct Inputs {
  torch::Tensor q, k, v, mask;
};

Inputs inputs(bool grad) {
  torch::manual_seed(0);
  const auto opts = torch::TensorOptions().requires_grad(grad);
  const int64_t n = kImages * kHeads;
  return {torch::randn({n, kQueries, kHeadDim}, opts) / std::sqrt(double(kHeadDim)),
          torch::randn({n, kQueries, kHeadDim}, opts), torch::randn({n, kQueries, kHeadDim}, opts),
          model::denoising_attention_mask(kGroups, kGroupSize / 2, kMatching, torch::kCPU)};
}

torch::Tensor dense(const Inputs& in) {
  const auto s = torch::bmm(in.q, in.k.transpose(1, 2))
                     .masked_fill(in.mask, -std::numeric_limits<double>::infinity());
  return torch::bmm(torch::softmax(s, -1), in.v);
}

torch::Tensor blocked(const Inputs& in, const benchmark::State& state) {
  return ops::blocked_attention(in.q, in.k, in.v, in.mask, {}, kHeads, state.range(0),
                                state.range(1) != 0);
}

void BM_DenseForward(benchmark::State& state) {
  const Inputs in = inputs(false);
  for (auto _ : state) benchmark::DoNotOptimize(dense(in).data_ptr());
}
void BM_BlockedForward(benchmark::State& state) {
  const Inputs in = inputs(false);
  for (auto _ : state) benchmark::DoNotOptimize(blocked(in, state).data_ptr());
}
void BM_DenseForwardBackward(benchmark::State& state) {
  const Inputs in = inputs(true);
  for (auto _ : state) dense(in).sum().backward();
}
void BM_BlockedForwardBackward(benchmark::State& state) {
  const Inputs in = inputs(true);
  for (auto _ : state) blocked(in, state).sum().backward();
}

BENCHMARK(BM_DenseForward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BlockedForward)
    ->Args({128, 1})
    ->Args({128, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_DenseForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_BlockedForwardBackward)
    ->Args({128, 1})
    ->Args({128, 0})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  benchmark::AddCustomContext("attention kernel", ops::blocked_attention_kernel());
  return run_torch_benchmarks(argc, argv);
}
