#!/usr/bin/env bash
# Issue #7's GPU figures in one prepared run (~8 minutes on one H100/H200), for a session whose task
# is lent the device machine (/work/.library/device/README.md: 15 device minutes per session, the
# machine's start included). Here, once:   bash benchmarks/gpu_prepare.sh
# Then one call of the device tool:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl", ".gpu_data"], timeout_s=570)
# and give the machine back. What it measures, each line also in $OUT/check.log:
#   1. the machine (nvidia-smi, versions) -> env.txt; a 2-step smoke benchmark that picks the flax /
#      optax / orbax to use (the machine's own, else the pinned wheels of .whl/pinned)
#   2. python -m classic_cnns.benchmark: CIFAR ResNet-20, batch 128, fp32 and bf16; ResNet-50 at 224,
#      batch 256, bf16 -> bench_*.json (train/eval img/s, compile s, device peak memory, % of a
#      matmul roofline in the same dtype)
#   3. the full ResNet-20 paper schedule (configs/resnet_cifar.py:20: 64k iterations, batch 128,
#      eval every epoch) on the CIFAR-10 JPEG images with the device-resident data path, capped at
#      SCHEDULE_LIMIT_S (default 330) seconds -> schedule.log (wall time, final accuracy) and
#      schedule_metrics.jsonl; the issue asks for under 5 minutes.
# GPU_CHECK_SMOKE=1 runs every stage at toy sizes (a CPU dry run of the script itself).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
SMOKE=${GPU_CHECK_SMOKE:-0}
SCHEDULE_LIMIT_S=${SCHEDULE_LIMIT_S:-330}
exec > >(tee -a "$OUT/check.log") 2>&1
t_start=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - t_start ))s] $*"; }

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
# classic_cnns.cli's default XLA flag is an XLA:CPU option; on a GPU machine run XLA's defaults.
export CLASSIC_CNNS_DEFAULT_XLA_FLAGS=0
SITE=/tmp/classic_cnns_site
export PYTHONPATH="$SITE:$PWD"
PY=python3

install_wheels() {  # $1: a folder of wheels (device README: no index, no deps, into a target dir)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$1"/*.whl
}

say "1. the machine"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found (no NVIDIA GPU)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
  lscpu 2>/dev/null | grep -E "^Model name|^CPU\(s\)"
  $PY --version
} > "$OUT/env.txt" 2>&1
install_wheels .whl/base || { say "error: could not install .whl/base (run benchmarks/gpu_prepare.sh here first)"; exit 2; }

smoke_benchmark() {
  timeout 240 $PY -m classic_cnns.benchmark --model=lenet5 --input=28 --pad_to=32 --augment=none \
    --batch=64 --steps=2 --repeats=1 --warmup=1 --matmul_size=0
}
versions() {
  $PY -c 'import jax, jaxlib, flax, optax, orbax.checkpoint as oc, ml_collections
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "| flax", flax.__version__, "| optax", optax.__version__,
      "| orbax-checkpoint", oc.__version__, "| devices", jax.devices())'
}
if smoke_benchmark; then
  say "the machine's own flax/optax/orbax work"
else
  say "smoke run failed with the machine's flax/optax/orbax: installing the pinned ones (.whl/pinned)"
  install_wheels .whl/pinned && smoke_benchmark || { say "error: the smoke benchmark fails with the pinned wheels too"; versions; exit 1; }
fi
versions | tee -a "$OUT/env.txt"

say "2. train-step benchmarks (synthetic data on device)"
if [[ $SMOKE == 1 ]]; then
  common=(--steps=2 --repeats=1 --warmup=1 --matmul_size=256 --matmul_repeats=1)
  r50=(--model=resnet50 --input=64 --batch=8)
else
  common=(--steps=50 --repeats=5 --warmup=5 --matmul_size=8192 --matmul_repeats=10)
  r50=(--model=resnet50 --input=224 --batch=256)
fi
timeout 150 $PY -m classic_cnns.benchmark --model=resnet20 --batch=128 --input=32 --dtype=float32 "${common[@]}" \
  --json="$OUT/bench_resnet20_fp32.json" || say "resnet20 fp32 benchmark failed (exit $?)"
timeout 150 $PY -m classic_cnns.benchmark --model=resnet20 --batch=128 --input=32 --dtype=bfloat16 "${common[@]}" \
  --json="$OUT/bench_resnet20_bf16.json" || say "resnet20 bf16 benchmark failed (exit $?)"
timeout 200 $PY -m classic_cnns.benchmark "${r50[@]}" --augment=flip --dtype=bfloat16 "${common[@]}" \
  --json="$OUT/bench_resnet50_bf16.json" || say "resnet50 bf16 benchmark failed (exit $?)"

say "3. the ResNet-20 paper schedule on CIFAR-10 (JPEG train split, 45k/5k), device-resident data"
if [[ ! -f .gpu_data/cifar10_jpeg_train.tar.gz ]]; then
  say "skipped: .gpu_data/cifar10_jpeg_train.tar.gz not carried"
else
  tar xzf .gpu_data/cifar10_jpeg_train.tar.gz -C /tmp
  sched=()
  [[ $SMOKE == 1 ]] && sched=(--config.num_steps=40 --config.eval_every_steps=20 --config.log_every_steps=10)
  workdir=/tmp/gpu_check_resnet20
  rm -rf "$workdir"
  t0=$(date +%s.%N)
  timeout --signal=TERM "$SCHEDULE_LIMIT_S" $PY -m classic_cnns.main --config=configs/resnet_cifar.py:20 \
    --workdir="$workdir" --config.data.source=folder --config.data.path=/tmp/cifar10_jpeg \
    --config.data.on_device=True --config.compilation_cache_dir= "${sched[@]}" 2>&1 | tee "$OUT/schedule.log"
  status=${PIPESTATUS[0]}
  t1=$(date +%s.%N)
  cp -f "$workdir/metrics.jsonl" "$OUT/schedule_metrics.jsonl" 2>/dev/null
  say "schedule run: exit $status, $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s wall for the whole command" \
      "(process start, JPEG decoding, compiles, training, evaluations, checkpoints)" | tee -a "$OUT/schedule.log"
  [[ $status == 124 ]] && say "stopped at the ${SCHEDULE_LIMIT_S} s cap (SIGTERM: checkpoint saved); the last progress line above has steps/s"
fi
say "done; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
