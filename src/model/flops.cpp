#include "aligndetr/model/flops.h"

#include <cstring>

#include <ATen/record_function.h>
#include <torch/torch.h>

namespace aligndetr::model {

namespace {

enum class Kind { kNone, kMatmul, kLinear, kConv };

Kind kind_of(const char* name) {
  static const std::map<std::string, Kind> kinds = {
      {"aten::mm", Kind::kMatmul},         {"aten::bmm", Kind::kMatmul},
      {"aten::addmm", Kind::kMatmul},      {"aten::baddbmm", Kind::kMatmul},
      {"aten::matmul", Kind::kMatmul},     {"aten::linear", Kind::kLinear},
      {"aten::conv2d", Kind::kConv},       {"aten::convolution", Kind::kConv},
      {"aten::_convolution", Kind::kConv},
  };
  const auto it = kinds.find(name);
  return it == kinds.end() ? Kind::kNone : it->second;
}

thread_local FlopReport* g_report = nullptr;
thread_local int g_depth = 0;  // counted operators currently running on this thread

const at::Tensor* tensor_input(const at::RecordFunction& fn, size_t i) {
  const auto inputs = fn.inputs();
  if (i >= inputs.size() || !inputs[i].isTensor()) return nullptr;
  return &inputs[i].toTensor();
}

// Flops from the output's size and the reduced (inner) dimension.
int64_t flops_of(const at::RecordFunction& fn, Kind kind) {
  const auto outputs = fn.outputs();
  if (outputs.empty() || !outputs[0].isTensor()) return 0;
  const int64_t out = outputs[0].toTensor().numel();
  const std::string name = fn.name();
  if (kind == Kind::kConv) {
    const auto* w = tensor_input(fn, 1);
    if (!w || w->dim() < 3) return 0;
    return out * (w->numel() / w->size(0));
  }
  if (kind == Kind::kLinear) {
    const auto* x = tensor_input(fn, 0);
    return x && x->dim() >= 1 ? out * x->size(-1) : 0;
  }
  // mm / bmm / matmul take (a, b); addmm / baddbmm take (c, a, b).
  const size_t a_index = (name == "aten::addmm" || name == "aten::baddbmm") ? 1 : 0;
  const auto* a = tensor_input(fn, a_index);
  return a && a->dim() >= 1 ? out * a->size(-1) : 0;
}

std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
  if (g_report && kind_of(fn.name()) != Kind::kNone) ++g_depth;
  return nullptr;
}

void on_end(const at::RecordFunction& fn, at::ObserverContext*) {
  if (!g_report) return;
  const Kind kind = kind_of(fn.name());
  if (kind == Kind::kNone) return;
  if (--g_depth > 0) return;  // inside another counted operator
  const int64_t flops = flops_of(fn, kind);
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
