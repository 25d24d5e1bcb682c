// One training step of the tiny Align-DETR (configs/align_dino_tiny.yaml: ResNet-18, width 128,
// 2+2 layers, 100 queries, the paper's criterion) at 256x320 px and batch 1, 2 and 4 (the
// argument), split into its parts so each is a share of the step: model forward, matching +
// criterion, and the whole step with backward and the optimizer; then the whole step again with
// deformable attention built from grid_sample instead of the fused CPU kernel (the baseline).
//
//   ./build/bench/bench_train_step [--benchmark_min_time=2]   (ALIGNDETR_BENCH_THREADS=1: one
//   thread)

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/model_config.h"
#include "bench_threads.h"

namespace {

using namespace aligndetr;

// The model and criterion of configs/align_dino_tiny.yaml.
engine::Config tiny_config() {
  return engine::Config::load(std::string(ALIGNDETR_SOURCE_DIR) + "/configs/align_dino_tiny.yaml");
}

model::DinoOptions tiny(ops::MSDeformAttnKernel kernel) {
  auto o = engine::dino_options(tiny_config());
  o.transformer.attention_kernel = kernel;
  return o;
}

struct Step {
  model::Dino model;
  torch::Tensor images, mask;
  std::vector<boxes::Target> targets;
  torch::optim::AdamW optimizer{model->parameters(), torch::optim::AdamWOptions(1e-4)};
  explicit Step(int64_t batch, ops::MSDeformAttnKernel kernel = ops::MSDeformAttnKernel::kAuto)
      : model(tiny(kernel)),
        images(torch::randn({batch, 3, 256, 320})),
        mask(torch::zeros({batch, 256, 320}, torch::kBool)) {
    torch::manual_seed(0);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t n = 3 + 2 * b;
      targets.push_back(
          {torch::randint(8, {n}, torch::kInt64),
           torch::cat({torch::rand({n, 2}) * 0.6 + 0.2, torch::rand({n, 2}) * 0.3 + 0.05}, 1)});
    }
    model->train();
  }
};

void BM_Forward(benchmark::State& state) {
  Step s(state.range(0));
  for (auto _ : state) {
    auto out = s.model->forward(s.images, s.mask, &s.targets);
    benchmark::DoNotOptimize(out.decoder.back().logits.data_ptr());
  }
}

void BM_ForwardCriterion(benchmark::State& state) {
  Step s(state.range(0));
  const auto criterion = engine::criterion_options(tiny_config());
  for (auto _ : state) {
    auto out = s.model->forward(s.images, s.mask, &s.targets);
    auto losses = loss::compute_criterion(out, s.targets, criterion);
    benchmark::DoNotOptimize(losses.total.item<float>());
  }
}

void full_step(benchmark::State& state, ops::MSDeformAttnKernel kernel) {
  Step s(state.range(0), kernel);
  const auto criterion = engine::criterion_options(tiny_config());
  for (auto _ : state) {
    s.optimizer.zero_grad();
    auto out = s.model->forward(s.images, s.mask, &s.targets);
    auto losses = loss::compute_criterion(out, s.targets, criterion);
    losses.total.backward();
    torch::nn::utils::clip_grad_norm_(s.model->parameters(), 0.1);
    s.optimizer.step();
  }
}

void BM_FullStep(benchmark::State& state) {
  full_step(state, ops::MSDeformAttnKernel::kAuto);
}

// The baseline: the same step with deformable attention built from grid_sample.
void BM_FullStepGridSample(benchmark::State& state) {
  full_step(state, ops::MSDeformAttnKernel::kGridSample);
}

BENCHMARK(BM_Forward)
    ->Arg(1)
    ->Arg(4)
    ->ArgName("batch")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_ForwardCriterion)
    ->Arg(1)
    ->Arg(4)
    ->ArgName("batch")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FullStep)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->ArgName("batch")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_FullStepGridSample)
    ->Arg(1)
    ->Arg(2)
    ->ArgName("batch")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  return run_torch_benchmarks(argc, argv);
}
