#include "aligndetr/ops/linear.h"

#include <cstdlib>
#include <cstring>
#include <memory>

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/record_function.h>
#include <torch/torch.h>

#include "aligndetr/ops/autocast.h"
#include "aligndetr/ops/tensor_stamp.h"

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

// A float32 product over many rows on the CPU runs forward as oneDNN's 1x1 convolution, the rows
// viewed as a channels-last image of one column (a view both ways: no copy). At inference, against
// 1.13's OpenBLAS it takes R50 inference at 800x1216 from 2.47-2.57 s to 2.37 s (alternating
// `aligndetr bench` runs); against 2.x's MKL it is a wash.
bool convolution_takes(const torch::Tensor& rows) {
  return rows.is_cpu() && rows.scalar_type() == torch::kFloat &&
         rows.size(0) >= kMinConvolutionRows && rows.is_contiguous() &&
         !autocast_enabled(c10::kCPU) && onednn_convolution_allowed();
}

bool as_convolution(const torch::Tensor& rows) {
  return !torch::GradMode::is_enabled() && convolution_takes(rows);
}

// The rows [m, k] as a channels-last image [1, k, m, 1] (a view: no copy).
torch::Tensor as_image(const torch::Tensor& rows) {
  const int64_t m = rows.size(0), k = rows.size(1);
  return rows.as_strided({1, k, m, 1}, {m * k, 1, k, k});
}

// The image [1, n, m, 1] back as x's leading dimensions by n: a view of a channels-last result
// (oneDNN's for a channels-last input), a copy otherwise.
torch::Tensor from_image(const torch::Tensor& out, const torch::Tensor& x) {
  auto sizes = x.sizes().vec();
  sizes.back() = out.size(1);
  return out.permute({0, 2, 3, 1}).reshape(sizes);
}

// The product of the rows as oneDNN's 1x1 convolution: [1, n, m, 1], channels-last.
torch::Tensor convolve_rows(const torch::Tensor& rows, const torch::Tensor& weight,
                            const torch::Tensor& bias) {
  const auto w = weight.view({weight.size(0), weight.size(1), 1, 1});
  return F::conv2d(as_image(rows), w, F::Conv2dFuncOptions().bias(bias));
}

// In training, only the forward: at the R50 step's shapes ([6380 or 2200 rows] x 256 -> 256, 768
// or 2048, and 2048 -> 256) oneDNN's forward ran at 117-153 GMAC/s against addmm's 116-128, but
// forward and backward together at 105-116 either way. The backward is addmm's products. R50
// training step, 2 x 320x480: 3.84-3.98 s -> 3.73-3.76 s (three alternating pairs).
class ConvolvedLinear : public torch::autograd::Function<ConvolvedLinear> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& rows,
                               const torch::Tensor& weight, const torch::Tensor& bias) {
    RECORD_FUNCTION("aligndetr::linear", std::vector<c10::IValue>({rows, weight}));
    const torch::NoGradGuard no_grad;
    const auto out = convolve_rows(rows.detach(), weight.detach(), bias);
    ctx->save_for_backward({rows, weight});
    // Not a view for autograd: the FFN's ReLU writes the result in place.
    return at::_unsafe_view(out.permute({0, 2, 3, 1}).contiguous(), {rows.size(0), weight.size(0)});
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    // In grad mode only under create_graph: then these products record their own backward.
    const auto saved = ctx->get_saved_variables();
    const auto &rows = saved[0], &weight = saved[1];
    const auto& g = grads[0];
    return {ctx->needs_input_grad(0) ? g.mm(weight) : torch::Tensor(),
            ctx->needs_input_grad(1) ? g.t().mm(rows) : torch::Tensor(),
            ctx->needs_input_grad(2) ? g.sum(0) : torch::Tensor()};
  }
};

// LibTorch's prepacked oneDNN convolution (registered by libtorch_cpu in 1.13 and 2.x for its
// JIT's fusion passes), reached through the dispatcher: its context type is not in the headers.
struct PrepackOps {
  c10::optional<c10::OperatorHandle> prepack, run;
};

const PrepackOps& prepack_ops() {
  static const PrepackOps ops = [] {
    auto& dispatcher = c10::Dispatcher::singleton();
    return PrepackOps{dispatcher.findSchema({"mkldnn_prepacked::conv2d_prepack", ""}),
                      dispatcher.findSchema({"mkldnn_prepacked::conv2d_run", ""})};
  }();
  return ops;
}

}  // namespace

struct PackedLinearWeight {
  c10::IValue context;
  TensorStamp sources;  // the weight and the bias it was packed from
  bool relu = false;
  int64_t rows = 0;  // of the input it was packed for

  bool packed_from(const torch::Tensor& w, const torch::Tensor& b, bool with_relu) const {
    return with_relu == relu && sources.matches({w, b});
  }
};

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
    return from_image(convolve_rows(rows, weight, bias), x);
  }
  if (convolution_takes(rows) && weight.is_contiguous()) {
    return at::_unsafe_view(ConvolvedLinear::apply(rows, weight, bias), sizes);
  }
  // Not a view for autograd (as aten::matmul does): an in-place op on a view of it (the FFN's
  // ReLU, the value's padding fill) would make backward rebuild the whole product's gradient
  // through as_strided, a zero fill and copies.
  return at::_unsafe_view(torch::addmm(bias, rows, weight.t()), sizes);
}

torch::Tensor LinearImpl::forward(const torch::Tensor& x) {
  return run(x, false);
}

torch::Tensor LinearImpl::forward_relu(const torch::Tensor& x) {
  return run(x, true);
}

torch::Tensor LinearImpl::run(const torch::Tensor& x, bool relu) {
  const auto plain = [&] {
    auto y = linear(x, weight, bias);
    return relu ? y.relu_() : y;
  };
  const auto& ops = prepack_ops();
  if (x.dim() < 2 || !bias.defined() || !ops.prepack || !ops.run || !weight.is_contiguous()) {
    return plain();
  }
  const auto rows = x.reshape({-1, x.size(-1)});
  if (!as_convolution(rows)) return plain();
  // Read and replaced atomically: forwards of one module on several threads each use a whole
  // packed weight (at worst two threads both pack a new one).
  auto packed = std::atomic_load(&packed_);
  const bool current = packed && packed->packed_from(weight, bias, relu);
  if (current && packed->rows != rows.size(0)) {
    // oneDNN may want the weight in another blocked layout for another number of rows (2.x's
    // does for the encoder's last, shorter block), and reordering a packed weight into another
    // such layout is far slower than reordering the plain one (12 ms against 0.2 ms).
    return plain();
  }
  if (!current) {
    const int64_t n = weight.size(0), k = weight.size(1);
    // Strided as a channels-last kernel (the same bytes), so that the weight is packed in the
    // layout the channels-last convolution asks for and not reordered again at every call.
    torch::jit::Stack stack{weight.as_strided({n, k, 1, 1}, {k, 1, k, k}),
                            bias,
                            std::vector<int64_t>{1, 1},
                            std::vector<int64_t>{0, 0},
                            std::vector<int64_t>{1, 1},
                            int64_t(1),
                            std::vector<int64_t>{1, k, rows.size(0), 1},
                            std::string(relu ? "relu" : "none")};
    ops.prepack->callBoxed(&stack);
    packed = std::make_shared<PackedLinearWeight>(PackedLinearWeight{
        std::move(stack.at(0)), TensorStamp({weight, bias}), relu, rows.size(0)});
    std::atomic_store(&packed_, packed);
  }
  RECORD_FUNCTION("aligndetr::linear", std::vector<c10::IValue>({rows, weight}));
  torch::jit::Stack stack{as_image(rows), packed->context};
  ops.run->callBoxed(&stack);
  return from_image(stack.at(0).toTensor(), x);
}

}  // namespace aligndetr::ops
