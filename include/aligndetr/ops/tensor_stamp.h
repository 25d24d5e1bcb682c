#pragma once
// Whether a copy derived from some tensors (a weight packed in oneDNN's layout, a frozen norm
// folded into its convolution) is still current. It is while each source is the same tensor
// over the same storage at the same version counter (every in-place change bumps it). The
// sources are held, so a new tensor allocated where a freed one lived is never taken for it.

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace aligndetr::ops {

class TensorStamp {
 public:
  TensorStamp() = default;  // taken of nothing: matches nothing
  explicit TensorStamp(const std::vector<torch::Tensor>& sources);

  // True when `sources` are, one by one, the tensors this stamp was taken of, unchanged since.
  // Undefined tensors are allowed (an absent bias) and match only an undefined one.
  bool matches(const std::vector<torch::Tensor>& sources) const;

 private:
  struct Source {
    torch::Tensor tensor;
    const void* data = nullptr;
    int64_t version = -1;
  };
  std::vector<Source> sources_;
  bool taken_ = false;
};

}  // namespace aligndetr::ops
