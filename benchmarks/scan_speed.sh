#!/usr/bin/env bash
# Train/eval speed and first-step wait of the scanned layouts (ResNet scan_blocks, DenseNet
# scan_layers) against the default unrolled ones, same process settings, alternating.
# Usage: benchmarks/scan_speed.sh [OUT_DIR]
set -euo pipefail
out=${1:-/tmp/scan_speed}
mkdir -p "$out"
run() {  # name input batch option
  python -m classic_cnns.benchmark --model="$1" --input="$2" --batch="$3" --steps=5 --repeats=3 --warmup=1 \
      --matmul_size=0 --model_option="$4" --json="$out/$1-${4//=/_}.json" | grep "^| $1"
}
for flag in False True; do run resnet20 32 128 scan_blocks=$flag; done
for flag in False True; do run resnet110 32 128 scan_blocks=$flag; done
for flag in False True; do run densenet_bc_100_12 32 64 scan_layers=$flag; done
