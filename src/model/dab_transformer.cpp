#include "aligndetr/model/dab_transformer.h"

#include <cmath>

#include <torch/torch.h>

#include "stage.h"

namespace aligndetr::model {

namespace {

ops::Linear linear(torch::nn::Module& parent, const std::string& name, int64_t dim) {
  return parent.register_module(name, ops::Linear(dim, dim));
}

// Scaled dot-product attention per head: q [B, N, H, dk], k [B, S, H, dk], v [B, S, H, dv]
// -> [B, N, H * dv].
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const auto qh = q.transpose(1, 2) * (1.0 / std::sqrt(double(q.size(-1))));
  const auto weights = torch::matmul(qh, k.transpose(1, 2).transpose(-2, -1)).softmax(-1);
  const auto out = torch::matmul(weights, v.transpose(1, 2));  // [B, H, N, dv]
  return out.transpose(1, 2).flatten(2);
}

// [B, N, D] -> [B, N, H, D / H]
torch::Tensor heads(const torch::Tensor& x, int64_t num_heads) {
  return x.view({x.size(0), x.size(1), num_heads, x.size(2) / num_heads});
}

}  // namespace

ConditionalSelfAttentionImpl::ConditionalSelfAttentionImpl(int64_t embed_dim, int64_t num_heads)
    : num_heads_(num_heads) {
  query_content_proj_ = linear(*this, "query_content_proj", embed_dim);
  query_pos_proj_ = linear(*this, "query_pos_proj", embed_dim);
  key_content_proj_ = linear(*this, "key_content_proj", embed_dim);
  key_pos_proj_ = linear(*this, "key_pos_proj", embed_dim);
  value_proj_ = linear(*this, "value_proj", embed_dim);
  out_proj_ = linear(*this, "out_proj", embed_dim);
}

torch::Tensor ConditionalSelfAttentionImpl::forward(const torch::Tensor& x,
                                                    const torch::Tensor& pos) {
  const auto q = query_content_proj_(x) + query_pos_proj_(pos);
  const auto k = key_content_proj_(x) + key_pos_proj_(pos);
  const auto v = value_proj_(x);
  return out_proj_(attend(heads(q, num_heads_), heads(k, num_heads_), heads(v, num_heads_)));
}

ConditionalCrossAttentionImpl::ConditionalCrossAttentionImpl(int64_t embed_dim, int64_t num_heads,
                                                             bool first_layer)
    : num_heads_(num_heads) {
  query_content_proj_ = linear(*this, "query_content_proj", embed_dim);
  if (first_layer) query_pos_proj_ = linear(*this, "query_pos_proj", embed_dim);
  query_pos_sine_proj_ = linear(*this, "query_pos_sine_proj", embed_dim);
  key_content_proj_ = linear(*this, "key_content_proj", embed_dim);
  key_pos_proj_ = linear(*this, "key_pos_proj", embed_dim);
  value_proj_ = linear(*this, "value_proj", embed_dim);
  out_proj_ = linear(*this, "out_proj", embed_dim);
}

torch::Tensor ConditionalCrossAttentionImpl::forward(const torch::Tensor& query,
                                                     const torch::Tensor& query_pos,
                                                     const torch::Tensor& query_sine,
                                                     const torch::Tensor& memory,
                                                     const torch::Tensor& key_pos) {
  auto q = query_content_proj_(query);
  auto k = key_content_proj_(memory);
  const auto k_pos = key_pos_proj_(key_pos);
  if (query_pos_proj_) {
    q = q + query_pos_proj_(query_pos);
    k = k + k_pos;
  }
  const auto q_cat =
      torch::cat({heads(q, num_heads_), heads(query_pos_sine_proj_(query_sine), num_heads_)}, -1);
  const auto k_cat = torch::cat({heads(k, num_heads_), heads(k_pos, num_heads_)}, -1);
  const auto v = heads(value_proj_(memory), num_heads_);
  return out_proj_(attend(q_cat, k_cat, v));
}

DabEncoderLayerImpl::DabEncoderLayerImpl(const DabTransformerOptions& o) {
  self_attn_ = SelfAttention(o.embed_dim, o.num_heads);
  ffn_ = FFN(o.embed_dim, o.ffn_dim, /*prelu=*/true);
  norm1_ = layer_norm(o.embed_dim);
  norm2_ = layer_norm(o.embed_dim);
  register_module("attentions", torch::nn::ModuleList(self_attn_));
  register_module("ffns", torch::nn::ModuleList(ffn_));
  register_module("norms", torch::nn::ModuleList(norm1_, norm2_));
}

torch::Tensor DabEncoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& pos,
                                           const torch::Tensor& padding_mask) {
  const auto h = norm1_(x + self_attn_(x, pos, torch::Tensor(), padding_mask));
  return norm2_(h + ffn_(h));
}

DabDecoderLayerImpl::DabDecoderLayerImpl(const DabTransformerOptions& o, bool first_layer) {
  self_attn_ = ConditionalSelfAttention(o.embed_dim, o.num_heads);
  cross_attn_ = ConditionalCrossAttention(o.embed_dim, o.num_heads, first_layer);
  ffn_ = FFN(o.embed_dim, o.ffn_dim, /*prelu=*/true);
  norm1_ = layer_norm(o.embed_dim);
  norm2_ = layer_norm(o.embed_dim);
  norm3_ = layer_norm(o.embed_dim);
  register_module("attentions", torch::nn::ModuleList(self_attn_, cross_attn_));
  register_module("ffns", torch::nn::ModuleList(ffn_));
  register_module("norms", torch::nn::ModuleList(norm1_, norm2_, norm3_));
}

torch::Tensor DabDecoderLayerImpl::forward(const torch::Tensor& query,
                                           const torch::Tensor& query_pos,
                                           const torch::Tensor& query_sine,
                                           const torch::Tensor& memory,
                                           const torch::Tensor& key_pos) {
  auto h = norm1_(query + self_attn_(query, query_pos));
  h = norm2_(h + cross_attn_(h, query_pos, query_sine, memory, key_pos));
  return norm3_(h + ffn_(h));
}

DabTransformerImpl::DabTransformerImpl(DabTransformerOptions options) : options_(options) {
  const auto& o = options_;
  TORCH_CHECK(o.embed_dim % o.num_heads == 0 && o.embed_dim % 2 == 0,
              "DAB transformer: embed_dim must be even and divisible by num_heads");
  const int64_t D = o.embed_dim;
  auto encoder = group(*this, "encoder");
  auto encoder_layers = encoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.encoder_layers; ++i) {
    enc_.emplace_back(o);
    encoder_layers->push_back(enc_.back());
  }
  encoder_query_scale_ = encoder->register_module("query_scale", MLP(D, D, D, 2));

  auto decoder = group(*this, "decoder");
  auto decoder_layers = decoder->register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < o.decoder_layers; ++i) {
    dec_.emplace_back(o, i == 0);
    decoder_layers->push_back(dec_.back());
  }
  decoder_query_scale_ = decoder->register_module("query_scale", MLP(D, D, D, 2));
  ref_point_head_ = decoder->register_module("ref_point_head", MLP(2 * D, D, D, 2));
  if (o.modulate_hw_attn) {
    ref_anchor_head_ = decoder->register_module("ref_anchor_head", MLP(D, D, 2, 2));
  }
  post_norm_ = decoder->register_module("post_norm_layer", layer_norm(D));
  reset_parameters();
}

void DabTransformerImpl::reset_parameters() {
  torch::NoGradGuard no_grad;
  for (auto& p : parameters()) {
    if (p.dim() > 1) torch::nn::init::xavier_uniform_(p);
  }
}

DabTransformerOutputs DabTransformerImpl::forward(const torch::Tensor& feat,
                                                  const torch::Tensor& mask,
                                                  const torch::Tensor& pos,
                                                  const torch::Tensor& anchors, MLP bbox_embed) {
  const auto& o = options_;
  const int64_t D = o.embed_dim;
  TORCH_CHECK(feat.dim() == 4 && feat.size(1) == D, "DAB transformer: expected [B, ", D,
              ", h, w] features, got ", feat.sizes());
  TORCH_CHECK(anchors.dim() == 2 && anchors.size(1) == 4,
              "DAB transformer: anchors must be [Q, 4]");
  const int64_t B = feat.size(0);
  const int64_t Q = anchors.size(0);
  const auto src = feat.flatten(2).transpose(1, 2);       // [B, S, D]
  const auto pos_embed = pos.flatten(2).transpose(1, 2);  // [B, S, D]
  const auto padding = mask.flatten(1);                   // [B, S]

  // Encoder: the position embedding of every layer is scaled by a function of its input.
  detail::Stage encoder_stage("encoder");
  auto memory = src;
  for (auto& layer : enc_) {
    memory = layer(memory, pos_embed * encoder_query_scale_(memory), padding);
  }
  encoder_stage.end();
  const detail::Stage decoder_stage("decoder");

  // Decoder: content queries start at zero; positional queries come from the anchor boxes.
  // detrex's decoder attends to every memory token, padding included.
  DabTransformerOutputs result;
  auto reference = anchors.sigmoid().unsqueeze(0).expand({B, Q, 4});
  result.references.push_back(reference);
  auto query = torch::zeros({B, Q, D}, feat.options());
  for (size_t l = 0; l < dec_.size(); ++l) {
    // (y, x, w, h) sine features; the first half (y, x) is the cross-attention's positional query.
    const auto sine = sine_embed(reference, D / 2, 10000, true);
    const auto query_pos = ref_point_head_(sine);
    auto query_sine = sine.narrow(-1, 0, D);
    if (l > 0) query_sine = query_sine * decoder_query_scale_(query);
    if (o.modulate_hw_attn) {
      const auto hw = ref_anchor_head_(query).sigmoid();  // learned (w, h)
      const auto y_scale = (hw.select(-1, 1) / reference.select(-1, 3)).unsqueeze(-1);
      const auto x_scale = (hw.select(-1, 0) / reference.select(-1, 2)).unsqueeze(-1);
      query_sine = torch::cat({query_sine.narrow(-1, 0, D / 2) * y_scale,
                               query_sine.narrow(-1, D / 2, D / 2) * x_scale},
                              -1);
    }
    query = dec_[l](query, query_pos, query_sine, memory, pos_embed);

    // Refine the box from the un-normalized output; the next layer starts from it without
    // gradient, while the outputs keep it (the last layer's refinement is not returned).
    const auto refined = (bbox_embed(query) + inverse_sigmoid(reference)).sigmoid();
    if (l + 1 < dec_.size()) result.references.push_back(refined);
    reference = refined.detach();
    result.hidden.push_back(post_norm_(query));
  }
  return result;
}

}  // namespace aligndetr::model
