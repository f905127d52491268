"""Runs a named experiment: trains its variants and writes the paper's table beside ours.

    python -m experiments.run --list
    python -m experiments.run NAME [--scale=smoke|cpu|paper] [--seeds=N | A-B | A,B,...]
        [--dataset=SPEC] [--config.KEY=VALUE ...] [--only=VARIANT,...] [--dry_run] [--report_only]
        [--nokeep_going] [--out=experiments/runs] [--results=experiments/results] [--note=TEXT]

    python -m experiments.run resnet_degradation --scale=cpu --seeds=0-0
    python -m experiments.run resnet_degradation --scale=cpu --config.optimizer.lr=0.05 --dry_run

Each variant and seed trains in its own workdir OUT/NAME/SCALE/VARIANT/seedS through
`classic_cnns.train.train_and_evaluate` (an unfinished one resumes from its newest checkpoint; one
holding a run of another config is refused). A finished run leaves a small summary,
RESULTS/NAME/runs/SCALE/VARIANT/seedS.json (final numbers, curves, config hash, dataset, machine,
wall time, date: experiments/store.py), and the report is built from those summaries alone:
RESULTS/NAME/SCALE/results.md, results.json, curves.png, summary.png (experiments/report.py). So an
experiment can be completed over several days on several machines (each adds its summaries; workdirs
and checkpoints may be deleted), and rerunning a finished experiment trains nothing and rebuilds the
same report. A summary made under another config (the plan, --dataset or a --config override
changed) is stale: listed in the report, not mixed in, and its run is trained again.

Flags (absl; NAME is the one positional argument, anywhere on the line; --flagfile=FILE reads more):
  --seeds        N (seeds 0..N-1, default 1), A-B (inclusive) or A,B,C; the table shows mean ± std (ddof=1)
  --dataset      the data (default per experiment and scale, definitions.py); specs in experiments/configs.py:
                 embedded | cifar10_folder[:PATH] | folder:PATH | tfds:NAME[@DATA_DIR] | npz:PATH |
                 imagenet_folder:PATH. A folder without a test split holds out min(5000, max(classes,
                 10% of train)) images for validation; e.g. --dataset=tfds:cifar10@/data/tfds runs offline
  --config.KEY=VALUE  overrides the field KEY of every variant's config: any field of
                 classic_cnns/config.py by its dotted name (repeatable), parsed and checked as
                 classic_cnns.main's --config.KEY=VALUE (ml_collections' parser of the field's type);
                 model options as --config.model.NAME=VALUE (the model's constructor checks them).
                 Unknown keys and values of the wrong type: one line on stderr, exit status 2.
                 --set KEY=VALUE is the same override (the earlier spelling, still accepted)
  --only         train only these variants (the report covers all)
  --dry_run      for every variant: validate the config, load its data and build its batches, build the
                 model abstractly (jax.eval_shape) and its optimizer; print one line each; train nothing
  --report_only  train nothing; rebuild the report from the stored summaries (no data needed)
  --keep_going   (default) a failing variant is recorded (RESULTS/.../seedS.failed.json, listed in the
                 report with its one-line error) and the others run; --nokeep_going stops at the first
  --note         a paragraph kept in RESULTS/NAME/SCALE/notes.md and printed at the end of results.md
  --debug        the traceback of an error instead of its one line (also CLASSIC_CNNS_DEBUG=1)
The spellings --dry-run, --report-only, --keep-going and --no-keep-going are accepted too.

Exit status: 0 when every requested run finished (or validated, with --dry_run); 1 when a run failed;
2 for a bad command line or config (nothing runs); 128 + signal when interrupted (rerun to resume).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shlex
import sys
import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from absl import flags

from classic_cnns import cli, train
from classic_cnns.build import build_model
from classic_cnns.config import ConfigError, base_config, validate_config
from classic_cnns.data import sources
from classic_cnns.data.batches import eval_batches, make_train_batches
from experiments import report, store
from experiments.configs import (
  NEUTRAL_WHEN,
  NOT_HASHED,
  VAL_AUTO,
  DatasetSpec,
  apply_dataset,  # noqa: F401  (part of the runner's API)
  config_dict,
  config_hash,
  describe_dataset,  # noqa: F401
  flatten,
  parse_dataset,
  parse_sets,
  probe_dataset,
  resolve_validation,
  set_key,  # noqa: F401  (part of the runner's API)
  validation_size,  # noqa: F401  (part of the runner's API)
  variant_config,
)
from experiments.definitions import EXPERIMENTS
from experiments.report import steps_to, summarise  # noqa: F401
from experiments.spec import SCALES, Experiment, Plan, Variant
from experiments.store import is_finished, read_metrics, summarise_run  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "experiments", "runs")
RESULTS = os.path.join(REPO, "experiments", "results")

# Every variant of an experiment loads the same data: decode an image folder / npz / TFDS set once per process.
sources.load_folder = functools.lru_cache(maxsize=2)(sources.load_folder)
sources.load_npz = functools.lru_cache(maxsize=2)(sources.load_npz)
sources.load_tfds = functools.lru_cache(maxsize=2)(sources.load_tfds)


class Interrupted(Exception):
  def __init__(self, signum: int):
    super().__init__(f"interrupted by signal {signum}")
    self.signum = signum


@dataclasses.dataclass
class Job:
  """One variant of the plan: its config (seed 0, before the data is seen) and the config's hash."""

  variant: Variant
  config: ml_collections.ConfigDict
  hash: str


@dataclasses.dataclass
class Context:
  exp: Experiment
  scale: str
  plan: Plan
  spec: DatasetSpec
  dataset: str
  sets: list[tuple[str, str]]
  jobs: list[Job]
  out: str
  results: str
  command: str


# ----------------------------------------------------------------------------- configs
def check_workdir_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Records the variant's config in the workdir; refuses a workdir made by another config."""
  path = os.path.join(workdir, "experiment_config.json")
  now = config_dict(config)
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    diff = config_differences(flatten(before), flatten(now))
    if diff:
      raise ConfigError(
        f"{workdir} holds a run of another config (differs in {', '.join(diff[:5])}); "
        f"use another --out or delete it"
      )
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(now, f, indent=1, sort_keys=True)


def config_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
  """The dotted fields whose values differ. A field only one side has (the workdir was made before
  the field existed) differs only when it is set away from its no-op value (NEUTRAL_WHEN)."""
  missing = object()
  out = []
  for k in sorted(set(before) | set(now)):
    b, n = before.get(k, missing), now.get(k, missing)
    if b is missing or n is missing:
      if NEUTRAL_WHEN.get(k, missing) == (n if b is missing else b):
        continue
    if b != n:
      out.append(k)
  return out


def check_model(config: ml_collections.ConfigDict) -> None:
  """The model's options are accepted by its constructor (cheap: no parameters are built)."""
  try:
    build_model(config, jax.device_count())
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:
    raise ConfigError(" ".join(str(e).split())[:300]) from None


def prepare(
  name: str,
  scale: str,
  dataset: str | None,
  sets: Sequence[tuple[str, str]],
  only: list[str] | None,
  out: str,
  results: str,
  command: str | None,
) -> Context:
  """Validates everything that needs no data: the experiment, scale, --only, and every variant's config."""
  if name not in EXPERIMENTS:
    raise ConfigError(f"unknown experiment {name!r}; --list shows them: {', '.join(EXPERIMENTS)}")
  if scale not in SCALES:
    raise ConfigError(f"--scale={scale!r} is not one of {', '.join(SCALES)}")
  exp = EXPERIMENTS[name]
  plan = exp.plan(scale)
  if only:
    unknown = set(only) - {v.name for v in plan.variants}
    if unknown:
      raise ConfigError(
        f"--only: no variant {', '.join(sorted(unknown))} in {name} at scale {scale}"
      )
  dataset = dataset or exp.datasets[scale]
  spec = parse_dataset(dataset)
  jobs = []
  for v in plan.variants:
    config = variant_config(plan, v, spec, 0, sets)
    try:
      checked = config.copy_and_resolve_references()
      if checked.data.val_size == VAL_AUTO:  # resolved once the data is seen
        checked.data.val_size = 0
      validate_config(checked, jax.device_count())
      check_model(config)
    except ConfigError as e:
      raise ConfigError(f"variant {v.name}: {e}") from None
    jobs.append(Job(v, config, config_hash(config, spec)))
  if command is None:
    command = canonical_command(
      name, scale, None, dataset if dataset != exp.datasets[scale] else None, sets
    )
  return Context(exp, scale, plan, spec, dataset, list(sets), jobs, out, results, command)


def canonical_command(
  name: str, scale: str, seeds: int | None, dataset: str | None, sets: Sequence[tuple[str, str]]
) -> str:
  args = ["python", "-m", "experiments.run", name, f"--scale={scale}"]
  if seeds and seeds > 1:
    args.append(f"--seeds={seeds}")
  if dataset:
    args.append(f"--dataset={dataset}")
  for k, v in sets:
    args.append(f"--config.{k}={v}")
  return shlex.join(args)


def resolved_config(ctx: Context, job: Job, seed: int) -> ml_collections.ConfigDict:
  """The variant's config for `seed` with the data-dependent fields resolved (reads the dataset's size)."""
  config = variant_config(ctx.plan, job.variant, ctx.spec, seed, ctx.sets)
  resolve_validation(config, probe_dataset(config))
  validate_config(config, jax.device_count())
  return config


# ----------------------------------------------------------------------------- one run
def _input_shape(config: ml_collections.ConfigDict, ds) -> tuple[int, int, int]:
  """The model's input shape for the data: the augmentation's evaluation view, without statistics."""
  from classic_cnns.data import augment

  data = ml_collections.ConfigDict(config.data.to_dict())
  data.normalize, data.zca, data.gcn, data.augment.pca_lighting, data.stats = (
    "none",
    False,
    0.0,
    0.0,
    "data",
  )
  return augment.preprocess_config(data, ds).eval_shape(ds.image_shape)


def abstract_params(config: ml_collections.ConfigDict, input_shape: tuple[int, ...]):
  model = build_model(config, jax.device_count())
  try:
    return jax.eval_shape(
      lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1,) + tuple(input_shape)),
        train=False,
      )
    )["params"]
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise ConfigError(
      f"config.model {config.model.name!r} cannot be built for input {tuple(input_shape)}: "
      f"{' '.join(str(e).split())[:300]}"
    ) from None


def count_params(config: ml_collections.ConfigDict) -> int:
  ds = sources.load_dataset(config.data, config.seed)
  params = abstract_params(config, _input_shape(config, ds))
  return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))


def _wall_time(workdir: str, add: float = 0.0) -> float:
  """Training seconds spent in `workdir` over every invocation (resumed runs add up)."""
  path = os.path.join(workdir, "experiment_time.json")
  seconds = (store.read_json(path) or {}).get("seconds", 0.0)
  if add:
    seconds += add
    with open(path, "w") as f:
      json.dump({"seconds": seconds}, f)
  return seconds


def run_one(ctx: Context, job: Job, seed: int) -> dict[str, Any]:
  """Trains (or resumes, or finds finished) one variant/seed and stores its summary."""
  config = resolved_config(ctx, job, seed)
  workdir = os.path.join(ctx.out, ctx.exp.name, ctx.scale, job.variant.name, f"seed{seed}")
  check_workdir_config(workdir, config)
  if is_finished(workdir, config):
    print(f"[finished] {workdir}: summarising", flush=True)
  else:
    print(f"[train] {job.variant.name} seed {seed} -> {workdir}", flush=True)
    t0 = time.perf_counter()
    try:
      result = train.train_and_evaluate(config, workdir)
    finally:
      _wall_time(workdir, time.perf_counter() - t0)
    if result.interrupted:
      raise Interrupted(result.interrupted)
  run = summarise_run(read_metrics(workdir))
  if not run["finished"]:
    raise RuntimeError(f"{workdir}: the run ended without its final evaluation")
  summary = {
    "format": store.FORMAT,
    "experiment": ctx.exp.name,
    "scale": ctx.scale,
    "variant": job.variant.name,
    "seed": seed,
    "config_hash": job.hash,
    "config": config_dict(config),
    "sets": [f"{k}={v}" for k, v in ctx.sets],
    "dataset": ctx.dataset,
    "dataset_identity": ctx.spec.identity,
    "dataset_description": describe_dataset(ctx.dataset),
    "val_size": int(config.data.val_size),
    "params": count_params(config),
    "run": run,
    "machine": store.machine_info(),
    "wall_time_s": round(_wall_time(workdir), 1),
    "date": store.now(),
    "command": ctx.command,
  }
  store.write_json(
    store.summary_path(ctx.results, ctx.exp.name, ctx.scale, job.variant.name, seed), summary
  )
  failed = store.failure_path(ctx.results, ctx.exp.name, ctx.scale, job.variant.name, seed)
  if os.path.exists(failed):
    os.remove(failed)
  return summary


def one_line(e: BaseException) -> str:
  text = " ".join(str(e).split()) if str(e).strip() else ""
  if isinstance(e, cli.user_error_types()):
    return text[:400] or type(e).__name__
  return f"{type(e).__name__}: {text}"[:400]


def record_failure(ctx: Context, job: Job, seed: int, e: BaseException) -> dict[str, Any]:
  failure = {
    "format": store.FORMAT,
    "experiment": ctx.exp.name,
    "scale": ctx.scale,
    "variant": job.variant.name,
    "seed": seed,
    "config_hash": job.hash,
    "error": one_line(e),
    "machine": store.machine_info(),
    "date": store.now(),
    "command": ctx.command,
  }
  store.write_json(
    store.failure_path(ctx.results, ctx.exp.name, ctx.scale, job.variant.name, seed), failure
  )
  print(f"[failed] {job.variant.name} seed {seed}: {failure['error']}", flush=True)
  return failure


def stored_summary(ctx: Context, job: Job, seed: int) -> dict[str, Any] | None:
  s = store.read_json(
    store.summary_path(ctx.results, ctx.exp.name, ctx.scale, job.variant.name, seed)
  )
  return (
    s
    if s is not None and s.get("config_hash") == job.hash and s.get("format") == store.FORMAT
    else None
  )


# ----------------------------------------------------------------------------- dry run
def dry_run_one(ctx: Context, job: Job, stats: dict | None = None) -> str:
  """Everything the trainer does before its first step, for seed 0; returns a one-line description.
  `stats` remembers the data statistics (mean/std, ZCA, ...) of a data config for the next variants."""
  from classic_cnns import optim, parallel
  from classic_cnns.data import augment, streaming

  config = resolved_config(ctx, job, 0)
  if hasattr(train, "load_training_data"):  # the trainer's own checks of the data for this run
    ds = train.load_training_data(
      config, os.path.join(ctx.out, ctx.exp.name, ctx.scale, job.variant.name, "seed0")
    )
  else:
    ds = sources.load_dataset(config.data, config.seed)
    if config.model.num_classes < len(ds.class_names):
      raise ConfigError(
        f"config.model.num_classes={config.model.num_classes} is smaller than the "
        f"{len(ds.class_names)} classes of dataset {ds.name}"
      )
  key = (json.dumps(config.data.to_dict(), sort_keys=True, default=str), config.seed)
  stats = {} if stats is None else stats
  if key not in stats:
    stats[key] = augment.preprocess_config(config.data, ds)
  input_shape = stats[key].eval_shape(ds.image_shape)
  params = abstract_params(config, input_shape)
  mesh = parallel.make_mesh()
  try:
    batches = make_train_batches(ds.train, config, mesh)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  spe = batches.steps_per_epoch
  total = config.num_steps if config.num_steps > 0 else int(round(config.num_epochs * spe))
  schedule = optim.make_schedule(config, spe, total)
  optim.make_optimizer(config, schedule, params)
  eval_split, eval_name = (ds.val, "val") if ds.val is not None else (ds.test, "test")
  final_name = "test" if ds.test is not None else "val"
  n_dev = jax.device_count()
  eval_bs = -(-config.eval_batch_size // n_dev) * n_dev
  if streaming.is_streamed(
    ds.train
  ):  # the host pipeline runs: one training and one evaluation batch
    _, batch = next(batches.iterate(0, 1))
    ev = next(iter(eval_batches(eval_split, eval_bs, config, mesh)))
    shapes = {tuple(batch["image"].shape[1:]), tuple(ev["image"].shape[1:])}
    if shapes != {tuple(ds.image_shape)}:
      raise ConfigError(
        f"streamed batches have shapes {sorted(shapes)}, expected {tuple(ds.image_shape)}"
      )
  n_params = int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))
  return (
    f"{n_params:,} params, input {tuple(input_shape)}; {len(ds.train)} train / "
    f"{len(ds.val) if ds.val is not None else 0} val / {len(ds.test) if ds.test is not None else 0} test; "
    f"batch {config.batch_size}, {total} steps ({total / spe:.2f} epochs of {spe}); evaluations on {eval_name}, "
    f"final on {final_name}"
  )


# ----------------------------------------------------------------------------- report
def build_report(ctx: Context) -> dict[str, Any]:
  """Reads every stored summary of the experiment at this scale and writes the report."""
  name, scale = ctx.exp.name, ctx.scale
  current = {j.variant.name: j.hash for j in ctx.jobs}
  summaries, failures = store.load_all(ctx.results, name, scale)
  runs: dict[str, list[dict[str, Any]]] = {}
  params: dict[str, int] = {}
  used, stale = [], []
  for s in summaries:
    if current.get(s["variant"]) == s.get("config_hash"):
      runs.setdefault(s["variant"], []).append({**s["run"], "seed": s["seed"]})
      params.setdefault(s["variant"], s.get("params"))
      used.append(s)
    else:
      stale.append(
        {
          "variant": s["variant"],
          "seed": s["seed"],
          "config_hash": s.get("config_hash"),
          "current": current.get(s["variant"]),
          "date": s.get("date"),
        }
      )
  done = {(s["variant"], s["seed"]) for s in used}
  failed = [
    {
      "variant": f["variant"],
      "seed": f["seed"],
      "error": f["error"],
      "date": f["date"],
      "machine": store.machine_label(f["machine"]),
    }
    for f in failures
    if current.get(f["variant"]) == f.get("config_hash") and (f["variant"], f["seed"]) not in done
  ]
  default_identity = parse_dataset(ctx.exp.datasets[scale]).identity
  # Ours - paper only on the paper's data with the plan's own recipe (a --set of a location-only field aside).
  own_recipe = all(k in NOT_HASHED for k, _ in ctx.sets)
  summary = report.summarise(
    ctx.exp,
    ctx.plan,
    runs,
    params,
    comparable_identity=ctx.spec.identity == default_identity and own_recipe,
  )
  machines: dict[str, dict[str, Any]] = {}
  for s in used:
    label = store.machine_label(s["machine"])
    m = machines.setdefault(
      label,
      {
        "label": label,
        "jax": s["machine"].get("jax"),
        "flax": s["machine"].get("flax"),
        "runs": 0,
        "seconds": 0.0,
        "first": s["date"],
        "last": s["date"],
      },
    )
    m["runs"] += 1
    m["seconds"] += s.get("wall_time_s") or 0.0
    m["first"], m["last"] = min(m["first"], s["date"]), max(m["last"], s["date"])
  machine_rows = [
    {
      **m,
      "wall_time": report.format_duration(m["seconds"]),
      "dates": m["first"] if m["first"] == m["last"] else f"{m['first']} to {m['last']}",
    }
    for m in sorted(machines.values(), key=lambda m: m["label"])
  ]
  outdir = os.path.join(ctx.results, name, scale)
  notes_path = os.path.join(outdir, "notes.md")
  notes = open(notes_path).read() if os.path.exists(notes_path) else ""
  n_max = max((r["n"] for r in summary["rows"].values()), default=1)
  dataset = ctx.dataset if ctx.dataset != ctx.exp.datasets[scale] else None
  meta = {
    "command": canonical_command(name, scale, n_max, dataset, ctx.sets),
    "commands": sorted({s.get("command", "") for s in used} - {""}),
    "datasets": sorted({s.get("dataset_description", "") for s in used} - {""}),
    "dataset_short": ctx.spec.identity,
    "default_dataset": ctx.exp.datasets[scale],
    "config_hashes": current,
    "machines": machine_rows,
    "failures": failed,
    "stale": stale,
    "notes": notes,
  }
  report.write_report(ctx.exp, scale, ctx.plan, summary, meta, outdir)
  summary["meta"] = meta
  summary["outdir"] = outdir
  return summary


# ----------------------------------------------------------------------------- main
def parse_seeds(text: str | int | Sequence[int]) -> list[int]:
  """ "3" -> 0, 1, 2; "3-5" -> 3, 4, 5; "0,4" -> 0, 4."""
  if isinstance(text, int):
    seeds = list(range(text))
  elif not isinstance(text, str):
    seeds = [int(s) for s in text]
  else:
    try:
      if "," in text:
        seeds = [int(s) for s in text.split(",") if s.strip()]
      elif "-" in text.strip()[1:]:
        a, b = text.split("-", 1)
        seeds = list(range(int(a), int(b) + 1))
      else:
        seeds = list(range(int(text)))
    except ValueError:
      raise ConfigError(f"--seeds={text!r}: use N (seeds 0..N-1), A-B or A,B,C") from None
  if not seeds or min(seeds) < 0:
    raise ConfigError(f"--seeds={text!r}: give at least one seed, none negative")
  return sorted(set(seeds))


def run_experiment(
  name: str,
  scale: str,
  dataset: str | None = None,
  seeds: str | int | Sequence[int] = 1,
  out: str = DEFAULT_OUT,
  results: str = RESULTS,
  report_only: bool = False,
  only: list[str] | None = None,
  sets: Sequence[str] = (),
  dry_run: bool = False,
  keep_going: bool = True,
  command: str | None = None,
  note: str | None = None,
) -> dict[str, Any]:
  """Trains every requested variant/seed not yet in the results store (unless report_only or
  dry_run) and rebuilds the report; returns the report's summary with `failures` (this invocation's)."""
  seed_list = parse_seeds(seeds)
  ctx = prepare(name, scale, dataset, parse_sets(sets), only, out, results, command)
  failures: list[dict[str, Any]] = []
  todo = [j for j in ctx.jobs if only is None or j.variant.name in only]
  if dry_run or (
    not report_only and any(stored_summary(ctx, j, s) is None for j in todo for s in seed_list)
  ):
    probe_dataset(
      todo[0].config if todo else ctx.jobs[0].config
    )  # the data is there (one error, exit 2, if not)
  if dry_run:
    lines, stats = {}, {}
    for job in todo:
      try:
        lines[job.variant.name] = dry_run_one(ctx, job, stats)
        print(f"[dry-run] {job.variant.name} ({job.hash}): {lines[job.variant.name]}", flush=True)
      except Exception as e:  # pylint: disable=broad-except
        failures.append({"variant": job.variant.name, "seed": 0, "error": one_line(e)})
        print(f"[dry-run] {job.variant.name}: FAILED: {one_line(e)}", flush=True)
        if not keep_going:
          break
    return {"dry_run": lines, "failures": failures}
  if not report_only:
    for job in todo:
      for seed in seed_list:
        if stored_summary(ctx, job, seed) is not None:
          print(
            f"[done] {job.variant.name} seed {seed}: in the results store (config {job.hash})",
            flush=True,
          )
          continue
        try:
          run_one(ctx, job, seed)
        except Interrupted:
          raise
        except Exception as e:  # pylint: disable=broad-except
          failures.append(record_failure(ctx, job, seed, e))
          if not keep_going:
            break
      if failures and not keep_going:
        break
  if note is not None:
    path = os.path.join(results, name, scale, "notes.md")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      f.write(note.strip() + "\n")
  summary = build_report(ctx)
  print(f"report: {os.path.join(summary['outdir'], 'results.md')}", flush=True)
  summary["failures"] = failures
  return summary


def list_experiments() -> str:
  lines = []
  for e in EXPERIMENTS.values():
    counts = ", ".join(f"{s} {len(e.plan(s).variants)}" for s in SCALES)
    lines.append(f"{e.name:26s} {e.title} [{e.source}] (variants: {counts})")
  return "\n".join(lines)


# The spellings of the earlier command line, still accepted: --dry-run, --report-only,
# --keep-going, --no-keep-going (absl's own: --dry_run, --report_only, --keep_going, --nokeep_going).
ALIASES = {
  "--dry-run": "--dry_run",
  "--report-only": "--report_only",
  "--keep-going": "--keep_going",
  "--no-keep-going": "--nokeep_going",
}
# absl's name of this module (sys.argv[0] when run as __main__): its flags are listed under it.
MODULE = sys.argv[0] if __name__ == "__main__" else __name__


def define_flags(fv: flags.FlagValues) -> None:
  """The runner's flags, in `fv` (a FlagValues of its own: main() can run many times in a process,
  each time from the defaults)."""

  def define(kind, name, default, text, **kwargs):
    kind(name, default, help=text, flag_values=fv, module_name=MODULE, **kwargs)

  define(flags.DEFINE_bool, "list", False, "List the experiments and exit.")
  define(flags.DEFINE_enum, "scale", "smoke", "Scale of the plan.", enum_values=list(SCALES))
  define(
    flags.DEFINE_string,
    "seeds",
    "1",
    "N (seeds 0..N-1), A-B (inclusive) or A,B,C; the table shows mean ± std (ddof=1).",
  )
  define(
    flags.DEFINE_string,
    "dataset",
    None,
    "The data (default: the experiment's for the scale): embedded | cifar10_folder[:PATH] | "
    "folder:PATH | tfds:NAME[@DATA_DIR] | npz:PATH | imagenet_folder:PATH.",
  )
  define(
    flags.DEFINE_string,
    "config",
    None,
    "Not a file here: --config.KEY=VALUE overrides the field KEY (dotted, as classic_cnns.main's "
    "--config.KEY=VALUE, same parsing and checks) of every variant's config; repeatable; model "
    "options as --config.model.NAME=VALUE.",
  )
  define(
    flags.DEFINE_multi_string,
    "set",
    [],
    "KEY=VALUE: the same as --config.KEY=VALUE (repeatable; kept for existing commands).",
  )
  define(
    flags.DEFINE_list, "only", [], "Comma-separated variants to train (the report covers all)."
  )
  define(
    flags.DEFINE_bool,
    "dry_run",
    False,
    "Validate every variant's config, data, batches, model and optimizer; train nothing "
    "(also --dry-run).",
  )
  define(
    flags.DEFINE_bool,
    "report_only",
    False,
    "Train nothing; rebuild the report from the stored summaries (also --report-only).",
  )
  define(
    flags.DEFINE_bool,
    "keep_going",
    True,
    "Record a failed variant and run the others; --nokeep_going (also --no-keep-going) stops "
    "at the first failure.",
  )
  define(flags.DEFINE_string, "out", DEFAULT_OUT, "Root of the workdirs.")
  define(flags.DEFINE_string, "results", RESULTS, "Root of the summaries and reports.")
  define(
    flags.DEFINE_string,
    "note",
    None,
    "A paragraph for results.md (kept in RESULTS/NAME/SCALE/notes.md).",
  )
  define(
    flags.DEFINE_bool,
    "debug",
    False,
    "Show the traceback of an error instead of one line (also CLASSIC_CNNS_DEBUG=1).",
  )


def _bool_field(key: str) -> bool:
  node = base_config()
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return isinstance(node, bool)


def _config_overrides(args: list[str]) -> tuple[list[str], list[str]]:
  """argv with each --config.KEY=VALUE turned into --set=KEY=VALUE (order kept; --config.KEY VALUE,
  and --config.KEY alone for a boolean field, as absl reads them) and the old spellings into absl's;
  the keys given as --config.KEY."""
  out, keys = [], []
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == "--":
      out += args[i:]
      break
    if arg.startswith("--config."):
      key, eq, value = arg[len("--config.") :].partition("=")
      if not eq:
        if _bool_field(key):
          value = "true"
        elif i + 1 < len(args):
          i, value = i + 1, args[i + 1]
        else:
          cli.fail(f"bad command line: --config.{key} needs a value: --config.{key}=VALUE")
      keys.append(key)
      out.append(f"--set={key}={value}")
    else:
      name, eq, value = arg.partition("=")
      out.append(ALIASES[name] + eq + value if name in ALIASES else arg)
    i += 1
  return out, keys


def _as_given(message: str, config_keys: Sequence[str]) -> str:
  """A --set error message in the spelling the key was given in (--config.KEY)."""
  for key in config_keys:
    message = message.replace(f"--set {key}", f"--config.{key}")
  if config_keys and message.startswith("--set:"):
    message = "--config" + message[len("--set") :]
  return message


def usage(fv: flags.FlagValues) -> str:
  return f"{__doc__.rstrip()}\n\nflags:\n{fv.module_help(MODULE)}\n"


def main(argv: list[str] | None = None) -> None:
  """The command line (module docstring); `argv` without the program name (default sys.argv[1:])."""
  argv = list(sys.argv[1:] if argv is None else argv)
  fv = flags.FlagValues()
  define_flags(fv)
  if any(a in cli.HELP_FLAGS for a in argv):
    print(usage(fv), end="", flush=True)
    sys.exit(0)
  try:
    args, config_keys = _config_overrides(fv.read_flags_from_files(["experiments.run"] + argv))
    rest = fv(args)[1:]
  except flags.Error as e:
    if "--debug" in argv:
      raise
    cli.fail(f"bad command line: {cli._one_line_flag_error(e)}")  # pylint: disable=protected-access
  debug = True if fv["debug"].value else None  # else CLASSIC_CNNS_DEBUG decides
  if fv["config"].present:
    cli.fail(
      f"--config={fv['config'].value}: experiments.run reads no config file; override a field "
      f"of every variant with --config.KEY=VALUE"
    )
  if fv["list"].value:
    print(list_experiments())
    return
  if not rest:
    cli.fail("give an experiment name, or --list")
  if len(rest) > 1:
    cli.fail(f"unexpected arguments {rest[1:]}: give one experiment name")
  command = shlex.join(["python", "-m", "experiments.run"] + argv)
  from absl import logging

  logging.set_verbosity(logging.WARNING)
  cli.set_xla_flags(base_config().kernels)  # before JAX starts its backends
  with cli.user_errors(debug):
    try:
      summary = run_experiment(
        rest[0],
        fv["scale"].value,
        fv["dataset"].value,
        fv["seeds"].value,
        fv["out"].value,
        fv["results"].value,
        fv["report_only"].value,
        fv["only"].value or None,
        fv["set"].value,
        fv["dry_run"].value,
        fv["keep_going"].value,
        command,
        fv["note"].value,
      )
    except ConfigError as e:  # a --set message, for a key given as --config.KEY
      given = _as_given(str(e), config_keys)
      if given == str(e):
        raise
      raise ConfigError(given) from e
    except Interrupted as e:
      print(f"{e}; rerun the same command to resume", flush=True)
      sys.exit(128 + e.signum)
  if summary["failures"]:
    what = "failed the dry run" if fv["dry_run"].value else "failed (recorded in the report)"
    cli.fail(
      f"{len(summary['failures'])} run(s) {what}: "
      + "; ".join(f"{f['variant']} seed {f['seed']}: {f['error']}" for f in summary["failures"])[
        :2000
      ],
      status=1,
    )


if __name__ == "__main__":
  main()
