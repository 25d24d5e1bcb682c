// Linear assignment on DETR-shaped matrices. Baseline: scipy.optimize.linear_sum_assignment on
// this machine class takes 0.030, 0.40, 1.5 and 2.5 ms for 900x10, 900x100, 900x300 and
// 300x300 uniform random costs. The tiled cases are many-to-one matching: Q queries against k
// copies of n GT columns, which makes many exact ties.

#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "aligndetr/matching/lsap.h"

namespace {

std::vector<double> uniform_costs(int64_t rows, int64_t cols, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> c(rows * cols);
  for (double& x : c) x = u(rng);
  return c;
}

// Q x n costs repeated k times side by side, as in many-to-one matching.
std::vector<double> tiled_costs(int64_t rows, int64_t n, int64_t k, unsigned seed) {
  const std::vector<double> base = uniform_costs(rows, n, seed);
  std::vector<double> c(rows * n * k);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < n * k; ++j) c[i * n * k + j] = base[i * n + j % n];
  return c;
}

void BM_LsapUniform(benchmark::State& state) {
  const int64_t rows = state.range(0), cols = state.range(1);
  std::vector<std::vector<double>> inputs;
  for (unsigned s = 0; s < 8; ++s) inputs.push_back(uniform_costs(rows, cols, s));
  size_t it = 0;
  for (auto _ : state) {
    auto a = aligndetr::matching::linear_sum_assignment(inputs[it++ % inputs.size()], rows, cols);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_LsapUniform)
    ->Args({900, 10})
    ->Args({900, 100})
    ->Args({900, 300})
    ->Args({300, 300})
    ->Unit(benchmark::kMillisecond);

void BM_LsapTiled(benchmark::State& state) {
  const int64_t rows = state.range(0), n = state.range(1), k = state.range(2);
  std::vector<std::vector<double>> inputs;
  for (unsigned s = 0; s < 8; ++s) inputs.push_back(tiled_costs(rows, n, k, s));
  size_t it = 0;
  for (auto _ : state) {
    auto a = aligndetr::matching::linear_sum_assignment(inputs[it++ % inputs.size()], rows, n * k);
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_LsapTiled)->Args({900, 20, 3})->Args({900, 100, 3})->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
