#include "aligndetr/engine/model_config.h"

#include <fmt/format.h>

#include "aligndetr/util/error.h"

namespace aligndetr::engine {

namespace {

// detectron2's spelling of the backbone norms.
model::BackboneNorm backbone_norm(const Config& c) {
  const auto norm = c.get_string("model.backbone.norm", "FrozenBN");
  const bool sync = c.get_bool("model.backbone.sync_bn", false);
  if (sync && norm != "BN" && norm != "SyncBN") {
    throw util::InputError(
        fmt::format("config '{}': model.backbone.sync_bn needs model.backbone.norm BN (it is '{}')",
                    c.source(), norm));
  }
  if (norm == "FrozenBN") return model::BackboneNorm::kFrozenBatchNorm;
  if (norm == "SyncBN" || (sync && norm == "BN")) return model::BackboneNorm::kSyncBatchNorm;
  if (norm == "BN") return model::BackboneNorm::kBatchNorm;
  if (norm == "GN") return model::BackboneNorm::kGroupNorm;
  throw util::InputError(
      fmt::format("config '{}': model.backbone.norm '{}' is not one of FrozenBN, BN, SyncBN, GN",
                  c.source(), norm));
}

// The backbone keys both detectors share; out_stages is the DINO's own (DAB-DETR takes res5).
model::ResNetOptions resnet_options(const Config& c) {
  model::ResNetOptions o;
  o.depth = static_cast<int>(c.get_int("model.backbone.depth"));
  o.freeze_at = static_cast<int>(c.get_int("model.backbone.freeze_at", int64_t{o.freeze_at}));
  o.dc5 = c.get_bool("model.backbone.dc5", o.dc5);
  o.norm = backbone_norm(c);
  return o;
}

}  // namespace

InitWeightsOptions init_weights_options(const Config& c) {
  InitWeightsOptions o;
  const size_t n = c.list_size("model.init_weights");
  for (size_t i = 0; i < n; ++i) {
    const std::string k = fmt::format("model.init_weights.{}.", i);
    InitWeightsFile f;
    f.file = c.get_string(k + "file");
    f.prefix = c.get_string(k + "prefix", f.prefix);
    f.strict = c.get_bool(k + "strict", f.strict);
    f.sha256 = c.get_string(k + "sha256", f.sha256);
    f.hint = c.get_string(k + "hint", f.hint);
    o.files.push_back(std::move(f));
  }
  if (c.has("model.init_class_map")) {
    o.class_map = parse_class_map(c.get_string("model.init_class_map"));
  }
  return o;
}

bool clip_boxes_option(const Config& c) {
  return c.get_bool("model.postprocess.clip_boxes", true);
}

model::DinoOptions dino_options(const Config& c) {
  const auto type = c.get_string("model.type");
  if (type != "dino") {
    throw util::InputError(fmt::format("config '{}': model.type '{}' is not supported (use 'dino')",
                                       c.source(), type));
  }
  model::DinoOptions o;
  o.num_classes = c.get_int("model.num_classes");
  o.backbone = resnet_options(c);
  o.backbone.out_stages.clear();
  for (const auto s : c.get_int_list("model.backbone.out_stages")) {
    o.backbone.out_stages.push_back(static_cast<int>(s));
  }
  o.num_extra_levels =
      static_cast<int>(c.get_int("model.neck.num_extra_levels", int64_t{o.num_extra_levels}));
  auto& t = o.transformer;
  t.embed_dim = c.get_int("model.transformer.embed_dim");
  t.num_heads = c.get_int("model.transformer.num_heads");
  t.num_points = c.get_int("model.transformer.num_points");
  t.encoder_layers = c.get_int("model.transformer.encoder_layers");
  t.decoder_layers = c.get_int("model.transformer.decoder_layers");
  t.ffn_dim = c.get_int("model.transformer.ffn_dim");
  t.num_queries = c.get_int("model.transformer.num_queries");
  t.look_forward_twice = c.get_bool("model.transformer.look_forward_twice", t.look_forward_twice);
  t.ffn_recompute = c.get_bool("model.transformer.ffn_recompute", t.ffn_recompute);
  const auto kernel = c.get_string("model.transformer.attention_kernel", "auto");
  if (kernel != "auto" && kernel != "grid_sample") {
    throw util::InputError(fmt::format(
        "config '{}': model.transformer.attention_kernel '{}' is not one of auto, grid_sample",
        c.source(), kernel));
  }
  t.attention_kernel =
      kernel == "auto" ? ops::MSDeformAttnKernel::kAuto : ops::MSDeformAttnKernel::kGridSample;
  o.position.temperature_h = o.position.temperature_w =
      c.get_double("model.position.temperature", o.position.temperature_h);
  o.position.offset = c.get_double("model.position.offset", o.position.offset);
  o.denoising.dn_number = c.get_int("model.denoising.dn_number", o.denoising.dn_number);
  o.denoising.label_noise_ratio =
      c.get_double("model.denoising.label_noise_ratio", o.denoising.label_noise_ratio);
  o.denoising.box_noise_scale =
      c.get_double("model.denoising.box_noise_scale", o.denoising.box_noise_scale);
  o.denoising.label_book_size =
      c.get_int("model.denoising.label_book_size", o.denoising.label_book_size);
  if (o.denoising.label_book_size != 0 && o.denoising.label_book_size < o.num_classes) {
    throw util::InputError(fmt::format(
        "config '{}': model.denoising.label_book_size {} is smaller than model.num_classes {} "
        "(0 means num_classes; the official DINO uses 92 with 91 classes)",
        c.source(), o.denoising.label_book_size, o.num_classes));
  }
  o.eval_ignores_padding_mask =
      c.get_bool("model.eval_ignores_padding_mask", o.eval_ignores_padding_mask);
  if (t.embed_dim % t.num_heads != 0) {
    throw util::InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} is not divisible by "
                    "num_heads {}",
                    c.source(), t.embed_dim, t.num_heads));
  }
  if (t.embed_dim % 32 != 0) {
    throw util::InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} must be a multiple "
                    "of 32 (GroupNorm groups in the neck)",
                    c.source(), t.embed_dim));
  }
  // The run's initial weights and the post-processing share the model section: read them so
  // that every key is checked.
  init_weights_options(c);
  clip_boxes_option(c);
  c.require_all_used("model");
  return o;
}

model::DabDetrOptions dab_detr_options(const Config& c) {
  const auto type = c.get_string("model.type");
  if (type != "dab_detr") {
    throw util::InputError(fmt::format(
        "config '{}': model.type '{}' is not a DAB-DETR (use 'dab_detr')", c.source(), type));
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
  t.modulate_hw_attn = c.get_bool("model.transformer.modulate_hw_attn", t.modulate_hw_attn);
  o.num_queries = c.get_int("model.transformer.num_queries");
  o.position.temperature_h = o.position.temperature_w =
      c.get_double("model.position.temperature", o.position.temperature_h);
  o.position.offset = c.get_double("model.position.offset", o.position.offset);
  o.eval_ignores_padding_mask =
      c.get_bool("model.eval_ignores_padding_mask", o.eval_ignores_padding_mask);
  if (t.embed_dim % t.num_heads != 0 || t.embed_dim % 4 != 0) {
    throw util::InputError(
        fmt::format("config '{}': model.transformer.embed_dim {} must be a multiple "
                    "of 4 and of num_heads {}",
                    c.source(), t.embed_dim, t.num_heads));
  }
  if (t.decoder_layers < 1 || o.num_queries < 1) {
    throw util::InputError(
        fmt::format("config '{}': model.transformer needs at least one decoder layer and one query",
                    c.source()));
  }
  // The run's initial weights and the post-processing share the model section: read them so
  // that every key is checked.
  init_weights_options(c);
  clip_boxes_option(c);
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
  o.matcher.focal_alpha = c.get_double("criterion.matcher.focal_alpha", o.matcher.focal_alpha);
  o.matcher.focal_gamma = c.get_double("criterion.matcher.focal_gamma", o.matcher.focal_gamma);
  if (o.k < 1)
    throw util::InputError(fmt::format("config '{}': criterion.k must be >= 1", c.source()));
  c.require_all_used("criterion");
  return o;
}

}  // namespace aligndetr::engine
