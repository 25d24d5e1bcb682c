#include "aligndetr/ops/tensor_stamp.h"

namespace aligndetr::ops {

namespace {

const void* data_of(const torch::Tensor& t) {
  return t.defined() ? t.data_ptr() : nullptr;
}

int64_t version_of(const torch::Tensor& t) {
  return t.defined() ? int64_t(t._version()) : -1;
}

}  // namespace

TensorStamp::TensorStamp(const std::vector<torch::Tensor>& sources) : taken_(true) {
  sources_.reserve(sources.size());
  for (const auto& t : sources) sources_.push_back({t, data_of(t), version_of(t)});
}

bool TensorStamp::matches(const std::vector<torch::Tensor>& sources) const {
  if (!taken_ || sources.size() != sources_.size()) return false;
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& s = sources_[i];
    const auto& t = sources[i];
    if (!s.tensor.is_same(t) || s.data != data_of(t) || s.version != version_of(t)) return false;
  }
  return true;
}

}  // namespace aligndetr::ops
