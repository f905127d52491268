#!/usr/bin/env bash
# The BENCHMARKS.md "First-step wait" table: init + train-step compile of the deepest / largest
# models, each in its own process, no compilation cache. Usage: benchmarks/first_step_wait.sh [OUT_DIR]
set -euo pipefail
out=${1:-/tmp/first_step_wait}
mkdir -p "$out"
run() {  # name input [model options...]
  local name=$1 side=$2; shift 2
  local tag=$name; for o in "$@"; do tag="$tag-${o//=/_}"; done
  python -m classic_cnns.benchmark --model="$name" --input="$side" --batch=8 --compile_only \
      "${@/#/--model_option=}" --json="$out/$tag.json" | grep "^| $name"
}
run vgg19 224
run resnet152 224
run resnet152 224 scan_blocks=True
run inception_v3 299
run densenet_bc_250_24 32
run densenet264 224
run resnet1202 32 scan_blocks=True
run densenet_bc_250_24 32 scan_layers=True
run densenet264 224 scan_layers=True
