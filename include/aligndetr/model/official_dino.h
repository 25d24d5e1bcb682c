#pragma once
// Checkpoints of the official DINO (IDEA-Research/DINO, e.g. checkpoint0011_4scale.pth) under our
// names. The official code names the backbone `backbone.0.body.*` (torchvision's names, as ours),
// the neck `input_proj.*`, the transformer sublayers by role (self_attn, cross_attn, linear1/2,
// norm1..3: in a decoder layer norm2 follows self-attention and norm1 cross-attention), shares one
// class head and one box head between all decoder layers (and lists them again under
// transformer.decoder.*), keeps the encoder's heads as transformer.enc_out_*, and has 91 class
// rows indexed by COCO category id (92 in the denoising label book).
//
// The official model also embeds positions with temperature 20 and no offset (configs/
// dino_r50_4scale_official.yaml sets them): without those, imported weights give other outputs.

#include <cstdint>

#include "aligndetr/model/weights.h"

namespace aligndetr::model {

struct OfficialDinoConversion {
  TensorDict tensors;
  int aliases_dropped = 0;  // transformer.decoder.{class,bbox}_embed.* copies of the shared heads
};

// Whether the names are the official DINO's (backbone.0.body.*, transformer.enc_out_*).
bool is_official_dino(const TensorDict& tensors);

// Renames every tensor to ours. The shared decoder heads are copied into each decoder layer's
// head, the encoder heads become the last head (class_embed.L, bbox_embed.L for L decoder
// layers). Class rows: for num_classes 80 the rows of COCO's 80 category ids, in id order (as
// detrex's contiguous labels); for 91 the official layout as it is, the label embedding's first
// `label_rows` rows (92: all of them, for model.denoising.label_book_size 92; 91 or 0: row 91,
// never drawn, left out). InputError for another num_classes or a decoder copy that differs from
// its head.
OfficialDinoConversion official_dino_to_ours(const TensorDict& tensors, int64_t num_classes,
                                             int64_t label_rows = 0);

}  // namespace aligndetr::model
