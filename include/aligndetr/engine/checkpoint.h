#pragma once
// Training checkpoints: one file in torch.save's format holding the model ("model.*"), the
// optimizer state ("optimizer.<group>.<index>.*"), the iteration, the RNG states (CPU and each
// CUDA device) and the resolved config, written atomically (a killed run leaves the previous
// checkpoint intact). Model-only weight files (save_module) load the same way, so eval and
// predict accept either.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/optim/adamw.h>

namespace aligndetr::engine {

class ModelEma;

// What a training run adds: the other ranks' CPU generator states (element i is rank i + 1's;
// rank 0's is this process's), the run's shape, the weights' moving average ("ema.*") and the
// float16 gradient scaler's state.
struct CheckpointRun {
  std::vector<torch::Tensor> rng_cpu;
  int64_t world_size = 1;
  int64_t global_batch = 0;  // images per optimizer step over all ranks; 0: not recorded
  const ModelEma* ema = nullptr;
  double grad_scale = 0;  // 0: no scaler
  int64_t grad_growth_tracker = 0;
  // The log window in progress: loss terms summed over its steps (each step's mean over the
  // ranks) and its step count, so that the first line after a resume averages what the
  // uninterrupted run's does.
  std::map<std::string, double> log_sums;
  int64_t log_count = 0;
};

// With category_names, the file records them (model::kCategoryNamesKey).
void save_checkpoint(const std::string& path, const torch::nn::Module& model,
                     const torch::optim::AdamW& optimizer, int64_t iteration,
                     const std::string& config_yaml,
                     const std::vector<std::string>& category_names = {},
                     const CheckpointRun& run = {});

struct CheckpointInfo {
  int64_t iteration = -1;  // -1 for a model-only file
  std::string config_yaml;
  int64_t world_size = 1;     // of the run that wrote it
  int64_t global_batch = 0;   // 0: not recorded
  bool rng_restored = false;  // the generator state of the loading rank was in the file
  bool ema_restored = false;  // the weight average was in the file and loaded
  double grad_scale = 0;      // the gradient scaler's state; 0: none in the file
  int64_t grad_growth_tracker = 0;
  std::vector<std::string> category_names;  // in label order; empty when the file has none
  std::map<std::string, double> log_sums;   // CheckpointRun's; empty in older files
  int64_t log_count = 0;
};

// Loads the model (strictly: every name must match) and, when given, the optimizer state, the
// RNG state of `rank` (rank 0's is the process's own) and the weight average (left as it is
// when the file has none). Throws InputError naming the file and what does not match.
CheckpointInfo load_checkpoint(const std::string& path, torch::nn::Module& model,
                               torch::optim::AdamW* optimizer = nullptr, int rank = 0,
                               ModelEma* ema = nullptr);

// checkpoints/ckpt_0001000.pt for iteration 1000.
std::string checkpoint_path(const std::string& dir, int64_t iteration);
// The newest checkpoint in a directory ("" if none); partial temporary files are ignored.
std::string latest_checkpoint(const std::string& dir);
// Every checkpoint in a directory, newest first.
std::vector<std::string> checkpoints_newest_first(const std::string& dir);
// Deletes all but the newest `keep` checkpoints.
void prune_checkpoints(const std::string& dir, int64_t keep);

// Deletes every checkpoint in dir (a new run replacing an old one); returns how many.
int remove_checkpoints(const std::string& dir);

}  // namespace aligndetr::engine
