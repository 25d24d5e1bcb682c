#pragma once
// The transformer's feed-forward block, relu(x W1^T + b1) W2^T + b2, for training without
// keeping its hidden activation. That activation is 8x the layer's width: in the R50 DINO at
// batch 2, 320x480, it is 52 MB per encoder layer and 18 MB per decoder layer, 0.4 GB of the
// step's 1.3 GB of saved activations. Backward recomputes it from x (one more product, W1's), a
// block of rows at a time, so it never exists whole in either pass.

#include <cstdint>

#include <torch/types.h>

namespace aligndetr::ops {

// x [..., D], w1 [F, D], b1 [F], w2 [D', F], b2 [D'] -> [..., D'], differentiable in all five.
// All of one dtype; the caller applies autocast (the products run in the inputs' dtype).
torch::Tensor ffn(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1,
                  const torch::Tensor& w2, const torch::Tensor& b2, int64_t block_rows = 512);

}  // namespace aligndetr::ops
