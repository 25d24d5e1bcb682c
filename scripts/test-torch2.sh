#!/usr/bin/env bash
# The second build: against PyTorch 2.x from PyPI (its bundled LibTorch has CUDA), installed in a
# virtual environment this script makes, with NCCL process groups and the CUDA kernels (nvcc,
# sm_80 and sm_90); then the whole CPU test suite (tests that need a GPU skip and say so). PyPI is for building and testing only: nothing the
# build makes needs Python at run time.
#   scripts/test-torch2.sh [BUILD_DIR]      (default build-torch2; ALIGNDETR_TORCH2_VENV moves
#                                            the environment, default .cache/venv-torch2)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-torch2}
venv=${ALIGNDETR_TORCH2_VENV:-.cache/venv-torch2}
jobs=$(nproc)

if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
  echo "test-torch2: installing PyTorch 2.x into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch>=2.4"
fi
prefix=$("$venv/bin/python" -c "import torch.utils; print(torch.utils.cmake_prefix_path)" 2>/dev/null)
version=$("$venv/bin/python" -c "import torch; print(torch.__version__, torch.version.cuda)" 2>/dev/null)
echo "test-torch2: LibTorch $version ($prefix)"

# TorchConfig looks for libc10 on the default paths too, where Debian's LibTorch 1.13 has one:
# two c10 libraries in one process abort at start-up.
torch_lib=$(dirname "$(dirname "$prefix")")/lib
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix" \
  -Dc10_LIBRARY="$torch_lib/libc10.so" -DALIGNDETR_BUILD_BENCH=OFF -DALIGNDETR_NCCL=ON \
  -DALIGNDETR_CUDA=ON
cmake --build "$build" -j "$jobs"
cd "$build" && ctest --output-on-failure -j "$jobs"
