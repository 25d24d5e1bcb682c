#pragma once
// Model options for tests, every field set by name (never by position, which would
// silently change meaning when a field moves).

#include <cstdint>
#include <vector>

#include "aligndetr/model/backbone.h"
#include "aligndetr/model/dino.h"
#include "aligndetr/model/neck.h"

namespace aligndetr::testing {

inline model::ResNetOptions resnet_options(int depth, int freeze_at, bool dc5,
                                           std::vector<int> out_stages) {
  model::ResNetOptions o;
  o.depth = depth;
  o.freeze_at = freeze_at;
  o.dc5 = dc5;
  o.out_stages = std::move(out_stages);
  return o;
}

inline model::ChannelMapperOptions channel_mapper_options(std::vector<int64_t> in_channels,
                                                          int64_t out_channels, int num_extra,
                                                          int groups) {
  model::ChannelMapperOptions o;
  o.in_channels = std::move(in_channels);
  o.out_channels = out_channels;
  o.num_extra = num_extra;
  o.groups = groups;
  return o;
}

// A DINO small enough for tests that load and save weights: ResNet-18, width 32, 1 + 2 layers,
// 10 queries, 4 denoising queries.
inline model::DinoOptions tiny_dino_options(int64_t classes) {
  model::DinoOptions o;
  o.backbone.depth = 18;
  o.num_classes = classes;
  o.transformer.embed_dim = 32;
  o.transformer.num_heads = 2;
  o.transformer.num_points = 2;
  o.transformer.encoder_layers = 1;
  o.transformer.decoder_layers = 2;
  o.transformer.ffn_dim = 64;
  o.transformer.num_queries = 10;
  o.denoising.dn_number = 4;
  return o;
}

}  // namespace aligndetr::testing
