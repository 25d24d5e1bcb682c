#pragma once
// An exponential moving average of the model's weights (detrex's DINO EMA, `train.ema`):
// after every optimizer step each floating-point parameter and buffer moves towards the model's,
// ema = decay * ema + (1 - decay) * w, with a constant decay; integer buffers are copied. The
// average is what evaluation and model_final.pt use, and checkpoints hold it ("ema.*") so that
// a resumed run continues it exactly.

#include <cstdint>
#include <string>
#include <vector>

#include <torch/nn/module.h>

namespace aligndetr::engine {

class ModelEma {
 public:
  // Starts from the model's current weights (a new run, or a checkpoint without an average).
  ModelEma(const torch::nn::Module& model, double decay);

  void update(const torch::nn::Module& model);
  double decay() const { return decay_; }

  // The average by state name, as the model names its parameters and buffers.
  const std::vector<std::pair<std::string, torch::Tensor>>& state() const { return state_; }
  // Replaces the average with a saved one; throws InputError (naming `source`) when a name is
  // missing or a shape differs.
  void load(const std::vector<std::pair<std::string, torch::Tensor>>& saved,
            const std::string& source);

  // Exchanges the model's weights with the average, without copies: called twice it restores
  // both. ModelEma::Swap does it for a scope.
  void swap(torch::nn::Module& model);

  class Swap {
   public:
    Swap(ModelEma* ema, torch::nn::Module& model) : ema_(ema), model_(model) {
      if (ema_) ema_->swap(model_);
    }
    ~Swap() {
      if (ema_) ema_->swap(model_);
    }
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    ModelEma* ema_;
    torch::nn::Module& model_;
  };

 private:
  double decay_;
  std::vector<std::pair<std::string, torch::Tensor>> state_;
};

}  // namespace aligndetr::engine
