#pragma once
// The training loop: AdamW with parameter groups, warm-up and step schedule, gradient
// accumulation and clipping, periodic logging (progress bar, metrics.jsonl), evaluation with the
// in-memory COCO evaluator, atomic checkpoints and exact resumption.
//
// Output directory: config.yaml (resolved), metrics.jsonl, checkpoints/ckpt_NNNNNNN.pt,
// model_final.pt (weights only), eval_final.json.

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/analysis/alignment.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/eval/coco_eval.h"

namespace aligndetr::engine {

// What data-parallel training plugs in; defaults are a single process.
struct DistributedHooks {
  int rank = 0;
  int world_size = 1;
  // Local GT count -> global mean (all-reduce sum / world size).
  std::function<double(double)> reduce_num_boxes;
  // Called once per optimizer step on every gradient, before clipping (all-reduce mean).
  std::function<void(std::vector<torch::Tensor>& grads)> reduce_gradients;
};

struct TrainResult {
  int64_t iterations = 0;
  int64_t skipped_steps = 0;
  std::optional<eval::CocoEvalResult> final_eval;
  std::string final_weights;
  // Losses logged at each log step (for tests and plots): total per logged iteration.
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

// Trains; with `resume`, continues from the newest checkpoint in output_dir/checkpoints.
TrainResult train(const Experiment& experiment, const std::string& output_dir, bool resume,
                  const DistributedHooks& hooks = {});

// COCO evaluation, and optionally the alignment analysis of the final layer's raw outputs.
struct EvaluationResult {
  eval::CocoEvalResult coco;
  std::optional<analysis::AlignmentReport> alignment;
};
EvaluationResult evaluate_with_analysis(model::DetectorImpl& model, const data::CocoDetection& val,
                                        const torch::Device& device, const Experiment& experiment,
                                        bool analysis);
// eval.json, and with an analysis alignment.json, iou_histogram.png and
// confidence_iou_density.png. Returns the paths written.
std::vector<std::string> write_evaluation(const EvaluationResult& result, const std::string& dir);

// COCO evaluation of a model on the experiment's validation set.
eval::CocoEvalResult evaluate_model(model::DetectorImpl& model, const data::CocoDetection& val,
                                    const torch::Device& device, const Experiment& experiment,
                                    bool progress = true);

}  // namespace aligndetr::engine
