#include "aligndetr/engine/adamw.h"

#include <cmath>
#include <memory>

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "optimizer_state.h"

namespace aligndetr::engine {

namespace {

struct Coefficients {
  float decay, b1, a1, b2, a2, root_correction2, eps, step;
};

// The whole step for n elements; restrict-qualified so that the compiler vectorises it.
void update(const Coefficients& c, float* __restrict w, const float* __restrict g,
            float* __restrict m, float* __restrict v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float mi = m[i] * c.b1 + c.a1 * g[i];
    const float vi = v[i] * c.b2 + c.a2 * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * c.decay + c.step * (mi / (std::sqrt(vi) / c.root_correction2 + c.eps));
  }
}

bool fusable(const torch::Tensor& p) {
  const auto& g = p.grad();
  return p.is_cpu() && p.scalar_type() == torch::kFloat && p.is_contiguous() && g.is_cpu() &&
         g.scalar_type() == torch::kFloat && g.is_contiguous() && !g.is_sparse();
}

// The moments, made on a parameter's first step as LibTorch makes them.
torch::optim::AdamWParamState& state_of(torch::optim::AdamW& optimizer, const torch::Tensor& p) {
  auto& states = optimizer.state();
  const auto key = detail::param_key(p);
  auto it = states.find(key);
  if (it == states.end()) {
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(0);
    st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    it = states.emplace(key, std::move(st)).first;
  }
  auto& st = static_cast<torch::optim::AdamWParamState&>(*it->second);
  // Moments read from a checkpoint may come in another layout.
  if (!st.exp_avg().is_contiguous()) st.exp_avg(st.exp_avg().contiguous());
  if (!st.exp_avg_sq().is_contiguous()) st.exp_avg_sq(st.exp_avg_sq().contiguous());
  return st;
}

bool takes_fused_step(torch::optim::AdamW& optimizer) {
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    for (const auto& p : group.params()) {
      if (p.grad().defined() && (o.amsgrad() || !fusable(p))) return false;
    }
  }
  return true;
}

}  // namespace

void adamw_step(torch::optim::AdamW& optimizer) {
  torch::NoGradGuard no_grad;
  if (!takes_fused_step(optimizer)) {
    optimizer.step();
    return;
  }
  for (auto& group : optimizer.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(group.options());
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto& st = state_of(optimizer, p);
      st.step(st.step() + 1);
      const double correction1 = 1 - std::pow(beta1, double(st.step()));
      const double correction2 = 1 - std::pow(beta2, double(st.step()));
      // LibTorch's operators take these scalars in float for float tensors.
      Coefficients c;
      c.decay = float(1 - o.lr() * o.weight_decay());
      c.b1 = float(beta1);
      c.a1 = float(1 - beta1);
      c.b2 = float(beta2);
      c.a2 = float(1 - beta2);
      c.root_correction2 = float(std::sqrt(correction2));
      c.eps = float(o.eps());
      c.step = float(-o.lr() / correction1);
      float* w = p.data_ptr<float>();
      const float* g = p.grad().data_ptr<float>();
      float* m = st.exp_avg().data_ptr<float>();
      float* v = st.exp_avg_sq().data_ptr<float>();
      at::parallel_for(0, p.numel(), 1 << 14, [&](int64_t begin, int64_t end) {
        update(c, w + begin, g + begin, m + begin, v + begin, end - begin);
      });
    }
  }
}

}  // namespace aligndetr::engine
