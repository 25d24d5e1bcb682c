// The suite's entry point: the process set up as the `aligndetr` command sets itself up
// (engine::configure_runtime: freed memory kept for reuse), so that the library runs in the tests
// as it runs for users. With glibc's defaults every training step's large blocks came back as
// fresh pages: Trainer.LossFallsAndApRises took 5.4 million page faults and 63 s of system time.
// LibTorch keeps the number of threads it starts with (OpenCV is given the same): ctest runs
// tests side by side, and the golden AdamW fingerprint (test_golden.cpp) was recorded with it.

#include <gtest/gtest.h>

#include <ATen/Parallel.h>

#include "aligndetr/engine/runtime.h"

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  aligndetr::engine::configure_runtime(at::get_num_threads());
  return RUN_ALL_TESTS();
}
