#include "aligndetr/ops/ffn.h"

#include <ATen/record_function.h>
#include <torch/torch.h>

namespace aligndetr::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

torch::Tensor hidden(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1) {
  return torch::addmm(b1, x, w1.t()).relu_();
}

class RecomputedFFN : public torch::autograd::Function<RecomputedFFN> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x,
                               const torch::Tensor& w1, const torch::Tensor& b1,
                               const torch::Tensor& w2, const torch::Tensor& b2, int64_t rows) {
    // Named, with its inputs, for profilers and the flop count (model::count_flops).
    RECORD_FUNCTION("aligndetr::ffn", std::vector<c10::IValue>({x, w1, w2}));
    const torch::NoGradGuard no_grad;
    const auto xd = x.detach(), w1d = w1.detach(), b1d = b1.detach();
    auto out = torch::empty({x.size(0), w2.size(0)}, x.options());
    for (int64_t r0 = 0; r0 < x.size(0); r0 += rows) {
      const int64_t n = std::min(rows, x.size(0) - r0);
      auto o = out.narrow(0, r0, n);
      torch::addmm_out(o, b2.detach(), hidden(xd.narrow(0, r0, n), w1d, b1d), w2.detach().t());
    }
    ctx->save_for_backward({x, w1, b1, w2});
    ctx->saved_data["rows"] = rows;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    RECORD_FUNCTION("aligndetr::ffn_backward", std::vector<c10::IValue>());
    const torch::NoGradGuard no_grad;
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w1 = saved[1], &b1 = saved[2], &w2 = saved[3];
    const int64_t rows = ctx->saved_data["rows"].toInt();
    const auto gy = grads[0].contiguous();
    // The parameters' gradients sum over the blocks in float32 at least: in bfloat16 each
    // block's addition would be rounded to 8 bits (one product over all rows rounds once).
    const auto acc_type = torch::promote_types(w1.scalar_type(), torch::kFloat);
    const auto acc = w1.options().dtype(acc_type);
    auto gx = torch::empty_like(x);
    auto gw1 = torch::zeros(w1.sizes(), acc), gb1 = torch::zeros(b1.sizes(), acc),
         gw2 = torch::zeros(w2.sizes(), acc);
    const auto accumulate = [](torch::Tensor& into, const torch::Tensor& a,
                               const torch::Tensor& b) {
      if (into.scalar_type() == a.scalar_type()) {
        into.addmm_(a, b);
      } else {
        into.add_(torch::mm(a, b));
      }
    };
    for (int64_t r0 = 0; r0 < x.size(0); r0 += rows) {
      const int64_t n = std::min(rows, x.size(0) - r0);
      const auto xb = x.narrow(0, r0, n), gyb = gy.narrow(0, r0, n);
      const auto h = hidden(xb, w1, b1);
      accumulate(gw2, gyb.t(), h);
      // Through the ReLU: zero where its output is (h is that output).
      const auto gh = torch::threshold_backward(torch::mm(gyb, w2), h, 0);
      auto gxb = gx.narrow(0, r0, n);
      torch::mm_out(gxb, gh, w1);
      accumulate(gw1, gh.t(), xb);
      gb1.add_(gh.sum({0}, false, acc_type));
    }
    // Autograd casts each back to its input's dtype.
    return {gx, gw1, gb1, gw2, gy.sum({0}, false, acc_type), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor ffn(const torch::Tensor& x, const torch::Tensor& w1, const torch::Tensor& b1,
                  const torch::Tensor& w2, const torch::Tensor& b2, int64_t block_rows) {
  TORCH_CHECK(x.dim() >= 1 && w1.dim() == 2 && w2.dim() == 2 && b1.dim() == 1 && b2.dim() == 1 &&
                  w1.size(1) == x.size(-1) && b1.size(0) == w1.size(0) &&
                  w2.size(1) == w1.size(0) && b2.size(0) == w2.size(0),
              "ffn: x [..., D], w1 [F, D], b1 [F], w2 [D', F], b2 [D'], got ", x.sizes(), ", ",
              w1.sizes(), ", ", b1.sizes(), ", ", w2.sizes(), ", ", b2.sizes());
  TORCH_CHECK(x.scalar_type() == w1.scalar_type() && w1.scalar_type() == b1.scalar_type() &&
                  b1.scalar_type() == w2.scalar_type() && w2.scalar_type() == b2.scalar_type(),
              "ffn: all five tensors must share one dtype");
  TORCH_CHECK(block_rows > 0, "ffn: block_rows must be positive, got ", block_rows);
  auto sizes = x.sizes().vec();
  sizes.back() = w2.size(0);
  const auto rows = x.reshape({-1, x.size(-1)}).contiguous();
  return at::_unsafe_view(RecomputedFFN::apply(rows, w1, b1, w2, b2, block_rows), sizes);
}

}  // namespace aligndetr::ops
