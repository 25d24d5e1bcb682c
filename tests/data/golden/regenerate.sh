#!/usr/bin/env bash
# Writes the golden tensors of tests/test_golden.cpp from the current build:
#   bash tests/data/golden/regenerate.sh [BUILD_DIR]
# They freeze the outputs of a tiny DINO and DAB-DETR (seed 0, the fixed input of golden_input()),
# one criterion call and one AdamW step. Regenerate them only for a deliberate change of what the
# models compute, and say so in the commit; never to make a failing Golden test pass.
set -euo pipefail
build=${1:-build}
ALIGNDETR_WRITE_GOLDEN=1 "$build/tests/aligndetr_tests" --gtest_filter='Golden.*'
