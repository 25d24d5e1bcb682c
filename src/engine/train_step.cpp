#include <torch/torch.h>

#include "train_run.h"

namespace aligndetr::engine::detail {

StepOutcome run_step(TrainRun& run, data::DataLoader& loader,
                     const loss::CriterionOptions& criterion, int64_t& micro, int64_t per_epoch) {
  StepOutcome out;
  const int64_t accum = run.e.solver.accumulate;
  for (int64_t a = 0; a < accum; ++a, ++micro) {
    auto batch = loader.next();
    if (!batch) {
      loader.start_epoch(micro / per_epoch);
      batch = loader.next();
    }
    const data::Batch b = batch->to(run.device);
    const auto targets = b.targets;
    const auto outputs = run.model->forward(b.images, b.mask, &targets);
    loss::LossTerms losses;
    try {
      losses = loss::compute_criterion(outputs, targets, criterion);
    } catch (const loss::NonFiniteOutputs& err) {
      out.finite = false;
      out.bad = err.what();
      continue;
    }
    if (!torch::isfinite(losses.total).item<bool>()) {
      out.finite = false;
      out.bad = "non-finite loss (term total)";
      for (const auto& kv : losses.weighted) {
        if (!torch::isfinite(kv.second).item<bool>()) {
          out.bad = "non-finite loss (term " + kv.first + ")";
          break;
        }
      }
      continue;
    }
    (losses.total / double(accum)).backward();
    for (const auto& kv : losses.weighted) out.losses[kv.first] += kv.second.item<double>() / accum;
    out.losses["loss"] += losses.total.item<double>() / accum;
  }
  return out;
}

}  // namespace aligndetr::engine::detail
