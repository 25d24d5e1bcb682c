#include "aligndetr/engine/model_config.h"

#include <fmt/format.h>

#include "aligndetr/util/error.h"

namespace aligndetr {

namespace {

// detectron2's spelling of the backbone norms.
BackboneNorm backbone_norm(const Config& c) {
  const auto norm = c.get_string("model.backbone.norm", "FrozenBN");
  if (norm == "FrozenBN") return BackboneNorm::kFrozenBatchNorm;
  if (norm == "BN") return BackboneNorm::kBatchNorm;
  if (norm == "GN") return BackboneNorm::kGroupNorm;
  throw InputError(fmt::format(
      "config '{}': model.backbone.norm '{}' is not one of FrozenBN, BN, GN", c.source(), norm));
}

// The backbone keys both detectors share; out_stages is the DINO's own (DAB-DETR takes res5).
ResNetOptions resnet_options(const Config& c) {
  ResNetOptions o;
  o.depth = static_cast<int>(c.get_int("model.backbone.depth"));
  o.freeze_at = static_cast<int>(c.get_int("model.backbone.freeze_at", 1));
  o.dc5 = c.get_bool("model.backbone.dc5", false);
  o.norm = backbone_norm(c);
  return o;
}

}  // namespace

model::DinoOptions dino_options(const Config& c) {
  const auto type = c.get_string("model.type");
  if (type != "dino") {
    throw InputError(fmt::format("config '{}': model.type '{}' is not supported (use 'dino')",
                                 c.source(), type));
  }
  model::DinoOptions o;
  o.num_classes = c.get_int("model.num_classes");
  o.backbone = resnet_options(c);
  o.backbone.out_stages.clear();
  for (const auto s : c.get_int_list("model.backbone.out_stages")) {
    o.backbone.out_stages.push_back(static_cast<int>(s));
  }
  o.num_extra_levels = static_cast<int>(c.get_int("model.neck.num_extra_levels", 1));
  auto& t = o.transformer;
  t.embed_dim = c.get_int("model.transformer.embed_dim");
  t.num_heads = c.get_int("model.transformer.num_heads");
  t.num_points = c.get_int("model.transformer.num_points");
  t.encoder_layers = c.get_int("model.transformer.encoder_layers");
  t.decoder_layers = c.get_int("model.transformer.decoder_layers");
  t.ffn_dim = c.get_int("model.transformer.ffn_dim");
  t.num_queries = c.get_int("model.transformer.num_queries");
  t.look_forward_twice = c.get_bool("model.transformer.look_forward_twice", true);
  const auto kernel = c.get_string("model.transformer.attention_kernel", "auto");
  if (kernel != "auto" && kernel != "grid_sample") {
    throw InputError(fmt::format(
        "config '{}': model.transformer.attention_kernel '{}' is not one of auto, grid_sample",
        c.source(), kernel));
  }
  t.attention_kernel =
      kernel == "auto" ? ops::MSDeformAttnKernel::kAuto : ops::MSDeformAttnKernel::kGridSample;
  o.position.temperature(c.get_double("model.position.temperature", 10000));
  o.position.offset = c.get_double("model.position.offset", -0.5);
  o.denoising.dn_number = c.get_int("model.denoising.dn_number", 100);
  o.denoising.label_noise_ratio = c.get_double("model.denoising.label_noise_ratio", 0.5);
  o.denoising.box_noise_scale = c.get_double("model.denoising.box_noise_scale", 1.0);
  o.eval_ignores_padding_mask = c.get_bool("model.eval_ignores_padding_mask", false);
  if (t.embed_dim % t.num_heads != 0) {
    throw InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} is not divisible by "
                    "num_heads {}",
                    c.source(), t.embed_dim, t.num_heads));
  }
  if (t.embed_dim % 32 != 0) {
    throw InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} must be a multiple "
                    "of 32 (GroupNorm groups in the neck)",
                    c.source(), t.embed_dim));
  }
  c.require_all_used("model");
  return o;
}

model::DabDetrOptions dab_detr_options(const Config& c) {
  const auto type = c.get_string("model.type");
  if (type != "dab_detr") {
    throw InputError(fmt::format("config '{}': model.type '{}' is not a DAB-DETR (use 'dab_detr')",
                                 c.source(), type));
  }
  model::DabDetrOptions o;
  o.num_classes = c.get_int("model.num_classes");
  o.backbone = resnet_options(c);
  auto& t = o.transformer;
  t.embed_dim = c.get_int("model.transformer.embed_dim");
  t.num_heads = c.get_int("model.transformer.num_heads");
  t.encoder_layers = c.get_int("model.transformer.encoder_layers");
  t.decoder_layers = c.get_int("model.transformer.decoder_layers");
  t.ffn_dim = c.get_int("model.transformer.ffn_dim");
  t.modulate_hw_attn = c.get_bool("model.transformer.modulate_hw_attn", true);
  o.num_queries = c.get_int("model.transformer.num_queries");
  o.position.temperature(c.get_double("model.position.temperature", 20));
  o.position.offset = c.get_double("model.position.offset", 0.0);
  o.eval_ignores_padding_mask = c.get_bool("model.eval_ignores_padding_mask", false);
  if (t.embed_dim % t.num_heads != 0 || t.embed_dim % 4 != 0) {
    throw InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} must be a multiple "
                    "of 4 and of num_heads {}",
                    c.source(), t.embed_dim, t.num_heads));
  }
  if (t.decoder_layers < 1 || o.num_queries < 1) {
    throw InputError(
        fmt::format("config '{}': model.transformer needs at least one decoder layer and one query",
                    c.source()));
  }
  c.require_all_used("model");
  return o;
}

loss::CriterionOptions criterion_options(const Config& c) {
  loss::CriterionOptions o;
  o.class_loss = loss::parse_class_loss(c.get_string("criterion.loss"));
  o.k = c.get_int("criterion.k");
  if (c.has("criterion.decoder_k")) o.decoder_k = c.get_int_list("criterion.decoder_k");
  if (c.has("criterion.encoder_k")) o.encoder_k = c.get_int("criterion.encoder_k");
  o.alpha = c.get_double("criterion.alpha");
  o.gamma = c.get_double("criterion.gamma");
  o.tau = c.get_double("criterion.tau");
  o.weight_class = c.get_double("criterion.weights.class");
  o.weight_bbox = c.get_double("criterion.weights.bbox");
  o.weight_giou = c.get_double("criterion.weights.giou");
  o.matcher.cost_class = c.get_double("criterion.matcher.cost_class");
  o.matcher.cost_bbox = c.get_double("criterion.matcher.cost_bbox");
  o.matcher.cost_giou = c.get_double("criterion.matcher.cost_giou");
  o.matcher.focal_alpha = c.get_double("criterion.matcher.focal_alpha", 0.25);
  o.matcher.focal_gamma = c.get_double("criterion.matcher.focal_gamma", 2.0);
  if (o.k < 1) throw InputError(fmt::format("config '{}': criterion.k must be >= 1", c.source()));
  c.require_all_used("criterion");
  return o;
}

}  // namespace aligndetr
