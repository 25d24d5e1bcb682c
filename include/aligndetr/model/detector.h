#pragma once
// The interface every detector offers the engine: images and padding mask in, the criterion's
// inputs out. Training, evaluation and prediction work on any detector through it.

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include "aligndetr/loss/criterion.h"

namespace aligndetr::model {

class DetectorImpl : public torch::nn::Module {
 public:
  // images [B, 3, H, W] (normalized), mask [B, H, W] (true on padding); targets are used in
  // training by detectors that build queries from them (DINO's denoising).
  virtual loss::CriterionInputs forward(const torch::Tensor& images, const torch::Tensor& mask,
                                        const std::vector<matching::Target>* targets) = 0;
  virtual int64_t num_classes() const = 0;
};

using DetectorPtr = std::shared_ptr<DetectorImpl>;

}  // namespace aligndetr::model
