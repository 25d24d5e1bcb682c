#pragma once
// Typed options from a config's `model` and `criterion` sections. The library below never sees
// YAML; every key of those sections must be understood, or loading fails naming the stray key.

#include "aligndetr/engine/config.h"
#include "aligndetr/engine/init_weights.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dab_detr.h"
#include "aligndetr/model/dino.h"

namespace aligndetr::engine {

// `model.type: dino`.
// model.init_weights and model.init_class_map (the DINO and DAB-DETR readers check them too).
InitWeightsOptions init_weights_options(const Config& config);

// model.postprocess.clip_boxes (default true, detrex; false as the official DINO PostProcess).
bool clip_boxes_option(const Config& config);

model::DinoOptions dino_options(const Config& config);
// `model.type: dab_detr`.
model::DabDetrOptions dab_detr_options(const Config& config);
// `criterion`: the loss, k copies, alpha / gamma / tau, loss weights, matcher costs.
loss::CriterionOptions criterion_options(const Config& config);

}  // namespace aligndetr::engine
