#pragma once
// How many times an operator (by its RecordFunction name) runs on this thread during some work.

#include <functional>
#include <memory>
#include <string>

#include <ATen/record_function.h>

namespace aligndetr::testing {

namespace detail {
struct CallCount {
  std::string name;
  int calls = 0;
};
inline CallCount& call_count() {
  thread_local CallCount count;
  return count;
}
}  // namespace detail

inline int calls_of(const std::string& name, const std::function<void()>& work) {
  auto& count = detail::call_count();
  count = {name, 0};
  const auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback([](const at::RecordFunction& fn)
                                     -> std::unique_ptr<at::ObserverContext> {
        if (fn.name() == detail::call_count().name) ++detail::call_count().calls;
        return nullptr;
      }).scopes({at::RecordScope::FUNCTION}));
  work();
  at::removeCallback(handle);
  return count.calls;
}

}  // namespace aligndetr::testing
