#pragma once
// Contrastive denoising (CDN) queries of DINO: each ground-truth box is given to the decoder
// again in G groups, once with small noise (a positive, to reconstruct) and once with large
// noise (a negative, to reject), so the decoder learns to denoise. Layout and noise follow
// detrex: G = max(1, dn_number / max_gt); group g holds 2 * max_gt slots, positives first.

#include <cstdint>
#include <optional>
#include <vector>

#include <torch/nn/modules/embedding.h>
#include <torch/types.h>

#include "aligndetr/matching/matcher.h"
#include "aligndetr/model/dino_transformer.h"

namespace aligndetr::model {

struct DenoisingOptions {
  int64_t dn_number = 100;         // budget of positive queries per image; 0 turns CDN off
  double label_noise_ratio = 0.5;  // a label is replaced with probability ratio / 2
  double box_noise_scale = 1.0;
  // Rows of the label embedding (label_enc); 0: num_classes. The official DINO has
  // dn_labelbook_size + 1 = 92 rows for its 91 classes; rows past num_classes are never drawn.
  int64_t label_book_size = 0;
};

struct DenoisingQueries {
  ExtraQueries queries;                     // content, inverse-sigmoid boxes, attention mask
  std::vector<matching::ImageMatch> pairs;  // per image: (DN query, GT), sorted by GT
  int64_t groups = 0;
  int64_t max_gt = 0;
  int64_t size() const { return 2 * max_gt * groups; }
};

// Builds the DN queries for a batch (random noise from LibTorch's generator). Nothing when
// dn_number <= 0 or no image has a box. num_queries: matching queries that follow the DN ones.
std::optional<DenoisingQueries> prepare_denoising(const std::vector<boxes::Target>& targets,
                                                  int64_t num_queries, int64_t num_classes,
                                                  torch::nn::Embedding& label_enc,
                                                  const DenoisingOptions& options);

// The [pad + Q, pad + Q] self-attention mask (true = blocked): matching queries do not see DN
// queries, and DN groups do not see each other.
torch::Tensor denoising_attention_mask(int64_t groups, int64_t max_gt, int64_t num_queries,
                                       const torch::Device& device);

}  // namespace aligndetr::model
