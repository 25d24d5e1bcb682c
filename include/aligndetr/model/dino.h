#pragma once
// DINO-4scale (detrex layout): ResNet backbone, ChannelMapper neck, sine position embedding,
// deformable transformer with two-stage proposals, contrastive denoising, and 7 independent
// class and box heads (6 decoder layers + the encoder). Outputs exactly what the criterion
// takes. Parameter names are detrex's: backbone.*, neck.*, transformer.*, class_embed.N.*,
// bbox_embed.N.layers.M.*, label_enc.weight.

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/types.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/denoising.h"
#include "aligndetr/model/detector.h"
#include "aligndetr/model/dino_transformer.h"
#include "aligndetr/model/neck.h"
#include "aligndetr/model/position_encoding.h"

namespace aligndetr::model {

struct DinoOptions {
  ResNetOptions backbone;  // outputs res3-res5 by default
  int64_t num_classes = 80;
  int num_extra_levels = 1;  // ChannelMapper levels added on the last backbone output
  // transformer.num_levels is not read: the model has out_stages + num_extra_levels levels.
  DinoTransformerOptions transformer;
  // position.num_pos_feats is not read: the model uses embed_dim / 2.
  PositionEmbeddingSineOptions position;
  DenoisingOptions denoising;
  double prior_prob = 0.01;  // initial class probability (the classification bias)
  // detrex runs inference with an all-valid mask (official DINO keeps the real one). With one
  // image per batch, as detrex evaluates, nothing is padded and both agree. On a padded batch the
  // all-valid mask makes the padding part of the image: boxes are still reported relative to each
  // image's valid region, but they depend on what else is in the batch, so the real mask is the
  // default.
  bool eval_ignores_padding_mask = false;
};

class DinoImpl : public DetectorImpl {
 public:
  explicit DinoImpl(DinoOptions options);

  // images [B, 3, H, W] (normalized), mask [B, H, W] (true on padding). In training mode and with
  // targets the denoising queries are added and their outputs returned.
  model::DetectorOutputs forward(const torch::Tensor& images, const torch::Tensor& mask,
                                 const std::vector<boxes::Target>* targets = nullptr) override;
  int64_t num_classes() const override { return options_.num_classes; }
  // class_embed.N.{weight,bias} of every head and label_enc.weight.
  std::vector<std::string> class_parameters() const override;

  const DinoOptions& options() const { return options_; }

 private:
  DinoOptions options_;
  int64_t num_levels_;  // feature levels: backbone outputs plus the neck's extra levels
  ResNet backbone_{nullptr};
  ChannelMapper neck_{nullptr};
  PositionEmbeddingSine position_{nullptr};
  DinoTransformer transformer_{nullptr};
  DinoHeads heads_;
  torch::nn::Embedding label_enc_{nullptr};
};
TORCH_MODULE(Dino);

}  // namespace aligndetr::model
