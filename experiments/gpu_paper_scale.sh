#!/usr/bin/env bash
# An experiment's `paper` scale on one GPU, resumable in slices:
#   bash experiments/gpu_paper_scale.sh [NAME] [SEEDS] [OUTPUT_DIR]
# defaults: NAME=resnet_degradation (He et al. 2016, Fig. 6 / Table 6: ResNet-20/56/110 and their plain
# twins, 64k steps of 128 each), SEEDS=0-2, OUTPUT_DIR=$OUT or ./gpu_out.
# Environment:
#   DATASET        the runner's --dataset (default: the plan's, tfds:cifar10, which needs the TFDS
#                  files; offline use tfds:cifar10@DIR with DIR holding a prepared cifar10/, or
#                  cifar10_folder:PATH). When unset and .gpu_data/cifar10_jpeg_train.tar.gz exists,
#                  it is extracted and used as cifar10_folder (45k/5k split; no 10k test images, so
#                  final numbers are on the 5k held-out images: the report says which).
#   TIME_LIMIT_S   stop after this many seconds (SIGTERM: the running variant checkpoints and the
#                  next call resumes it); default 0 = no limit.
#   RUNS_DIR       where workdirs live between slices (default experiments/runs).
#   PYTHON         the interpreter (default python3).
#   SCALE          the plan's scale (default paper); SCALE=cpu runs the cpu-scale plan (CIFAR-10 folder,
#                  the recipe whose summaries the 2-core machines publish: the config hash does not
#                  depend on the machine, so GPU and CPU seeds pool in one report).
# Every finished variant/seed writes experiments/results/NAME/runs/SCALE/VARIANT/seedS.json; these
# and the rebuilt report are copied to OUTPUT_DIR/results, the log to OUTPUT_DIR/NAME.log. Rerunning
# trains only what is missing.
set -u -o pipefail
cd "$(dirname "$0")/.."
NAME=${1:-resnet_degradation}
SEEDS=${2:-0-2}
OUT=${3:-${OUT:-$PWD/gpu_out}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PY=${PYTHON:-python3}
RUNS_DIR=${RUNS_DIR:-experiments/runs}
TIME_LIMIT_S=${TIME_LIMIT_S:-0}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
exec > >(tee -a "$OUT/$NAME.log") 2>&1
say() { echo "[gpu_paper_scale $(date -u +%H:%M:%S)] $*"; }

{ nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"; } | tee "$OUT/env.txt"
$PY -c 'import jax; print("jax", jax.__version__, jax.default_backend(), jax.devices())' | tee -a "$OUT/env.txt"
[[ $($PY -c 'import jax; print(jax.default_backend())') == cpu ]] \
  && say "warning: JAX sees no accelerator; this runs on the CPU"

SCALE=${SCALE:-paper}
args=("$NAME" --scale="$SCALE" --seeds="$SEEDS" --out="$RUNS_DIR")
if [[ -n ${DATASET:-} ]]; then
  args+=(--dataset="$DATASET")
elif [[ -f .gpu_data/cifar10_jpeg_train.tar.gz ]]; then
  mkdir -p /tmp/gpu_cifar10
  [[ -d /tmp/gpu_cifar10/cifar10_jpeg ]] || tar xzf .gpu_data/cifar10_jpeg_train.tar.gz -C /tmp/gpu_cifar10
  args+=(--dataset=cifar10_folder:/tmp/gpu_cifar10/cifar10_jpeg)
fi

say "python -m experiments.run ${args[*]} --dry-run"
$PY -m experiments.run "${args[@]}" --dry-run || { say "error: the plan does not validate here"; exit 2; }
say "python -m experiments.run ${args[*]}"
if (( TIME_LIMIT_S > 0 )); then
  timeout --signal=TERM --kill-after=120 "$TIME_LIMIT_S" $PY -m experiments.run "${args[@]}"
else
  $PY -m experiments.run "${args[@]}"
fi
status=$?
case $status in
  0) say "every requested run finished" ;;
  124 | 143) say "stopped at TIME_LIMIT_S=$TIME_LIMIT_S (checkpointed): run the same command again to resume" ;;
  *) say "exit status $status (a failed variant is listed in the report)" ;;
esac
mkdir -p "$OUT/results"
cp -r "experiments/results/$NAME" "$OUT/results/" 2>/dev/null || true
exit $status
