#pragma once
// AdamW's step in one pass over each parameter. LibTorch's torch::optim::AdamW takes nine
// operators per parameter (decay, two moment updates, sqrt, division, eps, the update), each a
// pass over memory; here one loop reads the parameter, its gradient and both moments once and
// writes them back. The arithmetic is the same (decoupled weight decay, bias corrections,
// eps added to the corrected root), up to float rounding; the state stays in the optimizer's own
// AdamWParamState, so checkpoints and LibTorch's step read it unchanged.

#include <torch/optim/adamw.h>

namespace aligndetr::engine {

// One step of `optimizer` on the parameters that have a gradient. float32, contiguous CPU
// parameters and gradients take the fused loop; anything else (CUDA, other dtypes, amsgrad)
// takes optimizer.step().
void adamw_step(torch::optim::AdamW& optimizer);

}  // namespace aligndetr::engine
