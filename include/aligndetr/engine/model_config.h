#pragma once
// Typed options from a config's `model` and `criterion` sections. The library below never sees
// YAML; every key of those sections must be understood, or loading fails naming the stray key.

#include "aligndetr/engine/config.h"
#include "aligndetr/loss/criterion.h"
#include "aligndetr/model/dab_detr.h"
#include "aligndetr/model/dino.h"

namespace aligndetr::engine {

// `model.type: dino`.
model::DinoOptions dino_options(const Config& config);
// `model.type: dab_detr`.
model::DabDetrOptions dab_detr_options(const Config& config);
// `criterion`: the loss, k copies, alpha / gamma / tau, loss weights, matcher costs.
loss::CriterionOptions criterion_options(const Config& config);

}  // namespace aligndetr::engine
