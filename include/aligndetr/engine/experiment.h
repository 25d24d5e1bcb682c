#pragma once
// Everything a run needs, built from a resolved config: datasets, model, criterion options,
// solver and training options. Each section's keys must all be understood.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>
#include <torch/version.h>

#include "aligndetr/data/dataset.h"
#include "aligndetr/engine/config.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/engine/model_config.h"
#include "aligndetr/model/dab_detr.h"
#include "aligndetr/model/detector.h"
#include "aligndetr/model/postprocess.h"

namespace aligndetr::engine {

struct SolverOptions {
  double lr = 1e-4;
  double backbone_lr_mult = 0.1;  // parameters whose name starts with "backbone."
  double weight_decay = 1e-4;     // none on normalization layers
  double beta1 = 0.9;
  double beta2 = 0.999;
  double clip_norm = 0.1;  // global L2 norm; <= 0 turns clipping off
  int64_t max_iter = 90000;
  std::vector<int64_t> steps = {82500};  // lr x gamma at each
  double gamma = 0.1;
  int64_t warmup_iters = 0;
  double warmup_factor = 0.001;  // linear warm-up from lr * factor
  int64_t accumulate = 1;        // micro-batches per optimizer step
};

// Learning-rate multiplier at an iteration: linear warm-up, then steps.
double lr_factor(const SolverOptions& solver, int64_t iteration);

// train.amp: the precision autocast runs the model in (losses and matching stay in float32);
// fp16 adds a gradient scaler.
enum class Amp { kOff, kBFloat16, kFloat16 };

// Whether this LibTorch runs the models under CPU bfloat16 autocast (2.x does; 1.13's CPU norms
// refuse bfloat16 inputs with float32 weights).
constexpr bool cpu_bf16_autocast_supported() {
#if defined(TORCH_VERSION_MAJOR) && TORCH_VERSION_MAJOR >= 2
  return true;
#else
  return false;
#endif
}

struct TrainOptions {
  int64_t checkpoint_period = 5000;
  int64_t keep_checkpoints = 3;
  int64_t eval_period = 5000;  // 0: only at the end
  int64_t log_period = 20;
  uint64_t seed = 42;
  bool skip_nonfinite = false;  // skip a step with a non-finite loss instead of stopping
  std::string device = "cpu";   // "cpu", "cuda" or "cuda:N"
  // Data-parallel runs: auto (NCCL when training on CUDA and built with it, else Gloo), gloo,
  // nccl; a collective waiting longer than the timeout fails naming the rank that stopped.
  std::string dist_backend = "auto";
  double dist_timeout_s = 300;
  Amp amp = Amp::kOff;
  bool ema = false;  // train.ema.enabled: evaluate and save the weights' moving average
  double ema_decay = 0.9998;
  // Not a config key: `train --resume-with-changes` lets a resumed run differ from its
  // checkpoint's config in more than the keys free to change (see the README).
  bool resume_with_changes = false;
};

struct DataOptions {
  data::DatasetOptions train;
  data::DatasetOptions val;
  int batch_size = 2;
  int workers = 2;
};

// The detector a config describes: `model.type` dino or dab_detr, with its options.
struct ModelSpec {
  std::string type = "dino";
  model::DinoOptions dino;
  model::DabDetrOptions dab_detr;
  // model.init_weights and model.init_class_map: applied by train() to a new run only.
  InitWeightsOptions init;
  bool clip_boxes = true;  // model.postprocess.clip_boxes
  int64_t num_classes() const;
  model::DetectorPtr build() const;
  // build(), then weights from a weights file or a training checkpoint (strictly by name), on
  // `device`. With `category_names`, the class names the file records (empty when none).
  model::DetectorPtr load(const std::string& weights, const torch::Device& device,
                          std::vector<std::string>* category_names = nullptr) const;
};

struct Experiment {
  Config config;
  DataOptions data;
  ModelSpec model;
  loss::CriterionOptions criterion;
  SolverOptions solver;
  TrainOptions train;
  int64_t eval_top_k = 300;  // detections kept per image at evaluation
  // The detections evaluation makes: eval_top_k per image, clipped as the model section says.
  model::PostprocessOptions postprocess() const;
};

// The `model` section alone (for tools that need no data or solver).
ModelSpec model_spec(const Config& config);

// `train --init FILE`: the run starts from FILE alone (replacing model.init_weights).
void set_init_weights(Config& config, const std::string& file);

// Reads every section; throws InputError naming the first missing or unknown key.
Experiment make_experiment(const Config& config);
torch::Device parse_device(const std::string& text);

}  // namespace aligndetr::engine
