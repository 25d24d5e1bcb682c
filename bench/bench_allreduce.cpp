// The communication of one data-parallel optimizer step: every trainable gradient of the tiny
// preset (configs/align_dino_tiny.yaml) and of the R50 DINO-4scale
// (configs/align_dino_r50_4scale_12ep.yaml) averaged over two ranks with Gloo on 127.0.0.1, in
// 25 MiB buckets, as the trainer does (Distributed::average). Baseline in the same run: the same
// bytes averaged in memory by one process (what the step costs without a network). The counters
// give the bytes per step and the rate; with a ring all-reduce each rank sends and receives
// about 2 (N - 1) / N of them, which gives the share of communication at N GPUs from a link's
// bandwidth.
//
//   ./build/bench/bench_allreduce   (each step also carries the trainer's 8-byte "continue" flag)

#include <atomic>
#include <thread>

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/experiment.h"
#include "bench_threads.h"

namespace {

using namespace aligndetr;

// Zero gradients shaped as the preset's trainable parameters.
std::vector<torch::Tensor> gradients(const char* preset) {
  const auto config =
      engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/" + preset);
  const auto model = engine::model_spec(config).build();
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) {
    if (p.requires_grad()) out.push_back(torch::randn_like(p));
  }
  return out;
}

int64_t bytes_of(const std::vector<torch::Tensor>& tensors) {
  int64_t n = 0;
  for (const auto& t : tensors) n += t.numel() * int64_t(t.element_size());
  return n;
}

void BM_GlooAverage(benchmark::State& state, const char* preset) {
  auto grads = gradients(preset);
  static std::atomic<int> port{29700};
  engine::LaunchEnv env;
  env.world_size = 2;
  env.master_port = port++;
  // Rank 1 mirrors rank 0's steps until told to stop.
  std::thread peer([env, preset] {
    auto mine = gradients(preset);
    auto e = env;
    e.rank = 1;
    const auto d = engine::Distributed::connect(e, {}, torch::kCPU);
    while (d->sum(0.0) > 0) d->average(mine);
  });
  const auto d = engine::Distributed::connect(env, {}, torch::kCPU);
  for (auto _ : state) {
    d->sum(1.0);
    d->average(grads);
  }
  d->sum(0.0);
  peer.join();
  const int64_t bytes = bytes_of(grads);
  state.counters["MB_per_step"] = double(bytes) / 1e6;
  state.SetBytesProcessed(int64_t(state.iterations()) * bytes);
}

void BM_LocalAverage(benchmark::State& state, const char* preset) {
  auto grads = gradients(preset);
  const auto other = gradients(preset);
  for (auto _ : state) {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < grads.size(); ++i) grads[i].add_(other[i]).mul_(0.5);
  }
  const int64_t bytes = bytes_of(grads);
  state.counters["MB_per_step"] = double(bytes) / 1e6;
  state.SetBytesProcessed(int64_t(state.iterations()) * bytes);
}

BENCHMARK_CAPTURE(BM_LocalAverage, tiny, "align_dino_tiny.yaml")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GlooAverage, tiny, "align_dino_tiny.yaml")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_LocalAverage, r50, "align_dino_r50_4scale_12ep.yaml")
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_GlooAverage, r50, "align_dino_r50_4scale_12ep.yaml")
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  return run_torch_benchmarks(argc, argv);
}
