#include "aligndetr/model/dino_transformer.h"

#include <torch/torch.h>

#include "aligndetr/ops/attention.h"
#include "aligndetr/util/error.h"
#include "stage.h"

namespace aligndetr::model {

namespace {

ops::MSDeformAttnOptions deform_attn_options(const DinoTransformerOptions& o) {
  ops::MSDeformAttnOptions a;
  a.embed_dim = o.embed_dim;
  a.num_heads = o.num_heads;
  a.num_levels = o.num_levels;
  a.num_points = o.num_points;
  a.kernel = o.attention_kernel;
  return a;
}

}  // namespace

SelfAttentionImpl::SelfAttentionImpl(int64_t embed_dim, int64_t num_heads) : num_heads_(num_heads) {
  attn = register_module("attn", torch::nn::MultiheadAttention(
                                     torch::nn::MultiheadAttentionOptions(embed_dim, num_heads)));
}

torch::Tensor SelfAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& pos,
                                         const torch::Tensor& mask,
                                         const torch::Tensor& key_padding_mask) {
  if (x.is_cpu()) return forward_cpu(x, pos, mask, key_padding_mask);
  // LibTorch's attention is sequence-first; queries and keys carry the position, values do not.
  const auto qk = (x + pos).transpose(0, 1);
  const auto v = x.transpose(0, 1);
  // An additive float mask: LibTorch versions differ on how they read boolean ones.
  torch::Tensor additive;
  if (mask.defined()) {
    additive = torch::zeros(mask.sizes(), x.options())
                   .masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  auto out = std::get<0>(attn->forward(qk, qk, v, key_padding_mask, false, additive));
  return out.transpose(0, 1);
}

// LibTorch's attention with its own parameters, step for step (projections, query scaled by
// 1/sqrt(head dim), masked softmax, output projection), but with ops::blocked_attention in the
// middle: no [batch x heads, queries, keys] tensor is made or kept for backward.
torch::Tensor SelfAttentionImpl::forward_cpu(const torch::Tensor& x, const torch::Tensor& pos,
                                             const torch::Tensor& mask,
                                             const torch::Tensor& key_padding_mask) {
  const int64_t B = x.size(0), Q = x.size(1), D = x.size(2), H = num_heads_, dh = D / H;
  const auto& w = attn->in_proj_weight;
  const auto& b = attn->in_proj_bias;
  const auto qk = x + pos;
  // [B, Q, D] -> [B * H, Q, dh], float32 (autocast may have narrowed the projections).
  const auto heads = [&](const torch::Tensor& t) {
    return t.view({B, Q, H, dh}).transpose(1, 2).reshape({B * H, Q, dh}).to(torch::kFloat);
  };
  const auto q =
      ops::linear(qk, w.narrow(0, 0, D), b.narrow(0, 0, D)) * (1.0 / std::sqrt(double(dh)));
  const auto k = ops::linear(qk, w.narrow(0, D, D), b.narrow(0, D, D));
  const auto v = ops::linear(x, w.narrow(0, 2 * D, D), b.narrow(0, 2 * D, D));
  const auto out = ops::blocked_attention(heads(q), heads(k), heads(v), mask, key_padding_mask, H);
  return ops::linear(out.view({B, H, Q, dh}).transpose(1, 2).reshape({B, Q, D}),
                     attn->out_proj->weight, attn->out_proj->bias);
}

DeformableEncoderLayerImpl::DeformableEncoderLayerImpl(const DinoTransformerOptions& o)
    : block_rows_(o.encoder_block_rows) {
  TORCH_CHECK(block_rows_ > 0, "encoder_block_rows must be positive, got ", block_rows_);
  self_attn_ = ops::MSDeformAttn(deform_attn_options(o));
  ffn_ = FFN(o.embed_dim, o.ffn_dim, /*prelu=*/false, o.ffn_recompute);
  norm1_ = layer_norm(o.embed_dim);
  norm2_ = layer_norm(o.embed_dim);
  register_module("attentions", torch::nn::ModuleList(self_attn_));
  register_module("ffns", torch::nn::ModuleList(ffn_));
  register_module("norms", torch::nn::ModuleList(norm1_, norm2_));
}

torch::Tensor DeformableEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& pos,
                                                  const torch::Tensor& reference_points,
                                                  const ops::SpatialShapes& shapes,
                                                  const torch::Tensor& padding_mask) {
  if (!torch::GradMode::is_enabled() && x.is_cpu() && x.numel() > 0) {
    return forward_by_blocks(x, pos, reference_points, shapes, padding_mask);
  }
  auto h = norm1_(x + self_attn_(x + pos, x, reference_points, shapes, padding_mask));
  return norm2_(h + ffn_(h));
}

// Inference on the CPU. Everything after the value projection works row by row, so the layer
// runs on blocks of rows small enough for their FFN hidden activation ([rows, ffn_dim], 8x the
// layer's width) to stay in cache: at the R50 encoder's 20k tokens that activation was 165 MB
// written and read three times per layer, and now no tensor larger than the input is made.
torch::Tensor DeformableEncoderLayerImpl::forward_by_blocks(const torch::Tensor& x,
                                                            const torch::Tensor& pos,
                                                            const torch::Tensor& reference_points,
                                                            const ops::SpatialShapes& shapes,
                                                            const torch::Tensor& padding_mask) {
  auto value = self_attn_->project_value(x, padding_mask);
  // The CPU kernel samples float32, double or (at inference) bfloat16: a float16 value is widened
  // here once, not once per block.
  if (value.scalar_type() == torch::kHalf) value = value.to(torch::kFloat);
  const auto xc = x.contiguous(), pc = pos.contiguous(), rc = reference_points.contiguous();
  torch::Tensor out;  // of the layer's output dtype, which autocast decides
  const int64_t S = x.size(1);
  for (int64_t b = 0; b < x.size(0); ++b) {
    const auto v = value.narrow(0, b, 1);
    for (int64_t s = 0; s < S; s += block_rows_) {
      const int64_t n = std::min(block_rows_, S - s);
      const auto rows = [&](const torch::Tensor& t) { return t.narrow(0, b, 1).narrow(1, s, n); };
      const auto xs = rows(xc);
      const auto h = norm1_(xs + self_attn_->attend(xs + rows(pc), v, rows(rc), shapes));
      const auto y = norm2_(h + ffn_(h));
      if (!out.defined()) out = torch::empty(xc.sizes(), y.options());
      rows(out).copy_(y);
    }
  }
  return out;
}

DinoDecoderLayerImpl::DinoDecoderLayerImpl(const DinoTransformerOptions& o) {
  self_attn_ = SelfAttention(o.embed_dim, o.num_heads);
  cross_attn_ = ops::MSDeformAttn(deform_attn_options(o));
  ffn_ = FFN(o.embed_dim, o.ffn_dim, /*prelu=*/false, o.ffn_recompute);
  norm1_ = layer_norm(o.embed_dim);
  norm2_ = layer_norm(o.embed_dim);
  norm3_ = layer_norm(o.embed_dim);
  register_module("attentions", torch::nn::ModuleList(self_attn_, cross_attn_));
  register_module("ffns", torch::nn::ModuleList(ffn_));
  register_module("norms", torch::nn::ModuleList(norm1_, norm2_, norm3_));
}

torch::Tensor DinoDecoderLayerImpl::forward(
    const torch::Tensor& tgt, const torch::Tensor& query_pos, const torch::Tensor& memory,
    const torch::Tensor& memory_mask, const torch::Tensor& reference_points,
    const ops::SpatialShapes& shapes, const torch::Tensor& self_attn_mask) {
  auto h = norm1_(tgt + self_attn_(tgt, query_pos, self_attn_mask));
  h = norm2_(h + cross_attn_(h + query_pos, memory, reference_points, shapes, memory_mask));
  return norm3_(h + ffn_(h));
}

DinoTransformerImpl::DinoTransformerImpl(DinoTransformerOptions options) : options_(options) {
  const auto& o = options_;
  auto encoder = group(*this, "encoder");
  encoder_layers_ = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.encoder_layers; ++i) {
    enc_.emplace_back(o);
    encoder_layers_->push_back(enc_.back());
  }
  auto decoder = group(*this, "decoder");
  decoder_layers_ = decoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) {
    dec_.emplace_back(o);
    decoder_layers_->push_back(dec_.back());
  }
  ref_point_head_ =
      decoder->register_module("ref_point_head", MLP(2 * o.embed_dim, o.embed_dim, o.embed_dim, 2));
  decoder_norm_ = decoder->register_module("norm", layer_norm(o.embed_dim));
  level_embeds_ = register_parameter("level_embeds", torch::empty({o.num_levels, o.embed_dim}));
  tgt_embed_ = register_module("tgt_embed", torch::nn::Embedding(o.num_queries, o.embed_dim));
  enc_output_ = register_module("enc_output", ops::Linear(o.embed_dim, o.embed_dim));
  enc_output_norm_ = register_module("enc_output_norm", layer_norm(o.embed_dim));
  reset_parameters();
}

void DinoTransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  // As detrex: Xavier for every matrix, then the deformable attention's own initialisation.
  for (auto& p : parameters()) {
    if (p.dim() > 1) torch::nn::init::xavier_uniform_(p);
  }
  for (auto& m : modules(false)) {
    if (auto* attn = m->as<ops::MSDeformAttn>()) attn->reset_parameters();
  }
  torch::nn::init::normal_(level_embeds_);
}

torch::Tensor DinoTransformerImpl::valid_ratios(const std::vector<torch::Tensor>& masks) {
  std::vector<torch::Tensor> ratios;
  for (const auto& m : masks) {
    const auto valid = m.logical_not();
    const auto h = valid.select(2, 0).sum(1).to(torch::kFloat32) / double(m.size(1));
    const auto w = valid.select(1, 0).sum(1).to(torch::kFloat32) / double(m.size(2));
    ratios.push_back(torch::stack({w, h}, -1));
  }
  return torch::stack(ratios, 1);
}

std::pair<torch::Tensor, torch::Tensor> DinoTransformerImpl::encoder_proposals(
    const torch::Tensor& memory, const torch::Tensor& mask, const ops::SpatialShapes& shapes) {
  const int64_t B = memory.size(0);
  const auto fopts = memory.options().dtype(torch::kFloat32);
  std::vector<torch::Tensor> proposals;
  int64_t start = 0;
  for (size_t l = 0; l < shapes.size(); ++l) {
    const int64_t h = shapes[l][0], w = shapes[l][1];
    const auto m = mask.narrow(1, start, h * w).view({B, h, w});
    const auto valid_h = m.select(2, 0).logical_not().sum(1).to(torch::kFloat32);
    const auto valid_w = m.select(1, 0).logical_not().sum(1).to(torch::kFloat32);
    const auto ys = torch::arange(h, fopts).view({1, h, 1}).expand({B, h, w});
    const auto xs = torch::arange(w, fopts).view({1, 1, w}).expand({B, h, w});
    // Cell centres normalized by the valid size; width and height 0.05 * 2^level.
    const auto cx = (xs + 0.5) / valid_w.view({B, 1, 1});
    const auto cy = (ys + 0.5) / valid_h.view({B, 1, 1});
    const auto wh = torch::full({B, h, w}, 0.05 * std::pow(2.0, double(l)), fopts);
    proposals.push_back(torch::stack({cx, cy, wh, wh}, -1).view({B, h * w, 4}));
    start += h * w;
  }
  auto props = torch::cat(proposals, 1).to(memory.dtype());
  const auto valid = ((props > 0.01) & (props < 0.99)).all(-1, true);
  props = torch::log(props / (1 - props));
  const auto inf = std::numeric_limits<double>::infinity();
  // Padding or too close to the border, as one mask: one pass over the memory, not two.
  const auto invalid = mask.unsqueeze(-1).logical_or(valid.logical_not());
  props = props.masked_fill(invalid, inf);
  auto out = memory.masked_fill(invalid, 0.0);
  return {enc_output_norm_(enc_output_(out)), props};
}

DinoTransformerOutputs DinoTransformerImpl::forward(const std::vector<torch::Tensor>& feats,
                                                    const std::vector<torch::Tensor>& masks,
                                                    const std::vector<torch::Tensor>& pos,
                                                    DinoHeads heads, const ExtraQueries* extra) {
  const auto& o = options_;
  TORCH_CHECK(int64_t(feats.size()) == o.num_levels, "DINO transformer: expected ", o.num_levels,
              " feature levels, got ", feats.size());
  TORCH_CHECK(int64_t(heads.class_embed.size()) == o.decoder_layers + 1 &&
                  int64_t(heads.bbox_embed.size()) == o.decoder_layers + 1,
              "DINO transformer: need one class and one box head per decoder layer plus one");
  const int64_t B = feats[0].size(0);
  detail::Stage encoder_stage("encoder");
  ops::SpatialShapes shapes;
  std::vector<torch::Tensor> src, mask, lvl_pos;
  for (size_t l = 0; l < feats.size(); ++l) {
    shapes.push_back({feats[l].size(2), feats[l].size(3)});
    src.push_back(feats[l].flatten(2).transpose(1, 2));
    mask.push_back(masks[l].flatten(1));
    lvl_pos.push_back(pos[l].flatten(2).transpose(1, 2) +
                      level_embeds_[int64_t(l)].view({1, 1, -1}));
  }
  const auto memory_in = torch::cat(src, 1);
  const auto memory_mask = torch::cat(mask, 1);
  const auto pos_embed = torch::cat(lvl_pos, 1);
  const auto ratios = valid_ratios(masks);  // [B, L, 2]

  // Encoder reference points: every token's cell centre, relative to the valid area, then
  // projected to every level by its valid ratio.
  std::vector<torch::Tensor> refs;
  const auto fopts = memory_in.options();
  for (size_t l = 0; l < shapes.size(); ++l) {
    const int64_t h = shapes[l][0], w = shapes[l][1];
    const auto ys =
        (torch::arange(h, fopts) + 0.5).view({1, h, 1}).expand({B, h, w}).reshape({B, -1});
    const auto xs =
        (torch::arange(w, fopts) + 0.5).view({1, 1, w}).expand({B, h, w}).reshape({B, -1});
    const auto ry = ys / (ratios.select(1, int64_t(l)).select(1, 1).unsqueeze(1) * double(h));
    const auto rx = xs / (ratios.select(1, int64_t(l)).select(1, 0).unsqueeze(1) * double(w));
    refs.push_back(torch::stack({rx, ry}, -1));
  }
  const auto enc_ref = torch::cat(refs, 1).unsqueeze(2) * ratios.unsqueeze(1);  // [B, S, L, 2]

  auto memory = memory_in;
  for (auto& layer : enc_) memory = layer(memory, pos_embed, enc_ref, shapes, memory_mask);
  encoder_stage.end();
  detail::Stage proposals_stage("proposals");

  // Two-stage: score every token with the encoder head, keep the top Q as proposals.
  auto [out_memory, proposals] = encoder_proposals(memory, memory_mask, shapes);
  const size_t enc_head = size_t(o.decoder_layers);
  const auto enc_class = heads.class_embed[enc_head]->forward(out_memory);
  const auto enc_coord_unact = heads.bbox_embed[enc_head]->forward(out_memory) + proposals;
  // An input size a user chooses (data.transforms, predict's images), so an InputError.
  if (memory.size(1) < o.num_queries) {
    throw util::InputError("DINO: the image gives " + std::to_string(memory.size(1)) +
                           " encoder tokens, fewer than the " + std::to_string(o.num_queries) +
                           " queries; use larger images or fewer queries");
  }
  const auto topk = std::get<1>(std::get<0>(enc_class.max(-1)).topk(o.num_queries, 1));
  const auto topk_coords_unact =
      enc_coord_unact.gather(1, topk.unsqueeze(-1).expand({B, o.num_queries, 4}));
  const auto target_unact =
      out_memory.gather(1, topk.unsqueeze(-1).expand({B, o.num_queries, out_memory.size(-1)}));

  DinoTransformerOutputs result;
  result.enc_logits = heads.class_embed[enc_head]->forward(target_unact);
  result.enc_boxes = topk_coords_unact.sigmoid();

  proposals_stage.end();
  const detail::Stage decoder_stage("decoder");
  auto reference = topk_coords_unact.detach().sigmoid();
  auto target = tgt_embed_->weight.unsqueeze(0).expand({B, o.num_queries, o.embed_dim});
  torch::Tensor attn_mask;
  if (extra) {
    reference = torch::cat(std::vector<torch::Tensor>{extra->boxes_unact.sigmoid(), reference}, 1);
    target = torch::cat(std::vector<torch::Tensor>{extra->content, target}, 1);
    attn_mask = extra->attn_mask;
  }

  // Decoder with iterative refinement. The box of layer l refines the reference it was given;
  // with look-forward-twice that reference keeps its gradient for layer l's own output.
  const auto ratios4 = torch::cat({ratios, ratios}, -1).unsqueeze(1);  // [B, 1, L, 4]
  auto output = target;
  torch::Tensor prev_ref = reference;  // reference (with gradient) used for layer l's boxes
  for (size_t l = 0; l < dec_.size(); ++l) {
    const auto ref_input = reference.unsqueeze(2) * ratios4;  // [B, N, L, 4]
    const auto query_pos =
        ref_point_head_(sine_embed(ref_input.select(2, 0), o.embed_dim / 2, 10000, true));
    output = dec_[l](output, query_pos, memory, memory_mask, ref_input, shapes, attn_mask);
    const auto new_ref =
        (heads.bbox_embed[l]->forward(output) + inverse_sigmoid(reference)).sigmoid();

    const auto normed = decoder_norm_(output);
    result.logits.push_back(heads.class_embed[l]->forward(normed));
    result.boxes.push_back(
        (heads.bbox_embed[l]->forward(normed) + inverse_sigmoid(prev_ref)).sigmoid());
    prev_ref = o.look_forward_twice ? new_ref : new_ref.detach();
    reference = new_ref.detach();
  }
  return result;
}

}  // namespace aligndetr::model
