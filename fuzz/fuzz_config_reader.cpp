// libFuzzer target: the YAML config reader and its typed getters. The input's first line is an
// override (`--set key=value`), the rest the config. Whatever a user's file holds, each call
// either answers or throws InputError; nothing else may escape, crash or trip the sanitizers.

#include <cstddef>
#include <cstdint>
#include <string>

#include "aligndetr/engine/config.h"
#include "aligndetr/util/error.h"

namespace {

template <typename F>
void guarded(F&& f) {
  try {
    f();
  } catch (const aligndetr::util::InputError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t newline = input.find('\n');
  const std::string assignment = input.substr(0, newline);
  const std::string yaml = newline == std::string::npos ? "" : input.substr(newline + 1);
  guarded([&] {
    auto config = aligndetr::engine::Config::parse(yaml, "fuzz.yaml");
    guarded([&] { config.set(assignment); });
    for (const auto& leaf : config.leaf_values()) {
      const std::string& key = leaf.first;
      guarded([&] { (void)config.get_double(key); });
      guarded([&] { (void)config.get_int(key); });
      guarded([&] { (void)config.get_bool(key); });
      guarded([&] { (void)config.get_string(key); });
      guarded([&] { (void)config.get_int_list(key); });
      guarded([&] { (void)config.get_double_list(key); });
      guarded([&] { (void)config.list_size(key); });
    }
    guarded([&] { (void)config.list_size("model.init_weights"); });
    guarded([&] { config.require_all_used(); });
    (void)aligndetr::engine::Config::parse(config.dump(), "fuzz.yaml");
  });
  return 0;
}
