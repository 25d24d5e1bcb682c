#pragma once
// DAB-DETR (detrex layout): a ResNet's last stage projected by a 1x1 conv (input_proj), sine
// position embedding (temperature 20), the DAB transformer with learned anchor boxes
// (anchor_box_embed, [Q, 4] in inverse-sigmoid space), and ONE class head and ONE box head shared
// by every decoder layer (the box head also refines the anchors inside the decoder).
// Parameter names are detrex's: backbone.*, input_proj.*, transformer.*, anchor_box_embed.weight,
// class_embed.*, bbox_embed.layers.M.*. detrex's state_dict also lists the box head a second time
// as transformer.decoder.bbox_embed.* (the same tensors); here it is registered once, so that
// optimizers and parameter counts see it once: drop that prefix when importing
// (`weights import --drop transformer.decoder.bbox_embed.`).

#include <cstdint>

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/embedding.h>
#include <torch/types.h>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/dab_transformer.h"
#include "aligndetr/model/detector.h"
#include "aligndetr/model/layers.h"
#include "aligndetr/model/position_encoding.h"
#include "aligndetr/ops/linear.h"

namespace aligndetr::model {

struct DabDetrOptions {
  // backbone.out_stages is not read: only the last stage (res5) feeds the transformer.
  ResNetOptions backbone;
  int64_t num_classes = 80;
  int64_t num_queries = 300;
  DabTransformerOptions transformer;
  // position.num_pos_feats is not read: the model uses embed_dim / 2.
  PositionEmbeddingSineOptions position = default_position();
  double prior_prob = 0.01;  // initial class probability (the classification bias)
  // detrex runs inference with an all-valid mask (the original DAB-DETR keeps the real one). With
  // one image per batch, as detrex evaluates, nothing is padded and both agree. On a padded batch
  // the all-valid mask makes the padding part of the image: boxes are still reported relative to
  // each image's valid region, but they depend on what else is in the batch, so the real mask is
  // the default.
  bool eval_ignores_padding_mask = false;

  static PositionEmbeddingSineOptions default_position() {
    PositionEmbeddingSineOptions p;
    p.temperature_h = 20;
    p.temperature_w = 20;
    p.offset = 0.0;
    return p;
  }
};

class DabDetrImpl : public DetectorImpl {
 public:
  explicit DabDetrImpl(DabDetrOptions options);

  // images [B, 3, H, W] (normalized), mask [B, H, W] (true on padding). Returns the logits
  // [B, Q, C] and boxes [B, Q, 4] (normalized cxcywh) of every decoder layer.
  model::DetectorOutputs forward(const torch::Tensor& images, const torch::Tensor& mask,
                                 const std::vector<boxes::Target>* targets = nullptr) override;
  int64_t num_classes() const override { return options_.num_classes; }
  // class_embed.{weight,bias}.
  std::vector<std::string> class_parameters() const override;

  const DabDetrOptions& options() const { return options_; }

 private:
  DabDetrOptions options_;
  ResNet backbone_{nullptr};
  torch::nn::Conv2d input_proj_{nullptr};
  PositionEmbeddingSine position_{nullptr};
  DabTransformer transformer_{nullptr};
  torch::nn::Embedding anchor_box_embed_{nullptr};
  ops::Linear class_embed_{nullptr};
  MLP bbox_embed_{nullptr};
};
TORCH_MODULE(DabDetr);

}  // namespace aligndetr::model
