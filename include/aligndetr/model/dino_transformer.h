#pragma once
// DINO's deformable transformer (detrex layout): a deformable encoder, two-stage proposals with
// mixed query selection, and a decoder with iterative box refinement and look-forward-twice.
// Parameter names follow detrex (`encoder.layers.0.attentions.0.sampling_offsets.weight`, ...).

#include <cstdint>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "aligndetr/model/layers.h"
#include "aligndetr/ops/ms_deform_attn.h"

namespace aligndetr::model {

struct DinoTransformerOptions {
  int64_t embed_dim = 256;
  int64_t num_heads = 8;
  int64_t num_levels = 4;
  int64_t num_points = 4;
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  int64_t ffn_dim = 2048;
  int64_t num_queries = 900;
  bool look_forward_twice = true;
  ops::MSDeformAttnKernel attention_kernel = ops::MSDeformAttnKernel::kAuto;
  // Inference on the CPU runs each encoder layer on blocks of this many tokens (see
  // DeformableEncoderLayerImpl): the results are those of the whole layer at once.
  int64_t encoder_block_rows = 1024;
  // Training: the FFNs recompute their hidden activation in backward (ops::ffn), trading a
  // product per layer for its memory.
  bool ffn_recompute = false;
};

// Self-attention with detrex's wrapper name: `attn.in_proj_weight`, `attn.out_proj.weight`.
class SelfAttentionImpl : public torch::nn::Module {
 public:
  SelfAttentionImpl(int64_t embed_dim, int64_t num_heads);
  // x, pos [B, Q, D]; mask [Q, Q] bool, true where attention is blocked (optional);
  // key_padding_mask [B, Q] bool, true on tokens no query may attend to (optional). Returns the
  // attention [B, Q, D] (no residual).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos, const torch::Tensor& mask,
                        const torch::Tensor& key_padding_mask = {});

 private:
  torch::Tensor forward_cpu(const torch::Tensor& x, const torch::Tensor& pos,
                            const torch::Tensor& mask, const torch::Tensor& key_padding_mask);

  torch::nn::MultiheadAttention attn{nullptr};
  int64_t num_heads_;
};
TORCH_MODULE(SelfAttention);

class DeformableEncoderLayerImpl : public torch::nn::Module {
 public:
  explicit DeformableEncoderLayerImpl(const DinoTransformerOptions& o);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& pos,
                        const torch::Tensor& reference_points, const ops::SpatialShapes& shapes,
                        const torch::Tensor& padding_mask);

 private:
  torch::Tensor forward_by_blocks(const torch::Tensor& x, const torch::Tensor& pos,
                                  const torch::Tensor& reference_points,
                                  const ops::SpatialShapes& shapes,
                                  const torch::Tensor& padding_mask);

  ops::MSDeformAttn self_attn_{nullptr};
  FFN ffn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr};
  int64_t block_rows_;
};
TORCH_MODULE(DeformableEncoderLayer);

class DinoDecoderLayerImpl : public torch::nn::Module {
 public:
  explicit DinoDecoderLayerImpl(const DinoTransformerOptions& o);
  torch::Tensor forward(const torch::Tensor& tgt, const torch::Tensor& query_pos,
                        const torch::Tensor& memory, const torch::Tensor& memory_mask,
                        const torch::Tensor& reference_points, const ops::SpatialShapes& shapes,
                        const torch::Tensor& self_attn_mask);

 private:
  SelfAttention self_attn_{nullptr};
  ops::MSDeformAttn cross_attn_{nullptr};
  FFN ffn_{nullptr};
  torch::nn::LayerNorm norm1_{nullptr}, norm2_{nullptr}, norm3_{nullptr};
};
TORCH_MODULE(DinoDecoderLayer);

// Per-layer heads of the detector, shared with the decoder's box refinement.
struct DinoHeads {
  std::vector<ops::Linear> class_embed;  // decoder layers, then the encoder
  std::vector<MLP> bbox_embed;
};

// Extra queries placed before the matching queries (the denoising queries).
struct ExtraQueries {
  torch::Tensor content;      // [B, N, D]
  torch::Tensor boxes_unact;  // [B, N, 4], inverse-sigmoid of normalized cxcywh
  torch::Tensor attn_mask;    // [N + Q, N + Q] bool, true where attention is blocked
};

struct DinoTransformerOutputs {
  std::vector<torch::Tensor> logits;  // per decoder layer [B, N + Q, C]
  std::vector<torch::Tensor> boxes;   // per decoder layer [B, N + Q, 4], normalized cxcywh
  torch::Tensor enc_logits;           // [B, Q, C] for the selected proposals
  torch::Tensor enc_boxes;            // [B, Q, 4] (not detached)
};

class DinoTransformerImpl : public torch::nn::Module {
 public:
  explicit DinoTransformerImpl(DinoTransformerOptions options);
  void reset_parameters();

  // feats[l] [B, D, h_l, w_l], masks[l] [B, h_l, w_l] (true on padding), pos[l] [B, D, h_l, w_l].
  DinoTransformerOutputs forward(const std::vector<torch::Tensor>& feats,
                                 const std::vector<torch::Tensor>& masks,
                                 const std::vector<torch::Tensor>& pos, DinoHeads heads,
                                 const ExtraQueries* extra = nullptr);

  const DinoTransformerOptions& options() const { return options_; }

  // Exposed for tests: [B, L, 2] valid (w, h) ratio of every level.
  static torch::Tensor valid_ratios(const std::vector<torch::Tensor>& masks);
  // Proposals of the encoder tokens: memory [B, S, D] and mask [B, S] -> (memory with padded or
  // invalid tokens zeroed, then Linear + LayerNorm; proposals in inverse-sigmoid space, +inf
  // where invalid).
  std::pair<torch::Tensor, torch::Tensor> encoder_proposals(const torch::Tensor& memory,
                                                            const torch::Tensor& mask,
                                                            const ops::SpatialShapes& shapes);

 private:
  DinoTransformerOptions options_;
  torch::nn::ModuleList encoder_layers_{nullptr}, decoder_layers_{nullptr};
  std::vector<DeformableEncoderLayer> enc_;
  std::vector<DinoDecoderLayer> dec_;
  MLP ref_point_head_{nullptr};
  torch::nn::LayerNorm decoder_norm_{nullptr};
  torch::Tensor level_embeds_;
  torch::nn::Embedding tgt_embed_{nullptr};
  ops::Linear enc_output_{nullptr};
  torch::nn::LayerNorm enc_output_norm_{nullptr};
};
TORCH_MODULE(DinoTransformer);

}  // namespace aligndetr::model
