#pragma once
// A named stage of a forward pass (backbone, neck, encoder, ...) as a RecordFunction user scope:
// what `aligndetr bench` times and LibTorch's profilers show. Free when nothing observes it.

#include <ATen/record_function.h>

namespace aligndetr::model::detail {

class Stage {
 public:
  explicit Stage(const char* name) : guard_(at::RecordScope::USER_SCOPE) {
    if (guard_.isActive()) guard_.before(name);
  }
  // Ends the stage before the end of its C++ scope.
  void end() { guard_.end(); }

 private:
  at::RecordFunction guard_;
};

}  // namespace aligndetr::model::detail
