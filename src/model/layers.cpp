#include "aligndetr/model/layers.h"

#include <cmath>

#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"
#include "aligndetr/ops/ffn.h"

namespace aligndetr::model {

std::shared_ptr<torch::nn::Module> group(torch::nn::Module& parent, const std::string& name) {
  return parent.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::nn::LayerNorm layer_norm(int64_t dim) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}));
}

torch::Tensor inverse_sigmoid(const torch::Tensor& x, double eps) {
  const auto y = x.clamp(0, 1);
  return torch::log(y.clamp_min(eps) / (1 - y).clamp_min(eps));
}

torch::Tensor sine_embed(const torch::Tensor& coords, int64_t num_feats, double temperature,
                         bool exchange_xy) {
  const auto dim_t = torch::pow(
      temperature,
      2 * torch::div(torch::arange(num_feats, coords.options()), 2, "floor") / double(num_feats));
  std::vector<torch::Tensor> parts;
  for (int64_t d = 0; d < coords.size(-1); ++d) {
    const auto x = coords.narrow(-1, d, 1) * (2 * M_PI) / dim_t;  // [..., num_feats]
    const auto even = x.slice(-1, 0, num_feats, 2).sin();
    const auto odd = x.slice(-1, 1, num_feats, 2).cos();
    parts.push_back(torch::stack({even, odd}, -1).flatten(-2));
  }
  if (exchange_xy && parts.size() >= 2) std::swap(parts[0], parts[1]);
  return torch::cat(parts, -1);
}

MLPImpl::MLPImpl(int64_t in_dim, int64_t hidden_dim, int64_t out_dim, int64_t num_layers) {
  TORCH_CHECK(num_layers >= 1, "MLP needs at least one layer");
  layers_ = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < num_layers; ++i) {
    const int64_t in = i == 0 ? in_dim : hidden_dim;
    const int64_t out = i == num_layers - 1 ? out_dim : hidden_dim;
    linears_.emplace_back(ops::Linear(in, out));
    layers_->push_back(linears_.back());
  }
}

torch::Tensor MLPImpl::forward(torch::Tensor x) {
  for (size_t i = 0; i < linears_.size(); ++i) {
    x = linears_[i]->forward(x);
    if (i + 1 < linears_.size()) x = torch::relu(x);
  }
  return x;
}

FFNImpl::FFNImpl(int64_t embed_dim, int64_t hidden_dim, bool prelu, bool recompute)
    : recompute_(recompute) {
  TORCH_CHECK(!(prelu && recompute), "FFN: recomputing the hidden activation needs ReLU");
  fc1_ = ops::Linear(embed_dim, hidden_dim);
  fc2_ = ops::Linear(hidden_dim, embed_dim);
  torch::nn::ModuleList first(fc1_);
  if (prelu) {
    prelu_ = torch::nn::PReLU();
    first->push_back(prelu_);
  } else {
    first->push_back(torch::nn::ReLU());
  }
  register_module("layers", torch::nn::ModuleList(first, fc2_));
}

torch::Tensor FFNImpl::forward(const torch::Tensor& x) {
  if (recompute_ && torch::GradMode::is_enabled()) {
    // Training: the hidden activation is recomputed in backward, not kept (ops::ffn). Autocast
    // does not see inside a custom function, so its cast of a product's operands is made here.
    const auto device = x.device().type();
    const bool narrow = (device == torch::kCPU || device == torch::kCUDA) &&
                        ops::autocast_enabled(device) && x.is_floating_point();
    const auto cast = [&](const torch::Tensor& t) {
      return narrow ? t.to(ops::autocast_dtype(device)) : t;
    };
    const ops::AutocastOff off;
    return ops::ffn(cast(x), cast(fc1_->weight), cast(fc1_->bias), cast(fc2_->weight),
                    cast(fc2_->bias));
  }
  if (prelu_) return fc2_(prelu_(fc1_(x)));
  // The ReLU in place (or fused into the product at inference): the linear's backward needs its
  // input, not its output, so the hidden activation (the largest tensor of an encoder layer) is
  // kept once for backward, not twice.
  return fc2_(fc1_->forward_relu(x));
}

}  // namespace aligndetr::model
