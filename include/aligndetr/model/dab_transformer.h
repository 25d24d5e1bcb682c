#pragma once
// DAB-DETR's transformer (detrex layout): a post-norm encoder whose position embedding is scaled
// by the content (query_scale), and a decoder whose queries are dynamic anchor boxes: each layer
// derives its positional query from the current box (sine embedding -> ref_point_head), uses
// Conditional-DETR self- and cross-attention, modulates the cross-attention's positional part by
// the box width and height, and refines the box with the detector's shared box head.
// Parameter names follow detrex (`encoder.layers.0.attentions.0.attn.in_proj_weight`,
// `decoder.layers.0.attentions.1.query_pos_sine_proj.weight`, `decoder.ref_anchor_head...`).

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "aligndetr/model/dino_transformer.h"
#include "aligndetr/model/layers.h"
#include "aligndetr/ops/linear.h"

namespace aligndetr::model {

struct DabTransformerOptions {
  int64_t embed_dim = 256;
  int64_t num_heads = 8;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  int64_t ffn_dim = 2048;
  // Scale the x and y halves of the cross-attention's positional query by (learned width / box
  // width) and (learned height / box height).
  bool modulate_hw_attn = true;
};

// Conditional-DETR self-attention: separate content and position projections for queries and
// keys, summed before the dot product. x, pos [B, Q, D] -> the attention (no residual).
class ConditionalSelfAttentionImpl : public torch::nn::Module {
 public:
  ConditionalSelfAttentionImpl(int64_t embed_dim, int64_t num_heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos);

 private:
  int64_t num_heads_;
  ops::Linear query_content_proj_{nullptr}, query_pos_proj_{nullptr}, key_content_proj_{nullptr},
      key_pos_proj_{nullptr}, value_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ConditionalSelfAttention);

// Conditional-DETR cross-attention: per head, the query is [content, projected sine embedding of
// the box] and the key [content, projected position], concatenated, so the dot product adds a
// content and a spatial term. Only the first decoder layer also adds the positional query and key
// to the content parts, and only it has `query_pos_proj` (detrex drops it from later layers).
// Returns the attention (no residual).
class ConditionalCrossAttentionImpl : public torch::nn::Module {
 public:
  ConditionalCrossAttentionImpl(int64_t embed_dim, int64_t num_heads, bool first_layer);
  // query, query_pos, query_sine [B, Q, D]; memory, key_pos [B, S, D]. Returns query + attention.
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& query_pos,
                        const torch::Tensor& query_sine, const torch::Tensor& memory,
                        const torch::Tensor& key_pos);

 private:
  int64_t num_heads_;
  ops::Linear query_content_proj_{nullptr}, query_pos_proj_{nullptr}, query_pos_sine_proj_{nullptr},
      key_content_proj_{nullptr}, key_pos_proj_{nullptr}, value_proj_{nullptr}, out_proj_{nullptr};
};
TORCH_MODULE(ConditionalCrossAttention);

// Self-attention (with the padding as key mask), norm, PReLU FFN, norm.
class DabEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit DabEncoderLayerImpl(const DabTransformerOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos,
                        const torch::Tensor& padding_mask);

 private:
  SelfAttention self_attn_{nullptr};
  FFN ffn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
};
TORCH_MODULE(DabEncoderLayer);

// Conditional self-attention, norm, conditional cross-attention, norm, PReLU FFN, norm.
class DabDecoderLayerImpl : public torch::nn::Module {
 public:
  DabDecoderLayerImpl(const DabTransformerOptions& o, bool first_layer);
  torch::Tensor forward(const torch::Tensor& query, const torch::Tensor& query_pos,
                        const torch::Tensor& query_sine, const torch::Tensor& memory,
                        const torch::Tensor& key_pos);

 private:
  ConditionalSelfAttention self_attn_{nullptr};
  ConditionalCrossAttention cross_attn_{nullptr};
  FFN ffn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
};
TORCH_MODULE(DabDecoderLayer);

struct DabTransformerOutputs {
  // Per decoder layer [B, Q, D], after the decoder's final LayerNorm.
  std::vector<torch::Tensor> hidden;
  // Per decoder layer [B, Q, 4] normalized cxcywh: the box the layer started from, keeping its
  // gradient (the anchors for the first layer, the previous layer's refined box after that).
  std::vector<torch::Tensor> references;
};

class DabTransformerImpl : public torch::nn::Module {
 public:
  explicit DabTransformerImpl(DabTransformerOptions options);
  // Xavier-uniform on every matrix, as detrex.
  void reset_parameters();

  // feat, pos [B, D, h, w]; mask [B, h, w] (true on padding); anchors [Q, 4] in inverse-sigmoid
  // space; bbox_embed: the detector's shared box head, used to refine the anchors layer by layer.
  DabTransformerOutputs forward(const torch::Tensor& feat, const torch::Tensor& mask,
                                const torch::Tensor& pos, const torch::Tensor& anchors,
                                MLP bbox_embed);

  const DabTransformerOptions& options() const { return options_; }

 private:
  DabTransformerOptions options_;
  std::vector<DabEncoderLayer> enc_;
  std::vector<DabDecoderLayer> dec_;
  MLP encoder_query_scale_{nullptr};
  MLP decoder_query_scale_{nullptr}, ref_point_head_{nullptr}, ref_anchor_head_{nullptr};
  torch::nn::LayerNorm post_norm_{nullptr};
};
TORCH_MODULE(DabTransformer);

}  // namespace aligndetr::model
