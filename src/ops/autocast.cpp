#include "aligndetr/ops/autocast.h"

#include <ATen/autocast_mode.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

namespace aligndetr::ops {
namespace {

void check_device(c10::DeviceType device) {
  TORCH_CHECK(device == c10::DeviceType::CPU || device == c10::DeviceType::CUDA,
              "autocast: only CPU and CUDA are supported, got ", device);
}

#if TORCH_VERSION_MAJOR >= 2
bool enabled(c10::DeviceType device) {
  return at::autocast::is_autocast_enabled(device);
}
void set_enabled(c10::DeviceType device, bool on) {
  at::autocast::set_autocast_enabled(device, on);
}
c10::ScalarType dtype(c10::DeviceType device) {
  return at::autocast::get_autocast_dtype(device);
}
void set_dtype(c10::DeviceType device, c10::ScalarType type) {
  at::autocast::set_autocast_dtype(device, type);
}
#else
bool enabled(c10::DeviceType device) {
  return device == c10::DeviceType::CPU ? at::autocast::is_cpu_enabled()
                                        : at::autocast::is_enabled();
}
void set_enabled(c10::DeviceType device, bool on) {
  if (device == c10::DeviceType::CPU) {
    at::autocast::set_cpu_enabled(on);
  } else {
    at::autocast::set_enabled(on);
  }
}
c10::ScalarType dtype(c10::DeviceType device) {
  return device == c10::DeviceType::CPU ? at::autocast::get_autocast_cpu_dtype()
                                        : at::autocast::get_autocast_gpu_dtype();
}
void set_dtype(c10::DeviceType device, c10::ScalarType type) {
  if (device == c10::DeviceType::CPU) {
    at::autocast::set_autocast_cpu_dtype(type);
  } else {
    at::autocast::set_autocast_gpu_dtype(type);
  }
}
#endif

}  // namespace

AutocastGuard::AutocastGuard(c10::DeviceType device, c10::ScalarType type) : device_(device) {
  check_device(device);
  TORCH_CHECK(type == c10::ScalarType::BFloat16 || type == c10::ScalarType::Half,
              "autocast: the reduced precision must be bfloat16 or float16, got ", type);
  was_enabled_ = enabled(device);
  was_dtype_ = dtype(device);
  set_enabled(device, true);
  set_dtype(device, type);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  // As torch.autocast's exit: the cache of casted weights lives as long as the outermost region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_enabled(device_, was_enabled_);
  set_dtype(device_, was_dtype_);
}

AutocastOff::AutocastOff()
    : cpu_(enabled(c10::DeviceType::CPU)), cuda_(enabled(c10::DeviceType::CUDA)) {
  set_enabled(c10::DeviceType::CPU, false);
  set_enabled(c10::DeviceType::CUDA, false);
}

AutocastOff::~AutocastOff() {
  set_enabled(c10::DeviceType::CPU, cpu_);
  set_enabled(c10::DeviceType::CUDA, cuda_);
}

bool autocast_enabled(c10::DeviceType device) {
  check_device(device);
  return enabled(device);
}

c10::ScalarType autocast_dtype(c10::DeviceType device) {
  check_device(device);
  return dtype(device);
}

}  // namespace aligndetr::ops
