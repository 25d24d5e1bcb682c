#pragma once
// Mixed precision: ATen's autocast (matrix products and convolutions in a reduced precision,
// reductions and normalisations in float32) enabled or disabled for a scope, on one device type.
// LibTorch 1.13 and 2.x spell these switches differently; the guards hide it.

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

namespace aligndetr::ops {

// Autocast on `device` (kCPU or kCUDA) to `dtype` (kBFloat16 or kHalf) until destruction; the
// previous state is restored and, when the outermost guard ends, the cast cache cleared.
class AutocastGuard {
 public:
  AutocastGuard(c10::DeviceType device, c10::ScalarType dtype);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  c10::DeviceType device_;
  bool was_enabled_;
  c10::ScalarType was_dtype_;
};

// Autocast off on every device until destruction (float32 regions: losses, matching).
class AutocastOff {
 public:
  AutocastOff();
  ~AutocastOff();
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool cpu_, cuda_;
};

bool autocast_enabled(c10::DeviceType device);
// The reduced precision autocast narrows to on `device` (meaningful while it is enabled).
c10::ScalarType autocast_dtype(c10::DeviceType device);

}  // namespace aligndetr::ops
