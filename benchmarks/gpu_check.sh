#!/usr/bin/env bash
# The portable default on a GPU machine, in one run sized for about 5 minutes on one H200 and ended
# by TOTAL_LIMIT_S (default 480 s: every command's timeout is cut to what is left of it):
#   bash benchmarks/gpu_check.sh [OUTPUT_DIR]        (default: $OUT, else ./gpu_out)
# On a GPU `--config.kernels=auto` (every command's default) selects the portable kernels (plain Flax /
# lax ops; classic_cnns/backends). What it does, each line also in OUTPUT_DIR/check.log:
#   1. the machine: nvidia-smi, JAX's devices and the versions -> env.txt
#   2. short trainings with --config.kernels=auto on the MNIST sample shipped in the package (no
#      download): LeNet-5, CIFAR ResNet-20 and NIN (images padded to 32x32), each a few hundred steps
#      with evaluations; each startup line must say "kernels portable"
#   3. python -m classic_cnns.benchmark --kernels=auto: train/eval img/s, compile s, device peak
#      memory and % of a matmul roofline: ResNet-20 at 32 px, batch 128, fp32 and bf16; ResNet-50 at
#      224 px, batch 256, bf16 -> bench_*.json (each must report kernels "portable")
#   4. optional (SCHEDULE_LIMIT_S > 0 and .gpu_data/cifar10_jpeg_train.tar.gz present): the ResNet-20
#      paper schedule on the CIFAR-10 JPEG images, capped at SCHEDULE_LIMIT_S seconds -> schedule.log
# For a GPU machine with JAX (CUDA) but no network: wheels the project needs and the
# machine lacks are installed from .whl/base (and .whl/pinned if the machine's flax/optax/orbax fail
# the smoke run) when those folders exist; `bash benchmarks/gpu_prepare.sh` fills them.
# GPU_CHECK_SMOKE=1 runs every stage at toy sizes (a CPU dry run of this script); PYTHON picks the
# interpreter (default python3).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$PWD/gpu_out}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SMOKE=${GPU_CHECK_SMOKE:-0}
SCHEDULE_LIMIT_S=${SCHEDULE_LIMIT_S:-0}
TOTAL_LIMIT_S=${TOTAL_LIMIT_S:-480}
PY=${PYTHON:-python3}
exec > >(tee -a "$OUT/check.log") 2>&1
t_start=$(date +%s)
say() { echo "[gpu_check +$(( $(date +%s) - t_start ))s] $*"; }
failures=0
failed() { say "FAILED: $*"; failures=$((failures + 1)); }
limit() {  # $1: a command's own cap in seconds -> the cap, cut to what is left of TOTAL_LIMIT_S
  local left=$(( t_start + TOTAL_LIMIT_S - $(date +%s) ))
  (( left < 15 )) && left=15
  echo $(( $1 < left ? $1 : left ))
}

export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
SITE=/tmp/classic_cnns_site
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d /tmp/gpu_check.XXXXXX)

install_wheels() {  # $1: a folder of wheels (no index, no deps, into a target dir)
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$1"/*.whl
}
versions() {
  $PY -c 'import jax, jaxlib, flax, optax, orbax.checkpoint as oc, ml_collections
print("jax", jax.__version__, "jaxlib", jaxlib.__version__, "| flax", flax.__version__, "| optax", optax.__version__,
      "| orbax-checkpoint", oc.__version__, "| backend", jax.default_backend(), "| devices", jax.devices())'
}
smoke_benchmark() {
  timeout "$(limit 240)" $PY -m classic_cnns.benchmark --model=lenet5 --input=28 --pad_to=32 --augment=none \
    --batch=64 --steps=2 --repeats=1 --warmup=1 --matmul_size=0 --kernels=auto > "$WORK/smoke.log" 2>&1
  local status=$?
  tail -3 "$WORK/smoke.log"
  return $status
}

say "1. the machine"
{
  date -u
  nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found (no NVIDIA GPU)"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null
  lscpu 2>/dev/null | grep -E "^Model name|^CPU\(s\)"
  $PY --version
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! $PY -c "import ml_collections, tensorboardX" 2>/dev/null; then
  if [[ -d .whl/base ]]; then
    install_wheels .whl/base || { say "error: could not install .whl/base"; exit 2; }
  else
    say "error: ml-collections / tensorboardX missing and no .whl/base (run benchmarks/gpu_prepare.sh first)"; exit 2
  fi
fi
if smoke_benchmark; then
  say "the machine's own flax/optax/orbax work"
elif [[ -d .whl/pinned ]]; then
  say "smoke run failed with the machine's flax/optax/orbax: installing the pinned ones (.whl/pinned)"
  install_wheels .whl/pinned && smoke_benchmark || { say "error: the smoke benchmark fails with the pinned wheels too"; versions; exit 1; }
else
  say "error: the smoke benchmark failed (see above)"; versions; exit 1
fi
versions | tee -a "$OUT/env.txt"
backend=$($PY -c 'import jax; print(jax.default_backend())')
[[ $backend == cpu && $SMOKE != 1 ]] && say "warning: JAX runs on the CPU here: the numbers below are no GPU figures"

say "2. short trainings, --config.kernels=auto, on the MNIST sample shipped in the package"
if [[ $SMOKE == 1 ]]; then
  steps=(4 4 4); every=(2 2 2); batch=(32 32 32)
else
  steps=(600 600 600); every=(300 300 300); batch=(128 128 128)
fi
train() {  # $1 name, $2 steps, $3 eval every, $4 batch, then config file and overrides
  local name=$1 n=$2 every=$3 bs=$4; shift 4
  local workdir=$WORK/train_$name
  local t0=$(date +%s.%N)
  timeout "$(limit 180)" $PY -m classic_cnns.main "$@" --workdir="$workdir" --config.kernels=auto \
    --config.data.source=embedded --config.data.name=mnist --config.data.pad_to=32 --config.data.val_size=0 \
    --config.num_steps="$n" --config.eval_every_steps="$every" --config.log_every_steps="$every" \
    --config.batch_size="$bs" --config.eval_batch_size=500 --config.checkpoint_every_steps="$n" \
    --config.compilation_cache_dir= > "$WORK/train_$name.log" 2>&1
  local status=$? t1=$(date +%s.%N)
  grep -E "^model |kernels |final |error" "$WORK/train_$name.log" | cut -c1-400
  say "$name: exit $status, $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s for the whole command (start, compile, $n steps, evaluations)"
  if [[ $status != 0 ]]; then
    tail -5 "$WORK/train_$name.log"; failed "training $name"
  elif [[ $backend != cpu ]] && ! grep -q "kernels portable" "$WORK/train_$name.log"; then
    failed "training $name did not select the portable kernels"
  fi
}
train lenet5 "${steps[0]}" "${every[0]}" "${batch[0]}" --config=configs/lenet5_mnist.py
train resnet20 "${steps[1]}" "${every[1]}" "${batch[1]}" --config=configs/resnet_cifar.py:20
train nin "${steps[2]}" "${every[2]}" "${batch[2]}" --config=configs/nin_cifar.py

say "3. train-step benchmarks, --kernels=auto (synthetic data on the device)"
if [[ $SMOKE == 1 ]]; then
  common=(--steps=2 --repeats=1 --warmup=1 --matmul_size=256 --matmul_repeats=1)
  r50=(--model=resnet50 --input=64 --batch=8)
else
  common=(--steps=50 --repeats=3 --warmup=5 --matmul_size=8192 --matmul_repeats=10)
  r50=(--model=resnet50 --input=224 --batch=256)
fi
bench() {  # $1 output name, then benchmark flags
  local name=$1; shift
  timeout "$(limit 150)" $PY -m classic_cnns.benchmark --kernels=auto "$@" "${common[@]}" --json="$OUT/bench_$name.json" \
    || { failed "benchmark $name (exit $?)"; return; }
  $PY - "$OUT/bench_$name.json" "$backend" <<'EOF' || failed "benchmark $name: kernels"
import json, sys
row = json.load(open(sys.argv[1]))["results"][0]
print(f"{sys.argv[1]}: kernels {row['kernels']}, train {row['train_img_per_s']:.0f} img/s, "
      f"eval {row['eval_img_per_s']:.0f} img/s, compile {row['train_compile_s']:.1f} s")
sys.exit(0 if row["kernels"] == "portable" or sys.argv[2] == "cpu" else 1)
EOF
}
bench resnet20_fp32 --model=resnet20 --batch=128 --input=32 --dtype=float32
bench resnet20_bf16 --model=resnet20 --batch=128 --input=32 --dtype=bfloat16
bench resnet50_bf16 "${r50[@]}" --augment=flip --dtype=bfloat16

say "4. the ResNet-20 paper schedule on CIFAR-10 JPEG images (optional)"
if (( SCHEDULE_LIMIT_S <= 0 )); then
  say "skipped (SCHEDULE_LIMIT_S=0; e.g. SCHEDULE_LIMIT_S=330 runs it)"
elif [[ ! -f .gpu_data/cifar10_jpeg_train.tar.gz ]]; then
  say "skipped: .gpu_data/cifar10_jpeg_train.tar.gz not present (benchmarks/gpu_prepare.sh copies it)"
else
  tar xzf .gpu_data/cifar10_jpeg_train.tar.gz -C "$WORK"
  sched=()
  [[ $SMOKE == 1 ]] && sched=(--config.num_steps=40 --config.eval_every_steps=20 --config.log_every_steps=10)
  t0=$(date +%s.%N)
  timeout --signal=TERM "$(limit "$SCHEDULE_LIMIT_S")" $PY -m classic_cnns.main --config=configs/resnet_cifar.py:20 \
    --workdir="$WORK/schedule" --config.kernels=auto --config.data.source=folder --config.data.path="$WORK/cifar10_jpeg" \
    --config.data.on_device=True --config.compilation_cache_dir= "${sched[@]}" 2>&1 | tee "$OUT/schedule.log"
  status=${PIPESTATUS[0]}
  t1=$(date +%s.%N)
  say "schedule run: exit $status, $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s wall for the whole command" | tee -a "$OUT/schedule.log"
  [[ $status == 124 ]] && say "stopped at the ${SCHEDULE_LIMIT_S} s cap (SIGTERM: checkpoint saved); the last progress line above has steps/s"
fi
rm -rf "$WORK"
say "done, $failures failure(s); files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
exit $(( failures > 0 ))
