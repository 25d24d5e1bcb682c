#pragma once
// The key of a parameter in a LibTorch optimizer's state map: its TensorImpl's address, as text
// in LibTorch 1.x and as the pointer itself in 2.x. (A template, so that only the branch of this
// version is compiled.)

#include <sstream>
#include <string>
#include <type_traits>
#include <utility>

#include <torch/optim/adamw.h>

namespace aligndetr::engine::detail {

using StateKey =
    std::decay_t<decltype(std::declval<torch::optim::AdamW&>().state().begin()->first)>;

template <typename Key = StateKey>
Key param_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

}  // namespace aligndetr::engine::detail
