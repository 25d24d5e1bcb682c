#include "aligndetr/model/dino.h"

#include <cmath>

#include <torch/torch.h>

#include "stage.h"

namespace aligndetr::model {

DinoImpl::DinoImpl(DinoOptions options)
    : options_(std::move(options)),
      num_levels_(int64_t(options_.backbone.out_stages.size()) + options_.num_extra_levels) {
  const auto& o = options_;
  const int64_t D = o.transformer.embed_dim;
  auto transformer = o.transformer;
  transformer.num_levels = num_levels_;
  auto position = o.position;
  position.num_pos_feats = D / 2;
  backbone_ = register_module("backbone", ResNet(o.backbone));
  ChannelMapperOptions neck;
  neck.in_channels = backbone_->out_channels();
  neck.out_channels = D;
  neck.num_extra = o.num_extra_levels;
  neck_ = register_module("neck", ChannelMapper(neck));
  position_ = register_module("position_embedding", PositionEmbeddingSine(position));
  transformer_ = register_module("transformer", DinoTransformer(transformer));

  // One class head and one box head per decoder layer plus one for the encoder: independent
  // parameters starting from the same values (detrex deep-copies one initialised head).
  auto class_list = register_module("class_embed", torch::nn::ModuleList());
  auto box_list = register_module("bbox_embed", torch::nn::ModuleList());
  for (int64_t i = 0; i <= o.transformer.decoder_layers; ++i) {
    heads_.class_embed.emplace_back(D, o.num_classes);
    heads_.bbox_embed.emplace_back(D, D, 4, 3);
    class_list->push_back(heads_.class_embed.back());
    box_list->push_back(heads_.bbox_embed.back());
  }
  torch::NoGradGuard no_grad;
  const double bias = -std::log((1 - o.prior_prob) / o.prior_prob);
  for (size_t i = 0; i < heads_.class_embed.size(); ++i) {
    auto& cls = heads_.class_embed[i];
    auto& box = heads_.bbox_embed[i];
    if (i > 0) {
      cls->weight.copy_(heads_.class_embed[0]->weight);
      for (size_t l = 0; l + 1 < box->num_layers(); ++l) {
        box->layer(l)->weight.copy_(heads_.bbox_embed[0]->layer(l)->weight);
        box->layer(l)->bias.copy_(heads_.bbox_embed[0]->layer(l)->bias);
      }
    }
    cls->bias.fill_(bias);
    box->layer(box->num_layers() - 1)->weight.zero_();
    box->layer(box->num_layers() - 1)->bias.zero_();
  }
  TORCH_CHECK(o.denoising.label_book_size == 0 || o.denoising.label_book_size >= o.num_classes,
              "Dino: denoising.label_book_size ", o.denoising.label_book_size,
              " is smaller than num_classes ", o.num_classes);
  label_enc_ = register_module(
      "label_enc", torch::nn::Embedding(std::max(o.num_classes, o.denoising.label_book_size), D));
}

std::vector<std::string> DinoImpl::class_parameters() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < heads_.class_embed.size(); ++i) {
    names.push_back("class_embed." + std::to_string(i) + ".weight");
    names.push_back("class_embed." + std::to_string(i) + ".bias");
  }
  names.push_back("label_enc.weight");
  return names;
}

model::DetectorOutputs DinoImpl::forward(const torch::Tensor& images, const torch::Tensor& mask,
                                         const std::vector<boxes::Target>* targets) {
  const auto& o = options_;
  const bool all_valid = !is_training() && o.eval_ignores_padding_mask;
  const auto image_mask = all_valid ? torch::zeros_like(mask) : mask;
  detail::Stage backbone_stage("backbone");
  const auto features = backbone_(images);
  backbone_stage.end();
  detail::Stage neck_stage("neck");
  const auto feats = neck_(features);
  neck_stage.end();
  const auto masks = downsample_masks(image_mask, feats);
  std::vector<torch::Tensor> pos;
  for (const auto& m : masks) pos.push_back(position_(m).to(images.dtype()));

  std::optional<DenoisingQueries> dn;
  if (is_training() && targets) {
    dn = prepare_denoising(*targets, o.transformer.num_queries, o.num_classes, label_enc_,
                           o.denoising);
  }
  const auto out = transformer_(feats, masks, pos, heads_, dn ? &dn->queries : nullptr);

  model::DetectorOutputs result;
  const int64_t pad = dn ? dn->size() : 0;
  const int64_t Q = o.transformer.num_queries;
  for (size_t l = 0; l < out.logits.size(); ++l) {
    result.decoder.push_back({out.logits[l].narrow(1, pad, Q), out.boxes[l].narrow(1, pad, Q)});
  }
  result.encoder = model::OutputSet{out.enc_logits, out.enc_boxes};
  if (all_valid) {
    for (auto& set : result.decoder) set.boxes = boxes_relative_to_valid_region(set.boxes, mask);
    result.encoder->boxes = boxes_relative_to_valid_region(result.encoder->boxes, mask);
  }
  if (dn) {
    model::DenoisingOutputs d;
    for (size_t l = 0; l < out.logits.size(); ++l) {
      d.layers.push_back({out.logits[l].narrow(1, 0, pad), out.boxes[l].narrow(1, 0, pad)});
    }
    d.pairs = dn->pairs;
    d.groups = dn->groups;
    result.denoising = std::move(d);
  }
  return result;
}

}  // namespace aligndetr::model
