#include <optional>

#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"
#include "train_run.h"

namespace aligndetr::engine::detail {

namespace {

std::optional<torch::ScalarType> autocast_dtype(Amp amp) {
  switch (amp) {
    case Amp::kBFloat16:
      return torch::kBFloat16;
    case Amp::kFloat16:
      return torch::kHalf;
    case Amp::kOff:
      break;
  }
  return std::nullopt;
}

}  // namespace

StepOutcome run_step(TrainRun& run, data::DataLoader& loader,
                     const loss::CriterionOptions& criterion, int64_t& micro, int64_t per_epoch) {
  StepOutcome out;
  const int64_t accum = run.e.solver.accumulate;
  const auto amp = autocast_dtype(run.e.train.amp);
  // The terms stay on the device until the step's micro-batches are all queued: one transfer
  // per step gives the logged values and the finiteness check.
  std::vector<std::string> names;
  std::vector<torch::Tensor> terms;
  for (int64_t a = 0; a < accum; ++a, ++micro) {
    auto batch = loader.next();
    if (!batch) {
      loader.start_epoch(micro / per_epoch);
      batch = loader.next();
    }
    const data::Batch b = batch->to(run.device);
    const auto targets = b.targets;
    model::DetectorOutputs outputs;
    {
      std::optional<ops::AutocastGuard> autocast;
      if (amp) autocast.emplace(run.device.type(), *amp);
      outputs = run.model->forward(b.images, b.mask, &targets);
    }
    loss::LossTerms losses;
    try {
      losses = loss::compute_criterion(outputs, targets, criterion);
    } catch (const loss::NonFiniteOutputs& err) {
      out.finite = false;
      out.bad = err.what();
      continue;
    }
    const auto total = losses.total / double(accum);
    // A non-finite loss gives non-finite gradients, which the step discards.
    (run.scaler ? run.scaler->scale(total) : total).backward();
    if (names.empty()) {
      names.push_back("loss");
      for (const auto& kv : losses.weighted) names.push_back(kv.first);
    }
    terms.push_back(losses.total.detach());
    for (const auto& kv : losses.weighted) terms.push_back(kv.second.detach());
  }
  if (terms.empty()) return out;
  const auto host =
      torch::stack(terms).to(torch::kCPU, torch::kDouble).view({-1, int64_t(names.size())});
  const auto values = host.accessor<double, 2>();
  for (int64_t m = 0; m < host.size(0); ++m) {
    if (out.finite && !std::isfinite(values[m][0])) {
      out.finite = false;
      out.bad = "non-finite loss (term total)";
      // The term that made the total non-finite, when one is.
      for (size_t t = 1; t < names.size(); ++t) {
        if (!std::isfinite(values[m][int64_t(t)])) {
          out.bad = "non-finite loss (term " + names[t] + ")";
          break;
        }
      }
    }
    for (size_t t = 0; t < names.size(); ++t) {
      out.losses[names[t]] += values[m][int64_t(t)] / double(accum);
    }
  }
  return out;
}

}  // namespace aligndetr::engine::detail
