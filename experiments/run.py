"""Runs a named experiment: trains its variants and writes the paper's table beside ours.

    python -m experiments.run --list
    python -m experiments.run resnet_degradation --scale=cpu [--dataset=cifar10_folder:/tmp/cifar10_jpeg]
        [--seeds=1] [--out=experiments/runs] [--publish] [--report-only] [--only=VARIANT,...]

Each variant (and seed) trains in its own workdir OUT/NAME/SCALE/VARIANT[/seedS] through
`classic_cnns.train.train_and_evaluate`; a workdir whose metrics.jsonl already has the final
record is skipped, an unfinished one resumes from its newest checkpoint (the trainer does that).
A workdir holding a run of a different config is refused (use another --out).
The report goes to OUT/NAME/SCALE/: results.md (table, the paper's numbers, the claims checked,
machine, the exact command), results.json (every number and curve) and PNG figures; --publish
also copies them to experiments/results/NAME/ (what the repository commits).

Datasets (--dataset; default per experiment and scale, see definitions.py):
  embedded                   the MNIST sample in the package, zero-padded to 32x32 (smoke)
  cifar10_folder:PATH        a train-only JPEG tree PATH/train/<class>/*.jpg; 5k held out as
                             validation, final numbers on it (extracted from
                             ../shared/datasets/cifar10_jpeg_train.tar.gz if PATH is missing)
  tfds:NAME                  a TFDS dataset (cifar10: 45k/5k train/val split, final on test)
  npz:PATH                   local arrays x_train y_train x_test y_test
  imagenet_folder:PATH       an ImageNet-style folder streamed from disk
"""
from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from classic_cnns import cli, machine, train
from classic_cnns.config import ConfigError, base_config, validate_config
from classic_cnns.data import sources
from experiments.definitions import EXPERIMENTS
from experiments.spec import SCALES, Check, Experiment, Plan, Variant

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(REPO, "experiments", "runs")
RESULTS = os.path.join(REPO, "experiments", "results")
CIFAR_TARBALL = os.path.join(os.path.dirname(REPO), "shared", "datasets", "cifar10_jpeg_train.tar.gz")

# Every variant of an experiment loads the same data: decode an image folder / npz once per process.
sources.load_folder = functools.lru_cache(maxsize=2)(sources.load_folder)
sources.load_npz = functools.lru_cache(maxsize=2)(sources.load_npz)


# ----------------------------------------------------------------------------- configs
def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """config["a.b.c"] = value; a new key is allowed only under `model` (model options)."""
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    if p not in node:
      raise ConfigError(f"experiment override {key!r}: no config section {p!r}")
    node = node[p]
  if leaf not in node and parents != ["model"]:
    raise ConfigError(f"experiment override {key!r} is not a config field (classic_cnns/config.py)")
  if leaf in node and node[leaf] is not None and isinstance(node[leaf], float) and isinstance(value, int):
    value = float(value)
  node[leaf] = value


def apply_dataset(config: ml_collections.ConfigDict, dataset: str) -> str:
  """Sets config.data for a --dataset spec; returns a short description."""
  kind, _, arg = dataset.partition(":")
  d = config.data
  if kind == "embedded":
    d.source, d.pad_to, d.val_size = "embedded", 32, 0
    return "embedded MNIST sample (10k train / 2k test, 28x28x1 zero-padded to 32x32)"
  if kind == "cifar10_folder":
    path = arg or "/tmp/cifar10_jpeg"
    ensure_cifar_folder(path)
    d.source, d.path, d.val_size = "folder", path, 5000
    return f"CIFAR-10 JPEG training folder {path}: 45k train, 5k held-out validation (final numbers on it)"
  if kind == "tfds":
    d.source, d.name, d.val_size = "tfds", arg or "cifar10", 5000
    return f"TFDS {d.name}: train minus 5k held-out validation, final numbers on the test split"
  if kind == "npz":
    d.source, d.path = "npz", arg
    return f"npz arrays {arg}"
  if kind == "imagenet_folder":
    d.source, d.path = "folder", arg
    d.streaming.enabled = True
    return f"ImageNet-style folder {arg}, streamed"
  raise ConfigError(f"--dataset={dataset!r}: use embedded | cifar10_folder:PATH | tfds:NAME | npz:PATH | "
                    f"imagenet_folder:PATH")


def ensure_cifar_folder(path: str) -> None:
  if os.path.isdir(os.path.join(path, "train")):
    return
  tarball = CIFAR_TARBALL
  if os.path.normpath(path) == "/tmp/cifar10_jpeg" and os.path.exists(tarball):
    print(f"extracting {tarball} -> /tmp", flush=True)
    subprocess.run(["tar", "xzf", tarball, "-C", "/tmp"], check=True)
    return
  raise ConfigError(f"no CIFAR-10 image folder at {path}; extract it with "
                    f"`tar xzf ../shared/datasets/cifar10_jpeg_train.tar.gz -C /tmp`")


def variant_config(plan: Plan, variant: Variant, dataset: str, seed: int) -> ml_collections.ConfigDict:
  config = base_config()
  apply_dataset(config, dataset)
  for key, value in {**plan.base, **variant.overrides}.items():
    set_key(config, key, value)
  config.seed = seed
  return config


def count_params(config: ml_collections.ConfigDict) -> int:
  ds = sources.load_dataset(config.data, config.seed)
  h, w, c = ds.image_shape
  shape = (1, max(config.data.pad_to, h), max(config.data.pad_to, w), c)
  model = train.build_model(config, 1)
  params = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
                                             jnp.zeros(shape), train=False))["params"]
  return int(sum(math.prod(p.shape) for p in jax.tree.leaves(params)))


def cached_params(config: ml_collections.ConfigDict, workdir: str) -> int:
  """count_params, remembered in the workdir (a report then needs no data loading)."""
  path = os.path.join(workdir, "experiment_params.json")
  if os.path.exists(path):
    with open(path) as f:
      return int(json.load(f)["params"])
  n = count_params(config)
  if os.path.isdir(workdir):
    with open(path, "w") as f:
      json.dump({"params": n}, f)
  return n


# ----------------------------------------------------------------------------- running
def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def is_finished(workdir: str, config: ml_collections.ConfigDict) -> bool:
  return any(r["split"].endswith("_final") and r["step"] == config.num_steps for r in read_metrics(workdir))


def check_workdir_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Records the variant's config in the workdir; refuses a workdir made by another config."""
  path = os.path.join(workdir, "experiment_config.json")
  now = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    if before != now:
      diff = sorted(k for k in set(_flat(before)) | set(_flat(now)) if _flat(before).get(k) != _flat(now).get(k))
      raise ConfigError(f"{workdir} holds a run of another config (differs in {', '.join(diff[:5])}); "
                        f"use another --out or delete it")
  os.makedirs(workdir, exist_ok=True)
  with open(path, "w") as f:
    json.dump(now, f, indent=1, sort_keys=True)


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def run_variant(config: ml_collections.ConfigDict, workdir: str) -> int:
  """Trains one variant to completion (resuming); returns a signal number if interrupted."""
  if is_finished(workdir, config):
    print(f"[skip] {workdir}: finished", flush=True)
    return 0
  check_workdir_config(workdir, config)
  print(f"[train] {workdir}", flush=True)
  result = train.train_and_evaluate(config, workdir)
  return result.interrupted


# ----------------------------------------------------------------------------- summarising
def summarise_run(records: list[dict[str, Any]]) -> dict[str, Any]:
  """Curves and final numbers (errors in %) from one workdir's metrics.jsonl."""
  train_recs = [r for r in records if r["split"] == "train"]
  final = [r for r in records if r["split"].endswith("_final")]
  eval_recs = [r for r in records if r["split"] in ("val", "test")]
  final_split = final[-1]["split"][: -len("_final")] if final else None
  curve_eval = [(r["step"], 100 * (1 - r["top1"])) for r in eval_recs if r["split"] == (final_split or r["split"])]
  if final:
    curve_eval.append((final[-1]["step"], 100 * (1 - final[-1]["top1"])))
  curve_train = [(r["step"], 100 * (1 - r["top1"])) for r in train_recs]
  return {
      "steps": final[-1]["step"] if final else (train_recs[-1]["step"] if train_recs else 0),
      "finished": bool(final),
      "final_split": final_split,
      "final_train_error": curve_train[-1][1] if curve_train else None,
      "final_train_loss": train_recs[-1]["loss"] if train_recs else None,
      "final_eval_error": 100 * (1 - final[-1]["top1"]) if final else None,
      "final_eval_top5_error": 100 * (1 - final[-1]["top5"]) if final else None,
      "final_eval_loss": final[-1]["loss"] if final else None,
      "best_eval_accuracy": max((100 - e for _, e in curve_eval), default=None),
      "curve_train": curve_train,
      "curve_eval": curve_eval,
  }


def steps_to(curve: list[tuple[int, float]], below: float) -> int | None:
  """First step at which an error curve is at or below `below` (the logging resolution)."""
  return next((s for s, e in curve if e <= below), None)


def _mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
  vals = [v for v in values if v is not None]
  if not vals:
    return None, None
  return float(np.mean(vals)), (float(np.std(vals)) if len(vals) > 1 else None)


def _mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
  """Mean over seeds at the steps every seed logged."""
  if not curves:
    return []
  common = set.intersection(*(set(s for s, _ in c) for c in curves))
  return [(s, float(np.mean([dict(c)[s] for c in curves]))) for s in sorted(common)]


def summarise(exp: Experiment, plan: Plan, runs: dict[str, list[dict[str, Any]]],
              params: dict[str, int]) -> dict[str, Any]:
  """Per variant: mean (and std over seeds) of the final numbers, mean curves, the paper's number."""
  rows = {}
  for v in plan.variants:
    per_seed = runs.get(v.name, [])
    row: dict[str, Any] = {"name": v.name, "label": v.title, "group": v.group, "x": v.x, "params": params.get(v.name),
                           "paper": v.paper, "paper_text": v.paper_text, "seeds": len(per_seed),
                           "finished_seeds": sum(r["finished"] for r in per_seed)}
    for key in ("final_train_error", "final_eval_error", "final_eval_top5_error", "final_train_loss",
                "final_eval_loss", "best_eval_accuracy"):
      row[key], row[key + "_std"] = _mean_std([r[key] for r in per_seed])
    row["steps"] = max((r["steps"] for r in per_seed), default=0)
    row["final_split"] = next((r["final_split"] for r in per_seed if r["final_split"]), None)
    row["curve_train"] = _mean_curve([r["curve_train"] for r in per_seed])
    row["curve_eval"] = _mean_curve([r["curve_eval"] for r in per_seed])
    comparable = plan.comparable and row["final_split"] == "test"
    row["difference"] = (row["final_eval_error"] - v.paper
                         if comparable and v.paper is not None and row["final_eval_error"] is not None else None)
    rows[v.name] = row
  target_level = None
  t = plan.target or exp.target
  if t is not None:
    if t.reference:
      ref = rows.get(t.reference, {}).get("best_eval_accuracy")
      target_level = ref
    else:
      target_level = t.value
    for row in rows.values():
      if target_level is None:
        row["steps_to_target"] = None
      elif t.kind == "train_error_below":
        row["steps_to_target"] = steps_to(row["curve_train"], target_level)
      else:  # eval accuracy at or above the level = eval error at or below 100 - level
        row["steps_to_target"] = steps_to(row["curve_eval"], 100 - target_level + 1e-9)
  checks = [evaluate_check(c, rows) for c in plan.checks]
  return {"rows": rows, "target_level": target_level, "checks": checks}


_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def evaluate_check(check: Check, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
  lhs = rows.get(check.lhs[0], {}).get(check.lhs[1])
  rhs = rows.get(check.rhs[0], {}).get(check.rhs[1])
  holds = None
  if lhs is not None and rhs is not None:
    holds = bool(_OPS[check.op](lhs, rhs + check.tolerance))
  return {"claim": check.claim, "lhs": list(check.lhs), "op": check.op, "rhs": list(check.rhs),
          "lhs_value": lhs, "rhs_value": rhs, "tolerance": check.tolerance, "holds": holds}


# ----------------------------------------------------------------------------- report
def machine_description() -> dict[str, Any]:
  cpu = machine.cpu_model()
  devices = jax.devices()
  import flax
  return {"host_cpu": cpu, "host_cores": os.cpu_count(), "platform": devices[0].platform,
          "devices": [str(getattr(d, "device_kind", d)) for d in devices], "device_count": len(devices),
          "jax": jax.__version__, "flax": flax.__version__, "python": platform.python_version(),
          "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}


def _fmt(v: float | None, digits: int = 2, std: float | None = None) -> str:
  if v is None:
    return "—"
  s = f"{v:.{digits}f}"
  return s + (f" ± {std:.{digits}f}" if std is not None else "")


def write_report(exp: Experiment, scale: str, plan: Plan, summary: dict[str, Any], meta: dict[str, Any],
                 outdir: str) -> list[str]:
  """results.json, the figures and results.md in `outdir`; returns the files written."""
  os.makedirs(outdir, exist_ok=True)
  figures = make_figures(exp, plan, summary, outdir)
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump({"experiment": exp.name, "title": exp.title, "source": exp.source, "scale": scale, **meta,
               "note": plan.note, "target_level": summary["target_level"], "checks": summary["checks"],
               "variants": list(summary["rows"].values()), "figures": figures}, f, indent=1)
  rows = summary["rows"]
  split = next((r["final_split"] for r in rows.values() if r["final_split"]), "eval")
  lines = [f"# {exp.name}: {exp.title}", "",
           f"Paper: {exp.source}. Scale: **{scale}**. Data: {meta['dataset_description']}.", "",
           f"What the paper shows: {exp.compare}", "",
           f"Reductions at this scale: {plan.note}", ""]
  target = plan.target or exp.target
  target_col = target is not None
  head = ["variant", "params", "steps", "train error %", f"{split} error %", "paper %", "difference"]
  if target_col:
    head.append(f"steps to {target.label or 'target'}")
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows.values():
    paper = _fmt(r["paper"]) if r["paper"] is not None else ""
    if r["paper_text"]:
      paper = f"{paper} ({r['paper_text']})" if paper else r["paper_text"]
    cells = [r["label"] + ("" if r["finished_seeds"] == r["seeds"] and r["seeds"] else " (unfinished)"),
             f"{r['params']:,}" if r["params"] else "—", str(r["steps"]),
             _fmt(r["final_train_error"], std=r["final_train_error_std"]),
             _fmt(r["final_eval_error"], std=r["final_eval_error_std"]), paper or "—",
             _fmt(r["difference"]) if r["difference"] is not None else "—"]
    if target_col:
      cells.append(str(r.get("steps_to_target")) if r.get("steps_to_target") is not None else "not reached")
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "Train error: 1 - top-1 on the augmented training batches in training mode, averaged over the "
            f"last logging window; {split} error: the final evaluation on the {split} split (one pass, original "
            "view). The difference (ours - paper) is shown only where our number is the paper's metric on the "
            f"paper's test data (the `paper` scale on its dataset); otherwise the paper's numbers are for reference."]
  if exp.paper_note:
    lines += ["", f"Paper's numbers: {exp.paper_note}"]
  if target_col:
    level = summary["target_level"]
    lines += ["", f"Target: {target.label} = {_fmt(level)}% "
              f"({'training error at or below' if target.kind == 'train_error_below' else 'eval accuracy at or above'}"
              f"{', the best eval accuracy of ' + target.reference if target.reference else ''}); "
              "steps at the logging/evaluation resolution."]
  if summary["checks"]:
    lines += ["", "## The paper's claims in our run", ""]
    for c in summary["checks"]:
      verdict = {True: "**holds**", False: "**does not hold**", None: "not measured"}[c["holds"]]
      tol = f" + {c['tolerance']}" if c["tolerance"] else ""
      lines.append(f"- {c['claim']}: {verdict} ({c['lhs'][0]} {c['lhs'][1]} = {_fmt(c['lhs_value'])} "
                   f"{c['op']} {c['rhs'][0]} {c['rhs'][1]} = {_fmt(c['rhs_value'])}"
                   f"{tol})")
  lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
  m = meta["machine"]
  lines += ["", "## How it was run", "", "```", meta["command"], "```", "",
            f"Machine: {m['host_cpu']}, {m['host_cores']} cores; devices: {m['device_count']} x {m['platform']} "
            f"({', '.join(sorted(set(m['devices'])))}); jax {m['jax']}, flax {m['flax']}; "
            f"load average at report time {m['load_average'] and tuple(round(x, 1) for x in m['load_average'])}.",
            f"Finished {meta['date']}; wall time of the runs in this invocation {meta['wall_time']}; "
            f"seeds {meta['seeds']}. Workdirs: `{meta['workdir_root']}`."]
  if meta.get("extra_notes"):
    lines += [""] + meta["extra_notes"]
  with open(os.path.join(outdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return ["results.md", "results.json"] + figures


def make_figures(exp: Experiment, plan: Plan, summary: dict[str, Any], outdir: str) -> list[str]:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  rows = list(summary["rows"].values())
  files = []
  # Curves (ResNet Fig. 6 style): one panel per group, dashed = training error, solid = eval error.
  groups = list(dict.fromkeys(r["group"] for r in rows))
  fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.2), squeeze=False, sharey=True)
  for ax, g in zip(axes[0], groups):
    for i, r in enumerate(r for r in rows if r["group"] == g):
      color = f"C{i}"
      if r["curve_train"]:
        s, e = zip(*r["curve_train"])
        ax.plot(s, e, "--", color=color, linewidth=1.0, alpha=0.8)
      if r["curve_eval"]:
        s, e = zip(*r["curve_eval"])
        ax.plot(s, e, "-o", color=color, linewidth=2.0, markersize=3, label=r["label"])
      elif r["curve_train"]:
        ax.plot([], [], "-", color=color, label=r["label"])
    ax.set_title(g or exp.name)
    ax.set_xlabel("iterations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel("error (%)  dashed: training, solid: " + (rows[0]["final_split"] or "eval"))
  fig.suptitle(f"{exp.name} ({exp.source})", fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "curves.png"), dpi=110)
  plt.close(fig)
  files.append("curves.png")
  # Summary: final errors per variant (bar), or vs variant.x / params (one line per group).
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  if exp.summary == "bar":
    labels = [r["label"] for r in rows]
    idx = np.arange(len(rows))
    val = lambda k: [r[k] if r[k] is not None else np.nan for r in rows]
    ax.bar(idx - 0.2, val("final_train_error"), 0.4, label="train")
    ax.bar(idx + 0.2, val("final_eval_error"), 0.4, label=rows[0]["final_split"] or "eval")
    if any(r["paper"] is not None for r in rows):
      ax.plot(idx, [r["paper"] if r["paper"] is not None else np.nan for r in rows], "k*", label="paper")
    ax.set_xticks(idx)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
  else:
    for i, g in enumerate(groups):
      sel = [r for r in rows if r["group"] == g]
      xs = [(r["params"] if exp.summary == "params" else r["x"]) for r in sel]
      pts = sorted(((x, r) for x, r in zip(xs, sel) if x is not None), key=lambda p: p[0])
      if not pts:
        continue
      if g in exp.flat_groups and exp.summary == "x":  # independent of x: a horizontal line
        all_x = [r["x"] for r in rows if r["x"] is not None]
        e = pts[0][1]["final_eval_error"]
        ax.hlines(e if e is not None else np.nan, min(all_x), max(all_x), colors=f"C{i}", label=f"{g} (any x)")
        continue
      x = [p[0] for p in pts]
      ax.plot(x, [p[1]["final_eval_error"] if p[1]["final_eval_error"] is not None else np.nan for p in pts],
              "-o", color=f"C{i}", label=f"{g} ({rows[0]['final_split'] or 'eval'})")
      ax.plot(x, [p[1]["final_train_error"] if p[1]["final_train_error"] is not None else np.nan for p in pts],
              "--", color=f"C{i}", alpha=0.7, label=f"{g} (train)")
      if any(p[1]["paper"] is not None for p in pts):
        ax.plot(x, [p[1]["paper"] if p[1]["paper"] is not None else np.nan for p in pts], ":*", color=f"C{i}",
                label=f"{g} (paper)")
    ax.set_xlabel("parameters" if exp.summary == "params" else exp.x_label)
    if exp.log_x or exp.summary == "params":
      ax.set_xscale("log", base=2 if exp.summary != "params" else 10)
  ax.set_ylabel("final error (%)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  ax.set_title(f"{exp.name}: final errors", fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "summary.png"), dpi=110)
  plt.close(fig)
  files.append("summary.png")
  return files


# ----------------------------------------------------------------------------- main
def run_experiment(name: str, scale: str, dataset: str | None = None, seeds: int = 1, out: str = DEFAULT_OUT,
                   publish: bool = False, report_only: bool = False, only: list[str] | None = None,
                   command: str | None = None, note: str = "") -> dict[str, Any]:
  """Trains every variant (unless report_only) and writes the report; returns the summary."""
  if name not in EXPERIMENTS:
    raise ConfigError(f"unknown experiment {name!r}; --list shows them: {', '.join(EXPERIMENTS)}")
  if scale not in SCALES:
    raise ConfigError(f"--scale={scale!r} is not one of {', '.join(SCALES)}")
  if seeds < 1:
    raise ConfigError(f"--seeds must be >= 1, got {seeds}")
  exp = EXPERIMENTS[name]
  plan = exp.plan(scale)
  if only:
    unknown = set(only) - {v.name for v in plan.variants}
    if unknown:
      raise ConfigError(f"--only: no variant {', '.join(sorted(unknown))} in {name} at scale {scale}")
  dataset = dataset or exp.datasets[scale]
  root = os.path.join(out, name, scale)
  t0 = time.perf_counter()
  runs: dict[str, list[dict[str, Any]]] = {}
  params: dict[str, int] = {}
  description = apply_dataset(base_config(), dataset)
  for v in plan.variants:
    configs = []
    for seed in range(seeds):
      config = variant_config(plan, v, dataset, seed)
      validate_config(config, jax.device_count())
      configs.append((config, os.path.join(root, v.name) if seeds == 1 else os.path.join(root, v.name, f"seed{seed}")))
    if not report_only and (only is None or v.name in only):
      for config, workdir in configs:
        sig = run_variant(config, workdir)
        if sig:
          print(f"interrupted by signal {sig}; rerun the same command to resume", flush=True)
          sys.exit(128 + sig)
    params[v.name] = cached_params(configs[0][0], configs[0][1])
    runs[v.name] = [summarise_run(read_metrics(w)) for _, w in configs if os.path.exists(w)]
  summary = summarise(exp, plan, runs, params)
  meta = {"dataset": dataset, "dataset_description": description, "seeds": seeds,
          "command": command or shlex.join(["python", "-m", "experiments.run", name, f"--scale={scale}"]
                                           + ([f"--dataset={dataset}"] if dataset else [])),
          "machine": machine_description(),
          "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
          "wall_time": f"{time.perf_counter() - t0:.0f} s", "workdir_root": root,
          "extra_notes": ["## Notes", "", note] if note else []}
  previous = os.path.join(root, "results.json")
  if report_only and os.path.exists(previous):  # keep the training command, machine and wall time
    with open(previous) as f:
      before = json.load(f)
    meta["extra_notes"] = meta["extra_notes"] + ["Report regenerated from the workdirs without training (--report-only)."]
    meta.update({k: before[k] for k in ("command", "machine", "wall_time", "date") if k in before})
  files = write_report(exp, scale, plan, summary, meta, root)
  print(f"report: {os.path.join(root, 'results.md')}", flush=True)
  if publish:
    dest = os.path.join(RESULTS, name)
    os.makedirs(dest, exist_ok=True)
    for f in files:
      shutil.copy(os.path.join(root, f), os.path.join(dest, f))
    print(f"published to {dest}", flush=True)
  return summary


def list_experiments() -> str:
  lines = []
  for e in EXPERIMENTS.values():
    counts = ", ".join(f"{s} {len(e.plan(s).variants)}" for s in SCALES)
    lines.append(f"{e.name:26s} {e.title} [{e.source}] (variants: {counts})")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
  p = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.split("\n\n")[0])
  p.add_argument("name", nargs="?", help="experiment name (--list shows them)")
  p.add_argument("--list", action="store_true", help="list the experiments and exit")
  p.add_argument("--scale", default="smoke", choices=SCALES)
  p.add_argument("--dataset", default=None, help="embedded | cifar10_folder:PATH | tfds:NAME | npz:PATH | imagenet_folder:PATH")
  p.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 per variant; the table shows mean ± std")
  p.add_argument("--out", default=DEFAULT_OUT, help="root of the workdirs and reports (default experiments/runs)")
  p.add_argument("--publish", action="store_true", help="also copy the report to experiments/results/NAME/")
  p.add_argument("--report-only", action="store_true", help="do not train; report what the workdirs hold")
  p.add_argument("--note", default="", help="a paragraph appended to results.md (e.g. the reading of the numbers)")
  p.add_argument("--only", default="", help="comma-separated variants to train (the report covers all)")
  args = p.parse_args(argv)
  if args.list:
    print(list_experiments())
    return
  if not args.name:
    cli.fail("give an experiment name, or --list")
  command = shlex.join(["python", "-m", "experiments.run"] + (argv if argv is not None else sys.argv[1:]))
  from absl import logging
  logging.set_verbosity(logging.WARNING)
  cli.set_xla_flags(base_config().kernels)  # before JAX starts its backends
  with cli.user_errors():
    run_experiment(args.name, args.scale, args.dataset, args.seeds, args.out, args.publish, args.report_only,
                   [s for s in args.only.split(",") if s] or None, command, args.note)


if __name__ == "__main__":
  main()
