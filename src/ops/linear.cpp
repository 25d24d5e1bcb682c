#include "aligndetr/ops/linear.h"

#include <cstdlib>
#include <cstring>

#include <ATen/Context.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"

namespace aligndetr::ops {

namespace {

namespace F = torch::nn::functional;

// Below this many rows the BLAS product is as fast and the convolution's set-up shows.
constexpr int64_t kMinConvolutionRows = 256;

bool onednn_convolution_allowed() {
  static const bool allowed = [] {
    const char* env = std::getenv("ALIGNDETR_LINEAR_AS_CONV");
    return at::hasMKLDNN() && !(env && std::strcmp(env, "0") == 0);
  }();
  return allowed;
}

// At inference on the CPU a float32 product over many rows runs as oneDNN's 1x1 convolution, the
// rows viewed as a channels-last image of one column (a view both ways: no copy). Against 1.13's
// OpenBLAS it takes R50 inference at 800x1216 from 2.47-2.57 s to 2.37 s (alternating `aligndetr
// bench` runs); against 2.x's MKL it is a wash. Training keeps addmm: its backward is the one
// every rank must sum alike.
bool as_convolution(const torch::Tensor& rows) {
  return !torch::GradMode::is_enabled() && rows.is_cpu() && rows.scalar_type() == torch::kFloat &&
         rows.size(0) >= kMinConvolutionRows && rows.is_contiguous() &&
         !autocast_enabled(c10::kCPU) && onednn_convolution_allowed();
}

}  // namespace

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight,
                     const torch::Tensor& bias) {
  if (x.dim() < 2 || !bias.defined()) return F::linear(x, weight, bias);
  // reshape copies only an input whose rows cannot be viewed as one matrix.
  const auto rows = x.reshape({-1, x.size(-1)});
  auto sizes = x.sizes().vec();
  sizes.back() = weight.size(0);
  if (as_convolution(rows) && weight.is_contiguous()) {
    // Named, with its inputs, so that the flop count sees a matrix product (model::count_flops).
    RECORD_FUNCTION("aligndetr::linear", std::vector<c10::IValue>({rows, weight}));
    const int64_t m = rows.size(0), k = rows.size(1), n = weight.size(0);
    const auto image = rows.as_strided({1, k, m, 1}, {m * k, 1, k, k});
    const auto out = F::conv2d(image, weight.view({n, k, 1, 1}), F::Conv2dFuncOptions().bias(bias));
    // A view of a channels-last result (oneDNN's for a channels-last input), a copy otherwise.
    return out.permute({0, 2, 3, 1}).reshape(sizes);
  }
  // Not a view for autograd (as aten::matmul does): an in-place op on a view of it (the FFN's
  // ReLU, the value's padding fill) would make backward rebuild the whole product's gradient
  // through as_strided, a zero fill and copies.
  return at::_unsafe_view(torch::addmm(bias, rows, weight.t()), sizes);
}

}  // namespace aligndetr::ops
