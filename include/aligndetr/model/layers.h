#pragma once
// Small building blocks shared by the DETR models, named as detrex's so PyTorch checkpoints
// map over by parameter name.
//
// Residual convention: no sublayer (attention of any kind, FFN) adds its own residual; every
// transformer layer writes each one out, norm(x + sublayer(x)), so a reader sees them all.

#include <cstdint>
#include <memory>
#include <string>

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/normalization.h>
#include <torch/types.h>

#include "aligndetr/ops/linear.h"

namespace aligndetr::model {

// Registers an empty child module that only groups others, so that parameter names read
// `encoder.layers.0...` as in detrex.
std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name);

torch::nn::LayerNorm layer_norm(int64_t dim);

// log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps, as detrex.
torch::Tensor inverse_sigmoid(const torch::Tensor& x, double eps = 1e-3);

// Sine embedding of normalized coordinates [..., D] -> [..., D * num_feats], each coordinate
// x -> (sin, cos) pairs of x * 2pi / temperature^(2i / num_feats); with exchange_xy the first
// two coordinates swap places, giving (y, x, w, h) for boxes (detrex's get_sine_pos_embed).
torch::Tensor sine_embed(const torch::Tensor& coords, int64_t num_feats = 128,
                         double temperature = 10000, bool exchange_xy = true);

// Linear layers with ReLU between them: `layers.0`, `layers.1`, ...
class MLPImpl : public torch::nn::Module {
 public:
  MLPImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim, int64_t num_layers);
  torch::Tensor forward(torch::Tensor x);
  ops::Linear layer(size_t i) const { return linears_[i]; }
  size_t num_layers() const { return linears_.size(); }

 private:
  torch::nn::ModuleList layers_;
  std::vector<ops::Linear> linears_;
};
TORCH_MODULE(MLP);

// Two-layer feed-forward block W2 act(W1 x), without the residual. Parameters `layers.0.0` and
// `layers.1` (detrex's FFN). The activation is ReLU, or PReLU (DAB-DETR) with its own weight.
// With `recompute` (ReLU only), training keeps no hidden activation: backward recomputes it.
class FFNImpl : public torch::nn::Module {
 public:
  FFNImpl(int64_t embed_dim, int64_t hidden_dim, bool prelu = false, bool recompute = false);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  ops::Linear fc1_{nullptr}, fc2_{nullptr};
  torch::nn::PReLU prelu_{nullptr};
  bool recompute_ = false;
};
TORCH_MODULE(FFN);

}  // namespace aligndetr::model
