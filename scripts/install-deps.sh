#!/usr/bin/env bash
# Installs every build and test dependency from Debian's packages and selects the OpenMP build of
# OpenBLAS. Idempotent: when everything is in place it only runs queries and exits.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp
  libopencv-dev libjpeg-dev libsimdjson-dev libyaml-cpp-dev libcli11-dev
  libspdlog-dev libfmt-dev libgtest-dev libgmock-dev libbenchmark-dev libssl-dev
  libpugixml-dev
  # tcmalloc for the command: a fifth lower peak memory in training than glibc's allocator.
  libgoogle-perftools-dev
  clang-format
  # The weight-import tests write real PyTorch checkpoints with Debian's torch and torchvision.
  python3-torch python3-torchvision
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# LibTorch runs its own threads with OpenMP. The pthread build of OpenBLAS (Debian's first choice
# when several are installed) keeps a second pool that spins against OpenMP's on the same cores:
# a tiny-model training step is 1.9x slower with it than with the OpenMP build, which shares
# LibTorch's pool (build/bench/bench_train_step). Debian's reference BLAS is slower still.
arch=$(gcc -print-multiarch)
openmp_dir="/usr/lib/$arch/openblas-openmp"
for lib in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  name="$lib-$arch"
  if [[ $(readlink -f "/etc/alternatives/$name" || true) != $(readlink -f "$openmp_dir/$lib") ]]; then
    echo "install-deps: selecting $openmp_dir/$lib for $name"
    $SUDO update-alternatives --quiet --set "$name" "$openmp_dir/$lib"
  fi
done
