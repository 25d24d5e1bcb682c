#pragma once
// Thread count for the LibTorch benchmarks: ALIGNDETR_BENCH_THREADS if set, else every core.
// On a shared machine a second busy process stalls OpenMP teams that expect every core, so a
// single-thread run is the one to compare there.

#include <cstdlib>

#include <benchmark/benchmark.h>

#include "aligndetr/engine/runtime.h"

inline int configure_bench_threads() {
  const char* threads = std::getenv("ALIGNDETR_BENCH_THREADS");
  return aligndetr::engine::configure_runtime(threads ? std::atoi(threads) : 0);
}

// main() of a LibTorch benchmark: the thread count above, then Google Benchmark as usual.
inline int run_torch_benchmarks(int argc, char** argv) {
  configure_bench_threads();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
