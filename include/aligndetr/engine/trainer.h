#pragma once
// Training a detector: the loop over optimizer steps, with gradient accumulation, non-finite
// handling, and hooks at their periods (logging, checkpoints, evaluation); data-parallel over the
// ranks of a Distributed. The pieces: solver.h (optimizer and schedule), metrics_writer.h,
// checkpoint.h, evaluation.h, distributed.h.
//
// Output directory (rank 0 writes it): config.yaml (resolved), metrics.jsonl,
// checkpoints/ckpt_NNNNNNN.pt, model_final.pt (weights only), eval_final.json, plots.

#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "aligndetr/engine/experiment.h"
#include "aligndetr/eval/coco_eval.h"

namespace aligndetr::engine {

class Distributed;

struct TrainResult {
  int64_t iterations = 0;
  int64_t skipped_steps = 0;   // non-finite losses skipped (train.on_nonfinite: skip)
  int64_t overflow_steps = 0;  // float16 overflows the gradient scaler skipped
  std::optional<eval::CocoEvalResult> final_eval;  // on rank 0
  std::string final_weights;
  // Losses logged at each log step (for tests and plots): total per logged iteration, averaged
  // over the ranks.
  std::vector<std::pair<int64_t, double>> loss_history;
};

// A training step's loss was not finite and the run is configured to stop: the last good state
// has been saved to `checkpoint`.
class TrainingDiverged : public std::runtime_error {
 public:
  TrainingDiverged(const std::string& message, std::string checkpoint)
      : std::runtime_error(message), checkpoint_(std::move(checkpoint)) {}
  const std::string& checkpoint() const { return checkpoint_; }

 private:
  std::string checkpoint_;
};

// Trains; with `resume`, continues from the newest checkpoint in output_dir/checkpoints. Every
// rank of `dist` calls it; a rank's error is recorded for the others before it is rethrown.
TrainResult train(const Experiment& experiment, const std::string& output_dir, bool resume,
                  const Distributed& dist);
// A single process.
TrainResult train(const Experiment& experiment, const std::string& output_dir, bool resume);

}  // namespace aligndetr::engine
