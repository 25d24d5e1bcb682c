#include "aligndetr/engine/solver.h"

#include <unordered_set>

#include <torch/torch.h>

#include "aligndetr/engine/adamw.h"
#include "aligndetr/engine/distributed.h"
#include "aligndetr/engine/grad_scaler.h"
#include "aligndetr/model/sync_batch_norm.h"

namespace aligndetr::engine {

namespace {

double group_lr(int group, const SolverOptions& s) {
  return s.lr * (group >= 2 ? s.backbone_lr_mult : 1.0);
}

std::vector<torch::optim::OptimizerParamGroup> param_groups(torch::nn::Module& model,
                                                            const SolverOptions& s) {
  std::unordered_set<const void*> norm_params;
  for (const auto& m : model.modules()) {
    if (m->as<torch::nn::LayerNorm>() || m->as<torch::nn::GroupNorm>() ||
        m->as<torch::nn::BatchNorm2d>() || m->as<model::SyncBatchNorm2dImpl>()) {
      for (const auto& p : m->parameters()) norm_params.insert(p.unsafeGetTensorImpl());
    }
  }
  std::vector<torch::Tensor> groups[4];
  for (const auto& kv : model.named_parameters()) {
    if (!kv.value().requires_grad()) continue;
    const bool backbone = kv.key().rfind("backbone.", 0) == 0;
    const bool norm = norm_params.count(kv.value().unsafeGetTensorImpl()) > 0;
    groups[(backbone ? 2 : 0) + (norm ? 1 : 0)].push_back(kv.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> out;
  for (int g = 0; g < 4; ++g) {
    auto opts = std::make_unique<torch::optim::AdamWOptions>(group_lr(g, s));
    opts->betas({s.beta1, s.beta2}).weight_decay(g % 2 ? 0.0 : s.weight_decay);
    out.emplace_back(groups[g], std::move(opts));
  }
  return out;
}

}  // namespace

Solver::Solver(torch::nn::Module& model, const SolverOptions& options)
    : options_(options), optimizer_(param_groups(model, options)) {}

void Solver::begin_step(int64_t iteration) {
  const double f = lr_factor(options_, iteration);
  auto& groups = optimizer_.param_groups();
  for (size_t g = 0; g < groups.size(); ++g) {
    static_cast<torch::optim::AdamWOptions&>(groups[g].options())
        .lr(group_lr(int(g), options_) * f);
  }
  clear_gradients();
}

// To none, not to zero (LibTorch 2's default; 1.13 zeroes): backward then writes each gradient
// instead of adding it to zeros, and the gradients do not exist until backward has freed the
// activations that came before them, which lowers the step's peak memory by their size.
void Solver::clear_gradients() {
  for (auto& g : optimizer_.param_groups()) {
    for (auto& p : g.params()) p.mutable_grad() = torch::Tensor();
  }
}

double Solver::lr(int64_t iteration) const {
  return lr_factor(options_, iteration) * options_.lr;
}

namespace {

// torch::nn::utils::clip_grad_norm_'s arithmetic (the norm of the per-tensor norms, a factor
// clamped at 1) without its return value, which would wait for the device every step.
void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  std::vector<torch::Tensor> norms;
  for (const auto& p : params) {
    if (p.grad().defined()) norms.push_back(p.grad().norm(2));
  }
  if (norms.empty()) return;
  const auto total = torch::stack(norms).norm(2);
  const auto factor = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().mul_(factor);
  }
}

}  // namespace

bool Solver::step(const Distributed& dist, GradScaler* scaler) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params;
  for (auto& g : optimizer_.param_groups()) {
    for (auto& p : g.params()) {
      if (p.grad().defined() || dist.world_size() > 1) params.push_back(p);
    }
  }
  if (dist.world_size() > 1) {
    // A parameter without a gradient on some rank (a head its images did not reach) gets zeros
    // there, so that every rank reduces the same tensors; one without a gradient anywhere stays
    // without, and the optimizer skips it as in a single process.
    std::vector<double> has_grad;
    for (const auto& p : params) has_grad.push_back(p.grad().defined() ? 1.0 : 0.0);
    has_grad = dist.sum(has_grad);
    std::vector<torch::Tensor> used;
    for (size_t i = 0; i < params.size(); ++i) {
      if (has_grad[i] == 0) continue;
      if (!params[i].grad().defined()) params[i].mutable_grad() = torch::zeros_like(params[i]);
      used.push_back(params[i]);
    }
    params = std::move(used);
    std::vector<torch::Tensor> grads;
    for (auto& p : params) grads.push_back(p.mutable_grad());
    dist.average(grads);
  }
  if (scaler) {
    // After the average, so every rank finds the same and skips alike.
    std::vector<torch::Tensor> grads;
    for (auto& p : params) {
      if (p.grad().defined()) grads.push_back(p.grad());
    }
    const bool finite = scaler->unscale(grads);
    if (!finite) {
      scaler->update();
      clear_gradients();
      return false;
    }
  }
  if (options_.clip_norm > 0) clip_grad_norm(params, options_.clip_norm);
  adamw_step(optimizer_);
  if (scaler) scaler->update();
  return true;
}

}  // namespace aligndetr::engine
