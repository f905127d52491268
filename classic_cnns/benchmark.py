"""Training and inference speed of the real trainer's steps, on synthetic data already on device:

    python -m classic_cnns.benchmark --model=resnet20 [--batch=128] [--input=32] [--dtype=float32]
        [--repeats=5] [--steps=20] [--json=out.json]
    python -m classic_cnns.benchmark --model=lenet5 --input=28 --pad_to=32 --augment=none   # the MNIST recipe
    python -m classic_cnns.benchmark --all            # one representative per family, small inputs
    python -m classic_cnns.benchmark --model=densenet264 --input=224 --batch=8 --compile_only  # first-step wait

What is timed is exactly what `classic_cnns.main` runs: a config from `config.base_config()` with
the model's name, `build.build_model`, `build.create_train_state`, and `train_steps.make_train_step` /
`train_steps.make_eval_step` jitted with the trainer's shardings (state donated). Batches are uint8
images + int32 labels placed on the device once, so the numbers exclude the input pipeline (see
`classic_cnns.benchmark_data` for that); preprocessing (normalise, pad, augment) runs inside the step.

Reported per model:
  train / eval img/s   median over --repeats timed runs of --steps steps each, after warm-up
                       steps, ended by block_until_ready;
  init s               `build.create_train_state` (the trainer's jitted init: trace + compile + run);
  lower / compile s    the first step's `jit(...).lower()` and `.compile()`, timed separately;
                       init s + lower s + compile s = the wait before the first training step;
  cores used           CPU seconds of this process per wall second during the timed train steps
                       (2.0 = both cores of a 2-core machine; less = waiting, or sharing with other load);
  peak memory          process RSS high-water mark (resource.getrusage; KiB on Linux) read right after
                       the model's runs, and device `memory_stats()["peak_bytes_in_use"]` where the
                       backend has it (GPU/TPU; None on CPU); XLA's temp buffer size of the train step;
  GFLOP/s              XLA `cost_analysis()["flops"]` of the compiled train step / median step time;
  pct roofline         that / the GFLOP/s of an NxN `jnp` matmul (N=--matmul_size) in the compute
                       dtype (--dtype: fp32, or bf16 -- the GPU's tensor-core peak) measured in the
                       same process right after (median of --matmul_repeats).
`--all` runs each model in its own subprocess, so that each gets its own RSS high-water mark.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from absl import flags

from classic_cnns import cli

_MODEL = cli.define_once(
  flags.DEFINE_string,
  "model",
  None,
  "Registered model name (see `python -m classic_cnns.summary --all`).",
)
_ALL = cli.define_once(
  flags.DEFINE_bool,
  "all",
  False,
  "Benchmark one representative per family at small inputs (ALL_SETTINGS).",
)
_BATCH = cli.define_once(flags.DEFINE_integer, "batch", 128, "Global batch size (train and eval).")
_INPUT = cli.define_once(
  flags.DEFINE_integer, "input", 32, "Side of the square synthetic uint8 images."
)
_PAD_TO = flags.DEFINE_integer(
  "pad_to", 0, "Zero-pad images to this side inside the step (config.data.pad_to)."
)
_AUGMENT = flags.DEFINE_enum(
  "augment",
  "cifar",
  ["none", "flip", "cifar"],
  "Training augmentation in the step: none, flip, or cifar (pad-4 crop + flip).",
)
_DTYPE = flags.DEFINE_enum(
  "dtype", "float32", ["float32", "bfloat16"], "Compute dtype (config.dtype)."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats; the median is reported.")
_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed repeat.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed steps after compilation.")
_COMPILE_ONLY = flags.DEFINE_bool(
  "compile_only",
  False,
  "Only init and compile the steps (no timed runs, no "
  "roofline): the first-step wait of large models.",
)
_MATMUL = flags.DEFINE_integer(
  "matmul_size", 4096, "Side of the roofline matmul, in --dtype (0 = skip)."
)
_MATMUL_REPEATS = flags.DEFINE_integer(
  "matmul_repeats", 5, "Timed roofline matmuls; the median is reported."
)
_MODEL_OPTION = flags.DEFINE_multi_string(
  "model_option",
  [],
  "KEY=VALUE passed to the model like --config.model.KEY=VALUE (repeatable), e.g. "
  "--model_option=scan_blocks=True; VALUE is a Python literal or a bare string.",
)
_KERNELS = cli.define_once(
  flags.DEFINE_enum,
  "kernels",
  "auto",
  ["auto", "portable", "cpu"],
  "config.kernels: the models' primitive ops (classic_cnns/backends; auto: cpu on a CPU-only run).",
)
_CPU_CONVS = cli.define_once(
  flags.DEFINE_enum,
  "cpu_convs",
  "auto",
  ["auto", "onednn", "mixed", "measured", "xla"],
  "config.cpu_convs: the CPU backend's convolutions.",
)
_JSON = flags.DEFINE_string(
  "json", None, "Write the numbers (and the environment) to this JSON file."
)

# --all: (model, input side, batch). Small inputs keep the whole run within ~10 minutes on 2 CPU
# cores; ResNet-18 stays at 112 (at 64 its last stage is 2x2, a slow case for XLA:CPU convolutions).
ALL_SETTINGS: tuple[tuple[str, int, int], ...] = (
  ("lenet5", 32, 128),
  ("resnet20", 32, 128),
  ("densenet_bc_100_12", 32, 16),
  ("nin_cifar", 32, 32),
  ("vgg11", 64, 16),
  ("alexnet", 112, 16),
  ("googlenet_bn", 112, 16),
  ("inception_v3", 139, 8),
  ("resnet18", 112, 16),
  ("se_resnet20", 32, 128),
  ("cbam_resnet20", 32, 128),
)
# --all defaults unless --steps / --repeats / --warmup / --matmul_repeats are given.
ALL_STEPS, ALL_REPEATS, ALL_WARMUP, ALL_MATMUL_REPEATS = 3, 3, 1, 3

RESULT_KEYS = (
  "model",
  "input",
  "pad_to",
  "augment",
  "batch",
  "dtype",
  "kernels",
  "steps",
  "repeats",
  "params",
  "train_img_per_s",
  "eval_img_per_s",
  "train_step_ms",
  "train_cpu_cores",
  "init_s",
  "train_lower_s",
  "train_compile_s",
  "eval_lower_s",
  "eval_compile_s",
  "train_gflop_per_step",
  "train_gflops",
  "matmul_gflops",
  "roofline_pct",
  "peak_rss_mb",
  "device_peak_mb",
  "xla_temp_mb",
)


class BenchmarkError(ValueError):
  """A bad model name or a model that cannot take the requested input; one line for the user."""


def environment() -> dict[str, Any]:
  import jax
  import jaxlib

  return {
    "device": f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})",
    "cpu_count": os.cpu_count(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "xla_flags": os.environ.get("XLA_FLAGS"),
    "load_average": list(os.getloadavg()),
  }


def _median_time(fn, repeats: int) -> float:
  return _timed(fn, repeats)[0]


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(median wall seconds of `fn`, CPU cores this process used on average while running it)."""
  times, cpu, wall = [], 0.0, 0.0
  for _ in range(repeats):
    c, t = (
      time.process_time(),
      time.perf_counter(),
    )  # process_time: every thread's user + system time
    fn()
    dt = time.perf_counter() - t
    cpu += time.process_time() - c
    times.append(dt)
    wall += dt
  return statistics.median(times), cpu / wall


def matmul_gflops(n: int = 4096, repeats: int = 5, dtype: str = "float32") -> float:
  """GFLOP/s of an n x n `dtype` jnp matmul (2 n^3 flops), median of `repeats` after a warm-up."""
  import jax
  import jax.numpy as jnp

  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
  b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
  mm = jax.jit(jnp.matmul)
  mm(a, b).block_until_ready()
  return 2 * n**3 / _median_time(lambda: mm(a, b).block_until_ready(), repeats) / 1e9


def _flops(compiled) -> float | None:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def _unrolled_train_flops(model, config, prep, schedule, dtype, input_shape, batch) -> float | None:
  """FLOPs of the trainer's step for `model` from its lowered (unoptimised) HLO, with the portable
  kernels (cost analysis cannot see into oneDNN's custom calls): nothing compiles."""
  import jax
  import jax.numpy as jnp
  from classic_cnns import optim
  from classic_cnns import steps as train_steps
  from classic_cnns.models.layers import PORTABLE

  model = model.clone(kernels=PORTABLE)

  def init():
    variables = model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1,) + input_shape, jnp.float32),
      train=False,
    )
    return train_steps.TrainState.create(
      apply_fn=model.apply,
      params=variables["params"],
      tx=optim.make_optimizer(config, schedule, variables["params"]),
      batch_stats=variables.get("batch_stats", {}),
      rng=jax.random.PRNGKey(0),
    )

  state = jax.eval_shape(init)
  return _flops(
    jax.jit(train_steps.make_train_step(model, config, prep, schedule, dtype)).lower(state, batch)
  )


def _device_peak_mb() -> float | None:
  import jax

  stats = jax.devices()[0].memory_stats()  # None on CPU
  peak = (stats or {}).get("peak_bytes_in_use")
  return peak / 2**20 if peak else None


def benchmark_model(
  name: str,
  *,
  batch: int = 128,
  input_size: int = 32,
  pad_to: int = 0,
  augment: str = "cifar",
  dtype: str = "float32",
  steps: int = 20,
  repeats: int = 5,
  warmup: int = 2,
  matmul_size: int = 4096,
  matmul_repeats: int = 5,
  compile_only: bool = False,
  model_options: dict[str, Any] | None = None,
  kernels: str = "auto",
  cpu_convs: str = "auto",
) -> dict[str, Any]:
  """Times the trainer's train and eval steps for `name` on synthetic on-device data; `model_options`
  are extra model fields (config.model.KEY); `kernels` / `cpu_convs` are config.kernels / cpu_convs."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import optim, parallel
  from classic_cnns import build
  from classic_cnns import steps as train_steps
  from classic_cnns.config import ConfigError, base_config, validate_config
  from classic_cnns.data import augment as aug
  from classic_cnns.models import registry

  registry.list_models()
  if name not in registry._REGISTRY:  # pylint: disable=protected-access
    raise BenchmarkError(registry.unknown_model_message(name))
  if min(batch, input_size, steps, repeats) <= 0 or warmup < 0:
    raise BenchmarkError("--batch, --input, --steps and --repeats must be positive")
  info = registry.model_info(name)
  config = base_config()
  config.model.name = name
  config.model.num_classes = info.num_classes
  for key, value in (model_options or {}).items():
    config.model[key] = value
  config.batch_size = batch
  config.eval_batch_size = batch
  config.dtype = dtype
  config.kernels = kernels
  config.cpu_convs = cpu_convs
  config.data.pad_to = pad_to
  config.data.augment.flip = augment in ("flip", "cifar")
  config.data.augment.crop_padding = 4 if augment == "cifar" else 0
  mesh, n_dev = parallel.make_mesh(), jax.device_count()
  try:
    validate_config(config, n_dev)
  except ConfigError as e:
    raise BenchmarkError(str(e)) from None

  side = max(input_size, pad_to)
  input_shape = (side, side, info.in_channels)
  try:
    backend = build.select_backend(config)
    model = build.build_model(config, n_dev)
  except ValueError as e:  # an option the model does not have; a backend that cannot run here
    raise BenchmarkError(str(e)) from None
  try:  # the model's geometry is checked abstractly before anything compiles
    abstract = jax.eval_shape(
      lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1,) + input_shape),
        train=False,
      )
    )["params"]
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise BenchmarkError(
      f"model {name!r} cannot take input {input_shape} (use a larger --input or --pad_to): "
      f"{' '.join(str(e).split())[:200]}"
    ) from None
  backend = backend.prepare(lambda k: build.build_model(config, n_dev, k), (batch,) + input_shape)
  model = model.clone(kernels=backend.kernels)
  schedule = optim.make_schedule(config, 100, 1000)
  t_init = time.perf_counter()
  state = build.create_train_state(
    model, optim.make_optimizer(config, schedule, abstract), input_shape, config.seed, mesh, backend
  )
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t_init
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  a = config.data.augment
  # Normalisation constants do not change the speed; the real run computes them from the data.
  prep = aug.Preprocess(
    pad_to=pad_to,
    flip=a.flip,
    crop_padding=a.crop_padding,
    mean=(127.5,) * info.in_channels,
    std=(64.0,) * info.in_channels,
  )
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  rng = np.random.default_rng(0)
  host = {
    "image": rng.integers(
      0, 256, (batch, input_size, input_size, info.in_channels), dtype=np.uint8
    ),
    "label": rng.integers(0, info.num_classes, (batch,), dtype=np.int32),
    "mask": np.ones((batch,), np.float32),
  }
  train_batch = jax.device_put({k: host[k] for k in ("image", "label")}, data)
  eval_batch = jax.device_put(host, data)
  jnp_dtype = jnp.dtype(dtype)

  # The trainer's jit (train.train_and_evaluate), lowered and compiled explicitly to time both.
  train_jit = jax.jit(
    train_steps.make_train_step(model, config, prep, schedule, jnp_dtype),
    donate_argnums=0,
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
  )
  eval_jit = jax.jit(
    train_steps.make_eval_step(model, prep, jnp_dtype), in_shardings=(rep, data), out_shardings=rep
  )
  t0 = time.perf_counter()
  lowered = train_jit.lower(state, train_batch)
  t1 = time.perf_counter()
  train_step = lowered.compile()
  t2 = time.perf_counter()
  eval_lowered = eval_jit.lower(state, eval_batch)
  t3 = time.perf_counter()
  eval_step = eval_lowered.compile()
  t4 = time.perf_counter()
  flops = _flops(train_step)
  scanned = {k: False for k in ("scan_blocks", "scan_layers") if getattr(model, k, False)}
  if scanned or backend.name != "portable":
    # XLA's cost analysis counts a loop body once, so a scanned model's count would be far too low:
    # count the same step of the unrolled model (lowered only, not compiled; same network). For
    # DenseNet's scan_layers these are the network's FLOPs, not the padded ones the loop executes.
    # It sees no FLOPs inside oneDNN's custom calls either: count the step with the portable kernels.
    flops = _unrolled_train_flops(
      model.clone(**scanned), config, prep, schedule, jnp_dtype, input_shape, train_batch
    )
  mem = train_step.memory_analysis()
  xla_temp_mb = mem.temp_size_in_bytes / 2**20 if mem is not None else None

  label = name + "".join(f" {k}={v}" for k, v in (model_options or {}).items())
  row = {
    "model": label,
    "input": input_size,
    "pad_to": pad_to,
    "augment": augment,
    "batch": batch,
    "dtype": dtype,
    "kernels": backend.kernels.name,
    "steps": 0 if compile_only else steps,
    "repeats": 0 if compile_only else repeats,
    "params": n_params,
    "init_s": init_s,
    "train_lower_s": t1 - t0,
    "train_compile_s": t2 - t1,
    "eval_lower_s": t3 - t2,
    "eval_compile_s": t4 - t3,
    "train_gflop_per_step": flops / 1e9 if flops else None,
    "xla_temp_mb": xla_temp_mb,
  }
  if compile_only:
    return {**row, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
  holder = {"state": state}

  def run_train(n: int) -> None:
    s, m = holder["state"], None
    for _ in range(n):
      s, m = train_step(s, train_batch)
    jax.block_until_ready((s, m))
    holder["state"] = s

  def run_eval(n: int) -> None:
    out = None
    for _ in range(n):
      out = eval_step(holder["state"], eval_batch)
    jax.block_until_ready(out)

  run_train(max(warmup, 1))
  holder["state"], metrics = train_step(holder["state"], train_batch)
  if not bool(jax.device_get(jnp.isfinite(metrics["loss"]))):
    raise BenchmarkError(f"model {name!r}: the train step produced a non-finite loss")
  t_train, train_cores = _timed(lambda: run_train(steps), repeats)
  run_eval(max(warmup, 1))
  t_eval = _median_time(lambda: run_eval(steps), repeats)
  peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  device_peak_mb = _device_peak_mb()
  holder = train_batch = eval_batch = state = None  # free the arrays before the roofline matmul

  step_s = t_train / steps
  gflops = flops / step_s / 1e9 if flops else None
  mm = matmul_gflops(matmul_size, matmul_repeats, dtype) if matmul_size > 0 else None
  return {
    **row,
    "train_img_per_s": batch * steps / t_train,
    "eval_img_per_s": batch * steps / t_eval,
    "train_step_ms": 1000 * step_s,
    "train_cpu_cores": train_cores,
    "train_gflops": gflops,
    "matmul_gflops": mm,
    "roofline_pct": 100 * gflops / mm if gflops and mm else None,
    "peak_rss_mb": peak_rss_mb,
    "device_peak_mb": device_peak_mb,
  }


def parse_model_options(items: list[str]) -> dict[str, Any]:
  """["scan_blocks=True", "norm=group"] -> {"scan_blocks": True, "norm": "group"}."""
  import ast

  options = {}
  for item in items:
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
      raise BenchmarkError(f"--model_option={item!r}: expected KEY=VALUE")
    try:
      options[key.strip()] = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      options[key.strip()] = text
  return options


def _fmt(v: Any, digits: int = 1) -> str:
  if v is None:
    return "-"
  if isinstance(v, float):
    return f"{v:,.{digits}f}" if math.isfinite(v) else str(v)
  return f"{v:,}" if isinstance(v, int) else str(v)


COLUMNS = (
  ("model", "model", 0),
  ("input", "input", 0),
  ("batch", "batch", 0),
  ("kernels", "kernels", 0),
  ("train img/s", "train_img_per_s", 1),
  ("eval img/s", "eval_img_per_s", 1),
  ("step ms", "train_step_ms", 1),
  ("cores used", "train_cpu_cores", 2),
  ("init s", "init_s", 2),
  ("lower s", "train_lower_s", 2),
  ("compile s", "train_compile_s", 2),
  ("eval compile s", "eval_compile_s", 2),
  ("GFLOP/step", "train_gflop_per_step", 2),
  ("GFLOP/s", "train_gflops", 1),
  ("matmul GFLOP/s", "matmul_gflops", 1),
  ("% roofline", "roofline_pct", 1),
  ("peak RSS MB", "peak_rss_mb", 0),
  ("device peak MB", "device_peak_mb", 0),
)


def format_table(rows: list[dict[str, Any]]) -> str:
  """A Markdown table of the results."""
  cells = []
  for r in rows:
    line = []
    for _, key, d in COLUMNS:
      v = r.get(key)
      if key == "input" and r.get("pad_to") and r["pad_to"] > r["input"]:
        line.append(f"{v}->{r['pad_to']}")
      else:
        line.append(_fmt(v, d))
    cells.append(line)
  head = [c[0] for c in COLUMNS]
  out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
  out += ["| " + " | ".join(c) + " |" for c in cells]
  return "\n".join(out)


def _print_environment(env: dict[str, Any]) -> None:
  print(
    f"device: {env['device']}, {env['cpu_count']} CPUs | jax {env['jax']} (jaxlib {env['jaxlib']}) | "
    f"XLA_FLAGS={env['xla_flags']!r} | load average {', '.join(f'{x:.2f}' for x in env['load_average'])}",
    flush=True,
  )


def _run_all(steps: int, repeats: int, common: list[str]) -> list[dict[str, Any]]:
  """Each model in a fresh subprocess (its own RSS high-water mark); same XLA_FLAGS as this process."""
  import tempfile

  print(
    f"--all settings: steps {steps}, repeats {repeats}, {' '.join(common)}; "
    + "; ".join(f"{m} {s}x{s} batch {b}" for m, s, b in ALL_SETTINGS),
    flush=True,
  )
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for model, side, batch in ALL_SETTINGS:
      path = os.path.join(tmp, f"{model}.json")
      cmd = [
        sys.executable,
        "-m",
        "classic_cnns.benchmark",
        f"--model={model}",
        f"--input={side}",
        f"--batch={batch}",
        f"--steps={steps}",
        f"--repeats={repeats}",
        f"--json={path}",
      ] + common
      t = time.perf_counter()
      proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
      if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        print(f"{model}: failed (exit {proc.returncode}): {err}", flush=True)
        continue
      with open(path) as f:
        row = json.load(f)["results"][0]
      rows.append(row)
      speed = (
        f"train {row['train_img_per_s']:.1f} img/s, eval {row['eval_img_per_s']:.1f} img/s"
        if "train_img_per_s" in row
        else f"init {row['init_s']:.1f} s, train step compile {row['train_compile_s']:.1f} s"
      )
      print(
        f"{model} {side}x{side} batch {batch}: {speed} ({time.perf_counter() - t:.0f} s)",
        flush=True,
      )
  return rows


def main(argv: list[str]) -> None:
  with cli.user_errors():  # one line and a non-zero exit (cli.py); --debug: the traceback
    _main(argv)


def _main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  if _ALL.value == bool(_MODEL.value):
    cli.fail("give exactly one of --model=NAME or --all")
  if _ALL.value and _MODEL_OPTION.value:
    cli.fail("--model_option goes with --model=NAME, not --all")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # no INFO lines (e.g. "no TPU backend") on stderr
  cli.set_xla_flags(_KERNELS.value)  # before JAX starts its backends
  import jax

  # Compile times are measured here: never load a compiled program from a persistent cache.
  jax.config.update("jax_enable_compilation_cache", False)
  env = environment()
  _print_environment(env)
  t0 = time.perf_counter()
  if _ALL.value:
    given = lambda flag, default: (
      flags.FLAGS[flag.name].value if flags.FLAGS[flag.name].present else default
    )
    steps, repeats = given(_STEPS, ALL_STEPS), given(_REPEATS, ALL_REPEATS)
    common = [
      f"--compile_only={_COMPILE_ONLY.value}",
      f"--augment={_AUGMENT.value}",
      f"--dtype={_DTYPE.value}",
      f"--kernels={_KERNELS.value}",
      f"--cpu_convs={_CPU_CONVS.value}",
      f"--warmup={given(_WARMUP, ALL_WARMUP)}",
      f"--matmul_size={_MATMUL.value}",
      f"--matmul_repeats={given(_MATMUL_REPEATS, ALL_MATMUL_REPEATS)}",
    ]
    rows = _run_all(steps, repeats, common)
    failed = len(ALL_SETTINGS) - len(rows)
  else:
    try:
      rows = [
        benchmark_model(
          _MODEL.value,
          batch=_BATCH.value,
          input_size=_INPUT.value,
          pad_to=_PAD_TO.value,
          augment=_AUGMENT.value,
          dtype=_DTYPE.value,
          steps=_STEPS.value,
          repeats=_REPEATS.value,
          warmup=_WARMUP.value,
          matmul_size=_MATMUL.value,
          matmul_repeats=_MATMUL_REPEATS.value,
          compile_only=_COMPILE_ONLY.value,
          model_options=parse_model_options(_MODEL_OPTION.value),
          kernels=_KERNELS.value,
          cpu_convs=_CPU_CONVS.value,
        )
      ]
    except BenchmarkError as e:
      if cli.debugging():
        raise
      cli.fail(str(e))
    failed = 0
  env["load_average_after"] = list(os.getloadavg())
  env["wall_s"] = time.perf_counter() - t0
  print(format_table(rows))
  print(
    f"load average after: {', '.join(f'{x:.2f}' for x in env['load_average_after'])}; "
    f"wall time {env['wall_s']:.0f} s",
    flush=True,
  )
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"environment": env, "results": rows}, f, indent=2)
  if failed:
    cli.fail(f"{failed} of {len(ALL_SETTINGS)} models failed (see above)", status=1)


if __name__ == "__main__":
  cli.run(main)
