#pragma once
// The interface every detector offers the engine: images and padding mask in, its outputs (every
// decoder layer, the encoder proposals, the denoising queries) out. Training, evaluation and
// prediction work on any detector through it; the criterion takes the same outputs.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/types.h>

#include <optional>

#include "aligndetr/boxes/target.h"
#include "aligndetr/matching/matcher.h"

namespace aligndetr::model {

// One prediction set: logits [B, Q, C] (pre-sigmoid) and boxes [B, Q, 4] (normalized cxcywh).
struct OutputSet {
  torch::Tensor logits;
  torch::Tensor boxes;
};

// Denoising queries of every decoder layer, first to last, with their fixed (query, GT) pairs per
// image (ImageMatch::query indexes the DN queries) and the number of CDN groups.
struct DenoisingOutputs {
  std::vector<OutputSet> layers;
  std::vector<matching::ImageMatch> pairs;
  int64_t groups = 1;
};

struct DetectorOutputs {
  std::vector<OutputSet> decoder;  // first to last layer
  std::optional<OutputSet> encoder;
  std::optional<DenoisingOutputs> denoising;
};

class DetectorImpl : public torch::nn::Module {
 public:
  // images [B, 3, H, W] (normalized), mask [B, H, W] (true on padding); targets are used in
  // training by detectors that build queries from them (DINO's denoising).
  virtual DetectorOutputs forward(const torch::Tensor& images, const torch::Tensor& mask,
                                  const std::vector<boxes::Target>* targets) = 0;
  virtual int64_t num_classes() const = 0;
  // Parameters whose first dimension indexes the classes (the classification heads, DINO's
  // denoising label embedding): what fine-tuning on another class set re-initialises or remaps.
  virtual std::vector<std::string> class_parameters() const = 0;
};

using DetectorPtr = std::shared_ptr<DetectorImpl>;

}  // namespace aligndetr::model
