#pragma once
// FLOPs of a forward pass, counted by observing the operators LibTorch runs, so any model is
// covered without per-module formulas. Convention: fvcore's (the GFLOPs of the DETR papers):
// one multiply-add is one flop, and only matrix products and convolutions count; element-wise
// ops, normalisation, softmax and bilinear sampling count zero (the reference's deformable
// attention is a custom kernel that fvcore does not see either).

#include <cstdint>
#include <functional>
#include <map>
#include <string>

namespace aligndetr::model {

struct FlopReport {
  int64_t total = 0;
  std::map<std::string, int64_t> by_operator;  // e.g. "aten::convolution": ...
};

// Runs `work` on the calling thread and counts the flops of the operators it calls (nested
// calls inside a counted operator are not counted again).
FlopReport count_flops(const std::function<void()>& work);

}  // namespace aligndetr::model
