#!/usr/bin/env bash
# The device check, for a machine with PyTorch 2.x (CUDA) and nvcc but none of the Debian
# libraries the full build needs: builds the core alone with the CUDA kernels
# (-DALIGNDETR_CORE_ONLY=ON -DALIGNDETR_CUDA=ON) and runs aligndetr_gpu_check, which prints one
# table: the CUDA deformable-attention kernel against the CPU kernel (forward and gradients in
# float32, float16, bfloat16), a tiny DINO training step on the GPU in float32 and bfloat16, and
# the kernel at the R50 encoder shape against grid_sample. Takes a few minutes; exit 0 when
# every check passes. On a machine without a GPU the rows run on the CPU and the table says so.
#   scripts/gpu-check.sh [BUILD_DIR] [-- CHECK_ARGS]   (default build-gpu-check)
#   PYTHON=...            the interpreter whose torch to build against (default python3)
#   CUDA_ARCHITECTURES=.. nvcc's targets (default 80;90: Ampere and Hopper)
set -euo pipefail
cd "$(dirname "$0")/.."
build=build-gpu-check
if [[ $# -gt 0 && $1 != -- ]]; then
  build=$1
  shift
fi
[[ ${1:-} == -- ]] && shift
python=${PYTHON:-python3}
jobs=$(nproc)

if ! prefix=$("$python" -c "import torch.utils; print(torch.utils.cmake_prefix_path)" 2>/dev/null); then
  echo "gpu-check: '$python' has no torch; set PYTHON to an interpreter with PyTorch 2.x" >&2
  exit 2
fi
cmake_bin=$(command -v cmake || true)
if [[ -z $cmake_bin ]]; then
  # PyPI's cmake package, when the interpreter has it.
  cmake_bin=$("$python" -c "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))" 2>/dev/null || true)
fi
if [[ -z $cmake_bin ]]; then
  echo "gpu-check: no cmake on PATH or in '$python' (pip install cmake)" >&2
  exit 2
fi
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
torch_lib=$(dirname "$(dirname "$prefix")")/lib
echo "gpu-check: $("$python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)" 2>/dev/null)"
echo "gpu-check: $(nvcc --version 2>/dev/null | tail -1 || echo 'no nvcc on PATH')"
"$cmake_bin" -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$prefix" -Dc10_LIBRARY="$torch_lib/libc10.so" \
  -DALIGNDETR_CORE_ONLY=ON -DALIGNDETR_CUDA=ON \
  -DALIGNDETR_CUDA_ARCHITECTURES="${CUDA_ARCHITECTURES:-80;90}" >"$build.configure.log" 2>&1 ||
  { tail -40 "$build.configure.log" >&2; exit 2; }
"$cmake_bin" --build "$build" -j "$jobs" --target aligndetr_gpu_check
"$build/aligndetr_gpu_check" "$@"
