#pragma once
// The pieces of a training run (internal to the engine): the opened run (datasets, model,
// solver, resume or initial weights, the run directory), one training step, and the hooks the
// loop calls after every step at their own period (logging, checkpoints, evaluation).

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

#include "aligndetr/data/dataset.h"
#include "aligndetr/data/loader.h"
#include "aligndetr/engine/checkpoint.h"
#include "aligndetr/engine/config.h"
#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/ema.h"
#include "aligndetr/engine/experiment.h"
#include "aligndetr/engine/grad_scaler.h"
#include "aligndetr/engine/metrics_writer.h"
#include "aligndetr/engine/solver.h"
#include "aligndetr/engine/trainer.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/util/progress.h"

namespace aligndetr::engine::detail {

struct TrainRun {
  TrainRun(const Experiment& experiment, const Distributed& distributed)
      : e(experiment), dist(distributed) {}
  const Experiment& e;
  const Distributed& dist;
  torch::Device device = torch::kCPU;
  std::string output_dir, ckpt_dir, metrics_path;
  std::shared_ptr<const data::CocoDetection> train_set;
  std::unique_ptr<data::CocoDetection> val_set;
  std::vector<std::string> class_names;
  model::DetectorPtr model;
  std::unique_ptr<Solver> solver;
  std::unique_ptr<ModelEma> ema;       // train.ema
  std::unique_ptr<GradScaler> scaler;  // train.amp fp16
  Config resolved;                     // what config.yaml and the checkpoints record
  int64_t start_iter = 0;
  // The log window in progress (this rank's loss terms summed over its steps), kept here for
  // checkpoints to carry across a resume.
  std::map<std::string, double> log_sums;
  int64_t log_count = 0;
};

// Builds the run; resumes from the newest checkpoint with `resume`, else applies
// model.init_weights. Rank 0 alone writes config.yaml and starts metrics.jsonl; every rank's
// model starts from rank 0's parameters and buffers.
std::unique_ptr<TrainRun> open_run(const Experiment& e, const std::string& output_dir, bool resume,
                                   const Distributed& dist);

// A checkpoint at `iteration`, with every rank's generator state: a collective, rank 0 writes
// it and prunes old ones. Returns its path.
std::string save_run_checkpoint(TrainRun& run, int64_t iteration);

struct StepOutcome {
  bool finite = true;
  std::string bad;                       // what was not finite
  std::map<std::string, double> losses;  // this rank's terms, averaged over micro-batches
};

// Forward and backward of one optimizer step's micro-batches (gradients accumulate).
StepOutcome run_step(TrainRun& run, data::DataLoader& loader,
                     const loss::CriterionOptions& criterion, int64_t& micro, int64_t per_epoch);

class TrainHook {
 public:
  virtual ~TrainHook() = default;
  // After the optimizer step of iteration `done` - 1.
  virtual void after_step(int64_t done, const StepOutcome& step) = 0;
};

// Progress bar, and every log_period the losses averaged over the window and the ranks into
// metrics.jsonl (rank 0) and the result's loss history.
class LoggingHook : public TrainHook {
 public:
  LoggingHook(TrainRun& run, MetricsWriter& metrics, TrainResult& result);
  void after_step(int64_t done, const StepOutcome& step) override;
  void finish() { progress_.finish(); }

 private:
  TrainRun& run_;
  MetricsWriter& metrics_;
  TrainResult& result_;
  util::ProgressBar progress_;
  int64_t timed_ = 0;  // steps since last_ (fewer than the window's right after a resume)
  std::chrono::steady_clock::time_point last_;
};

// A checkpoint every checkpoint_period (the last iteration's is written by the loop's end).
class CheckpointHook : public TrainHook {
 public:
  explicit CheckpointHook(TrainRun& run) : run_(run) {}
  void after_step(int64_t done, const StepOutcome& step) override;

 private:
  TrainRun& run_;
};

// A sharded evaluation every eval_period into metrics.jsonl, and the warning when the first one
// finds AP 0 while the loss falls.
class EvalHook : public TrainHook {
 public:
  EvalHook(TrainRun& run, MetricsWriter& metrics, const TrainResult& result)
      : run_(run), metrics_(metrics), result_(result) {}
  void after_step(int64_t done, const StepOutcome& step) override;

 private:
  TrainRun& run_;
  MetricsWriter& metrics_;
  const TrainResult& result_;
  bool first_ = true;
};

}  // namespace aligndetr::engine::detail
