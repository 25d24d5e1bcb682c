#include "aligndetr/model/sync_batch_norm.h"

#include <torch/torch.h>

namespace aligndetr::model {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per-channel view [1, C, 1, 1] of a [C] tensor.
torch::Tensor channel(const torch::Tensor& t) {
  return t.view({1, -1, 1, 1});
}

// y = x_hat * weight + bias with the whole batch's mean and inverse deviation (computed by the
// module, constants here); the backward accounts for their dependence on x.
struct SyncBatchNormFunction : public torch::autograd::Function<SyncBatchNormFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& weight, const torch::Tensor& bias,
                               const torch::Tensor& mean, const torch::Tensor& invstd, double count,
                               SyncBatchNorm2dImpl* module) {
    const auto xhat = (x.to(torch::kFloat) - channel(mean)) * channel(invstd);
    ctx->save_for_backward({xhat, invstd, weight});
    ctx->saved_data["count"] = count;
    ctx->saved_data["module"] = reinterpret_cast<int64_t>(module);
    return (xhat * channel(weight) + channel(bias)).to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& xhat = saved[0];
    const auto& invstd = saved[1];
    const auto& weight = saved[2];
    const double count = ctx->saved_data["count"].toDouble();
    const auto* module = reinterpret_cast<SyncBatchNorm2dImpl*>(ctx->saved_data["module"].toInt());
    const auto dy = grads[0].to(torch::kFloat);
    const int64_t C = xhat.size(1);
    const auto local_dy = dy.sum({0, 2, 3});
    const auto local_dy_xhat = (dy * xhat).sum({0, 2, 3});
    auto sums = torch::cat({local_dy, local_dy_xhat});
    if (module->reducer()) module->reducer()(sums);
    const auto mean_dy = sums.slice(0, 0, C) / count;
    const auto mean_dy_xhat = sums.slice(0, C, 2 * C) / count;
    const auto dx =
        channel(weight * invstd) * (dy - channel(mean_dy) - xhat * channel(mean_dy_xhat));
    return {dx.to(grads[0].scalar_type()),
            local_dy_xhat,
            local_dy,
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(int64_t num_features, double eps_, double momentum_)
    : eps(eps_), momentum(momentum_) {
  weight = register_parameter("weight", torch::ones({num_features}));
  bias = register_parameter("bias", torch::zeros({num_features}));
  running_mean = register_buffer("running_mean", torch::zeros({num_features}));
  running_var = register_buffer("running_var", torch::ones({num_features}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor SyncBatchNorm2dImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4, "SyncBatchNorm2d: [N, C, H, W] expected, got ", x.sizes());
  if (!is_training()) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, false, momentum, eps,
                             false);
  }
  const int64_t C = x.size(1);
  torch::Tensor mean, var, invstd;
  double count = 0;
  {
    torch::NoGradGuard no_grad;
    const auto xf = x.detach().to(torch::kFloat);
    auto stats = torch::cat({xf.sum({0, 2, 3}), (xf * xf).sum({0, 2, 3}),
                             torch::full({1}, double(x.numel() / C), xf.options())});
    if (reducer_) reducer_(stats);
    count = stats[2 * C].item<double>();
    mean = stats.slice(0, 0, C) / count;
    var = (stats.slice(0, C, 2 * C) / count - mean * mean).clamp_min(0);
    invstd = (var + eps).rsqrt();
    // As BatchNorm2d: the running variance is the unbiased one (of the whole batch here).
    running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()) * momentum);
    running_var.mul_(1 - momentum)
        .add_(var.to(running_var.dtype()) * (momentum * count / std::max(count - 1, 1.0)));
    num_batches_tracked.add_(1);
  }
  return SyncBatchNormFunction::apply(x, weight, bias, mean, invstd, count, this);
}

int set_sync_batch_norm_reducer(torch::nn::Module& module, const SumReducer& reducer) {
  int n = 0;
  for (const auto& m : module.modules()) {
    if (auto* bn = m->as<SyncBatchNorm2dImpl>()) {
      bn->set_reducer(reducer);
      ++n;
    }
  }
  return n;
}

}  // namespace aligndetr::model
