#!/usr/bin/env bash
# libFuzzer targets for the readers of untrusted files (fuzz/): the COCO annotation reader, the
# COCO results reader, the YAML config reader and the checkpoint (torch.save) reader, built with
# clang and AddressSanitizer + UndefinedBehaviorSanitizer, each run for FUZZ_SECONDS (default 60)
# from seeds: fuzz/seeds, the repo's configs, torch.save files written by
# fuzz/make_checkpoint_seeds.py, and ../shared's real files when present. A crash, a sanitizer report or an exception other than InputError fails
# the run; the input that did it is left in BUILD_DIR/<target>-artifacts/.
#   scripts/fuzz.sh [BUILD_DIR]          (default build-fuzz; `make fuzz`)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-fuzz}
seconds=${FUZZ_SECONDS:-60}
cxx=${FUZZ_CXX:-clang++}
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "fuzz: $cxx not found (apt install clang); fuzzing skipped" >&2
  exit 0
fi
mkdir -p "$build"
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Iinclude)
# The readers and what they use, without the AVX2 build flags (the fuzzer build asks for no
# particular CPU) and without LibTorch.
sources=(src/util/atomic_file.cpp src/util/json.cpp src/coco/annotations.cpp src/coco/dataset.cpp
         src/coco/names.cpp src/coco/results.cpp src/coco/results_writer.cpp)
libs=(-lsimdjson -lfmt -lpthread)
build_target() {
  local target=$1
  shift
  echo "fuzz: building $target"
  "$cxx" "${flags[@]}" "fuzz/fuzz_$target.cpp" "$@" -o "$build/fuzz_$target"
}
build_target coco_reader "${sources[@]}" "${libs[@]}"
build_target results_reader "${sources[@]}" "${libs[@]}"
build_target config_reader src/engine/config.cpp -lyaml-cpp -lfmt
# The checkpoint reader with Debian's LibTorch (not instrumented itself: the sanitizers watch our
# code and what it hands to LibTorch).
torch_include=/usr/include/torch/csrc/api/include
build_target checkpoint_reader -isystem "$torch_include" src/model/torch_pickle.cpp \
  src/model/weights.cpp src/util/atomic_file.cpp -ltorch -ltorch_cpu -lc10 -lpthread

# The configs as seeds, each after an override line (the target's first line).
config_seeds="$build/config-seeds"
mkdir -p "$config_seeds"
for f in configs/*.yaml configs/base/*.yaml; do
  { echo "solver.lr=2e-4"; cat "$f"; } >"$config_seeds/$(basename "$f")"
done
checkpoint_seeds="$build/checkpoint-seeds"
mkdir -p "$checkpoint_seeds"
# Debian's python3-torch (a python3 earlier on PATH, e.g. pyenv's, usually lacks it).
python=${ALIGNDETR_PYTHON:-/usr/bin/python3}
"$python" fuzz/make_checkpoint_seeds.py "$checkpoint_seeds"

run() {
  local target=$1 seeds=$2 leaks=$3
  local corpus="$build/$target-corpus" artifacts="$build/$target-artifacts/"
  mkdir -p "$corpus" "$artifacts"
  cp "$seeds"/* "$corpus"/
  shift 3
  for extra in "$@"; do [[ -f $extra ]] && cp "$extra" "$corpus"/; done
  echo "fuzz: $target for ${seconds}s"
  ASAN_OPTIONS=detect_leaks=$leaks UBSAN_OPTIONS=print_stacktrace=1 \
    "$build/fuzz_$target" "$corpus" -max_total_time="$seconds" -max_len=65536 \
    -artifact_prefix="$artifacts" -print_final_stats=1 2>&1 | tail -4
  return "${PIPESTATUS[0]}"
}
run coco_reader fuzz/seeds/coco 1 ../shared/data/cocoapi-fake100/instances_val2014_100.json
run results_reader fuzz/seeds/results 1 \
  ../shared/data/cocoapi-fake100/instances_val2014_fakebbox100_results.json
run config_reader "$config_seeds" 1
# LibTorch keeps process-wide allocations it never frees: no leak report for it.
run checkpoint_reader "$checkpoint_seeds" 0
echo "fuzz: no failures"
