#include "aligndetr/model/dab_detr.h"

#include <cmath>

#include <torch/torch.h>

#include "aligndetr/model/neck.h"
#include "stage.h"

namespace aligndetr::model {

DabDetrImpl::DabDetrImpl(DabDetrOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  const int64_t D = o.transformer.embed_dim;
  auto backbone = o.backbone;
  backbone.out_stages = {4};
  auto position = o.position;
  position.num_pos_feats = D / 2;
  backbone_ = register_module("backbone", ResNet(backbone));
  input_proj_ = register_module("input_proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(
                                                  backbone_->out_channels().back(), D, 1)));
  position_ = register_module("position_embedding", PositionEmbeddingSine(position));
  transformer_ = register_module("transformer", DabTransformer(o.transformer));
  anchor_box_embed_ = register_module("anchor_box_embed", torch::nn::Embedding(o.num_queries, 4));
  class_embed_ = register_module("class_embed", ops::Linear(D, o.num_classes));
  bbox_embed_ = register_module("bbox_embed", MLP(D, D, 4, 3));

  torch::NoGradGuard no_grad;
  // Anchor centres uniform over the image (stored in inverse-sigmoid space); widths and heights
  // keep the embedding's N(0, 1). detrex also tries to freeze the centres, but its
  // `weight.data[:, :2].requires_grad = False` acts on a temporary view, so all four coordinates
  // train; so do they here.
  auto centres = anchor_box_embed_->weight.narrow(1, 0, 2);
  centres.copy_(inverse_sigmoid(torch::rand_like(centres)));
  class_embed_->bias.fill_(-std::log((1 - o.prior_prob) / o.prior_prob));
  const auto last = bbox_embed_->layer(bbox_embed_->num_layers() - 1);
  last->weight.zero_();
  last->bias.zero_();
}

std::vector<std::string> DabDetrImpl::class_parameters() const {
  return {"class_embed.weight", "class_embed.bias"};
}

model::DetectorOutputs DabDetrImpl::forward(const torch::Tensor& images, const torch::Tensor& mask,
                                            const std::vector<boxes::Target>* /*targets*/) {
  const bool all_valid = !is_training() && options_.eval_ignores_padding_mask;
  const auto image_mask = all_valid ? torch::zeros_like(mask) : mask;
  detail::Stage backbone_stage("backbone");
  const auto features = backbone_(images);
  backbone_stage.end();
  const auto feat = input_proj_(features.back());
  const auto feat_mask = downsample_mask(image_mask, feat.size(2), feat.size(3));
  const auto pos = position_(feat_mask).to(feat.dtype());
  const auto out = transformer_(feat, feat_mask, pos, anchor_box_embed_->weight, bbox_embed_);

  model::DetectorOutputs result;
  for (size_t l = 0; l < out.hidden.size(); ++l) {
    const auto boxes = (bbox_embed_(out.hidden[l]) + inverse_sigmoid(out.references[l])).sigmoid();
    result.decoder.push_back({class_embed_(out.hidden[l]),
                              all_valid ? boxes_relative_to_valid_region(boxes, mask) : boxes});
  }
  return result;
}

}  // namespace aligndetr::model
