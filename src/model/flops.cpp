#include "aligndetr/model/flops.h"

#include <cstring>
#include <optional>

#include <ATen/record_function.h>
#include <torch/torch.h>

namespace aligndetr::model {

namespace {

enum class Kind { kNone, kMatmul, kLinear, kConv, kAttention, kRowsTimesWeight, kFeedForward };

Kind kind_of(const char* name) {
  static const std::map<std::string, Kind> kinds = {
      {"aten::mm", Kind::kMatmul},
      {"aten::bmm", Kind::kMatmul},
      {"aten::addmm", Kind::kMatmul},
      {"aten::baddbmm", Kind::kMatmul},
      {"aten::matmul", Kind::kMatmul},
      {"aten::linear", Kind::kLinear},
      {"aten::conv2d", Kind::kConv},
      {"aten::convolution", Kind::kConv},
      {"aten::_convolution", Kind::kConv},
      {"aligndetr::blocked_attention", Kind::kAttention},
      {"aligndetr::linear", Kind::kRowsTimesWeight},
      {"aligndetr::ffn", Kind::kFeedForward},
  };
  const auto it = kinds.find(name);
  return it == kinds.end() ? Kind::kNone : it->second;
}

thread_local FlopReport* g_report = nullptr;
thread_local int g_depth = 0;  // counted operators currently running on this thread

// The i-th input if it is a tensor. Inputs are only readable in the start callback (LibTorch 2.x
// keeps them on the dispatcher's stack).
std::optional<at::Tensor> tensor_input(const at::RecordFunction& fn, size_t i) {
  const auto& inputs = fn.inputs();
  if (i >= inputs.size() || !inputs[i].isTensor()) return std::nullopt;
  return inputs[i].toTensor();
}

// The reduced (inner) dimension of a counted operator, read from its inputs at its start; the
// flops are that times the output's size.
struct InnerSize : at::ObserverContext {
  int64_t inner = 0;
  int64_t total = 0;  // when known from the inputs alone
};

// Attention (q [N, Lq, E], k, v [N, Lk, Ev]): its two products, N Lq Lk (E + Ev), whatever its
// output shows.
int64_t attention_flops(const at::RecordFunction& fn) {
  const auto q = tensor_input(fn, 0), k = tensor_input(fn, 1), v = tensor_input(fn, 2);
  if (!q || !k || !v || q->dim() != 3 || k->dim() != 3 || v->dim() != 3) return 0;
  return q->size(0) * q->size(1) * k->size(1) * (q->size(2) + v->size(2));
}

// ops::linear's scope: rows [M, K] times weight [N, K], M K N.
int64_t rows_times_weight_flops(const at::RecordFunction& fn) {
  const auto rows = tensor_input(fn, 0), weight = tensor_input(fn, 1);
  if (!rows || !weight || rows->dim() != 2 || weight->dim() != 2) return 0;
  return rows->numel() * weight->size(0);
}

// ops::ffn's scope: x [M, D], w1 [F, D], w2 [D', F]; its two products, M F (D + D').
int64_t feed_forward_flops(const at::RecordFunction& fn) {
  const auto x = tensor_input(fn, 0), w1 = tensor_input(fn, 1), w2 = tensor_input(fn, 2);
  if (!x || !w1 || !w2 || x->dim() != 2 || w1->dim() != 2 || w2->dim() != 2) return 0;
  return x->size(0) * w1->size(0) * (x->size(1) + w2->size(0));
}

int64_t inner_size(const at::RecordFunction& fn, Kind kind) {
  if (kind == Kind::kConv) {
    const auto w = tensor_input(fn, 1);
    return w && w->dim() >= 3 ? w->numel() / w->size(0) : 0;
  }
  if (kind == Kind::kLinear) {
    const auto x = tensor_input(fn, 0);
    return x && x->dim() >= 1 ? x->size(-1) : 0;
  }
  // mm / bmm / matmul take (a, b); addmm / baddbmm take (c, a, b).
  const std::string name = fn.name();
  const size_t a_index = (name == "aten::addmm" || name == "aten::baddbmm") ? 1 : 0;
  const auto a = tensor_input(fn, a_index);
  return a && a->dim() >= 1 ? a->size(-1) : 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (!g_report) return nullptr;
  const Kind kind = kind_of(fn.name());
  if (kind == Kind::kNone) return nullptr;
  ++g_depth;
  auto ctx = std::make_unique<InnerSize>();
  if (kind == Kind::kAttention) {
    ctx->total = attention_flops(fn);
  } else if (kind == Kind::kRowsTimesWeight) {
    ctx->total = rows_times_weight_flops(fn);
  } else if (kind == Kind::kFeedForward) {
    ctx->total = feed_forward_flops(fn);
  } else {
    ctx->inner = inner_size(fn, kind);
  }
  return ctx;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext* ctx) {
  if (!g_report || !ctx) return;
  if (--g_depth > 0) return;  // inside another counted operator
  const auto* size = static_cast<InnerSize*>(ctx);
  int64_t flops = size->total;
  if (flops == 0) {
    const auto& outputs = fn.outputs();
    if (outputs.empty() || !outputs[0].isTensor()) return;
    flops = outputs[0].toTensor().numel() * size->inner;
  }
  g_report->total += flops;
  g_report->by_operator[fn.name()] += flops;
}

}  // namespace

FlopReport count_flops(const std::function<void()>& work) {
  FlopReport report;
  g_report = &report;
  g_depth = 0;
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(on_start, on_end).needsInputs(true).needsOutputs(true));
  try {
    work();
  } catch (...) {
    at::removeCallback(handle);
    g_report = nullptr;
    throw;
  }
  at::removeCallback(handle);
  g_report = nullptr;
  return report;
}

}  // namespace aligndetr::model
