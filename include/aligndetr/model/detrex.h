#pragma once
// detrex checkpoints under our names. The Align-DETR release is detrex's DINO with a different
// loss, so its checkpoints are detrex DINO checkpoints too.

#include "aligndetr/model/weights.h"

namespace aligndetr::model {

struct DetrexConversion {
  TensorDict tensors;
  int aliases_dropped = 0;  // decoder copies of the detector heads left out
  int resnet_renamed = 0;   // detectron2 ResNet names given torchvision's
};

// A detrex DINO state_dict under our DINO's names. detrex's decoder holds the detector's head
// lists themselves, so its state_dict has every head tensor twice: "transformer.decoder.
// class_embed.*" and "transformer.decoder.bbox_embed.*" beside "class_embed.*" and "bbox_embed.*".
// Each decoder copy is left out only after checking it equals its head, since loading one of the
// two would silently lose the other: InputError names a copy that differs or has no head. The
// detectron2 ResNet names then become torchvision's (detectron2_resnet_to_torchvision); every
// other detrex DINO name is already ours.
DetrexConversion detrex_to_ours(const TensorDict& tensors);

}  // namespace aligndetr::model
