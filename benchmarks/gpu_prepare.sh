#!/usr/bin/env bash
# Gathers what benchmarks/gpu_check.sh needs on a GPU machine that has JAX (CUDA), flax, optax and
# orbax but no ml-collections or tensorboardX and no network:
#   .whl/base/    ml-collections, tensorboardX          (always installed there)
#   .whl/pinned/  flax, optax, orbax-checkpoint as pinned here (installed there only if the machine's
#                 own versions fail the smoke run; its jax/jaxlib are used either way)
#   .gpu_data/    the CIFAR-10 JPEG training tarball (16 MB), for the ResNet-20 schedule
# Both folders are git-ignored; copy them to the GPU machine with the checkout.
# The tarball is read from ../shared/datasets, where the configs' documented commands expect it.
# Run from the repository root:   bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
pip_download() {  # pure-Python wheels; the platform flags only matter for compiled ones
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$@"
}
rm -rf .whl && mkdir -p .whl/base .whl/pinned .gpu_data
pip_download .whl/base ml-collections==1.1.0 tensorboardX==2.6.5
pip_download .whl/pinned flax==0.12.8 optax==0.2.8 orbax-checkpoint==0.12.8
tarball=../shared/datasets/cifar10_jpeg_train.tar.gz
if [[ -f $tarball ]]; then
  cp -f "$tarball" .gpu_data/
else
  echo "warning: $tarball not found: gpu_check.sh will skip the ResNet-20 schedule run" >&2
fi
du -sh .whl .gpu_data
ls .whl/base .whl/pinned .gpu_data
