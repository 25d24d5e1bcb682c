#pragma once
// The optimizer side of a training step: AdamW with four parameter groups (backbone or not,
// times weight decay or not: none on normalization layers), the learning rate of an iteration
// (warm-up, then steps), gradients averaged over the ranks of a data-parallel run, clipping.

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

#include "aligndetr/engine/experiment.h"

namespace aligndetr::engine {

class Distributed;
class GradScaler;

class Solver {
 public:
  Solver(torch::nn::Module& model, const SolverOptions& options);

  // Sets every group's learning rate for `iteration` (0-based) and clears the gradients.
  void begin_step(int64_t iteration);
  // The base learning rate (the non-backbone groups') at `iteration`.
  double lr(int64_t iteration) const;
  // Averages the gradients over `dist`'s ranks (once, before clipping), unscales them with
  // `scaler` (float16), clips their global L2 norm, and steps. False when the scaler found
  // inf or NaN gradients (a float16 overflow): the step was skipped and the scale lowered.
  bool step(const Distributed& dist, GradScaler* scaler = nullptr);
  // Drops every gradient (to none, as LibTorch 2 does by default).
  void clear_gradients();

  torch::optim::AdamW& optimizer() { return optimizer_; }
  const torch::optim::AdamW& optimizer() const { return optimizer_; }

 private:
  SolverOptions options_;
  torch::optim::AdamW optimizer_;
};

}  // namespace aligndetr::engine
