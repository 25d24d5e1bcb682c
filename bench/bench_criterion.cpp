// Matching plus criterion for a DINO-sized batch: B = 2, 7 output sets (encoder + 6 decoder
// layers, k = 3 on all but the last), Q = 900, 80 classes, 20 GT per image. Baseline: the
// matching alone, which the reference runs on the CPU with scipy (7 x 2 solves of 900 x 60).

#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <vector>

#include "aligndetr/loss/criterion.h"
#include "aligndetr/matching/matcher.h"

namespace {

using aligndetr::boxes::Target;
using aligndetr::loss::CriterionOptions;
using aligndetr::model::DetectorOutputs;
using aligndetr::model::OutputSet;

constexpr int64_t kBatch = 2, kQueries = 900, kClasses = 80, kGts = 20, kLayers = 6;

struct Batch {
  DetectorOutputs inputs;
  std::vector<Target> targets;
};

Batch make_batch() {
  torch::manual_seed(0);
  Batch b;
  const auto set = [] {
    return OutputSet{(torch::randn({kBatch, kQueries, kClasses}) - 3).requires_grad_(),
                     (torch::rand({kBatch, kQueries, 4}) * 0.5 + 0.25).requires_grad_()};
  };
  for (int64_t l = 0; l < kLayers; ++l) b.inputs.decoder.push_back(set());
  b.inputs.encoder = set();
  for (int64_t i = 0; i < kBatch; ++i) {
    b.targets.push_back(
        {torch::randint(kClasses, {kGts}, torch::kLong), torch::rand({kGts, 4}) * 0.5 + 0.25});
  }
  return b;
}

void BM_MatchingOnly(benchmark::State& state) {
  const Batch b = make_batch();
  const auto ks = CriterionOptions::paper().layer_k(kLayers);
  std::vector<aligndetr::matching::MatchRequest> sets;
  for (int64_t l = 0; l < kLayers; ++l) {
    sets.push_back(
        {b.inputs.decoder[l].logits.detach(), b.inputs.decoder[l].boxes.detach(), ks[l]});
  }
  sets.push_back({b.inputs.encoder->logits.detach(), b.inputs.encoder->boxes.detach(), 3});
  for (auto _ : state) {
    benchmark::DoNotOptimize(aligndetr::matching::match_sets(sets, b.targets, {}));
  }
}
BENCHMARK(BM_MatchingOnly)->Unit(benchmark::kMillisecond);

void BM_CriterionForward(benchmark::State& state) {
  const Batch b = make_batch();
  const CriterionOptions options = CriterionOptions::paper();
  for (auto _ : state) {
    const auto terms = aligndetr::loss::compute_criterion(b.inputs, b.targets, options);
    benchmark::DoNotOptimize(terms.total.item<float>());
  }
}
BENCHMARK(BM_CriterionForward)->Unit(benchmark::kMillisecond);

void BM_CriterionForwardBackward(benchmark::State& state) {
  const Batch b = make_batch();
  const CriterionOptions options = CriterionOptions::paper();
  for (auto _ : state) {
    const auto terms = aligndetr::loss::compute_criterion(b.inputs, b.targets, options);
    terms.total.backward();
  }
}
BENCHMARK(BM_CriterionForwardBackward)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
