"""Per-run summaries: what a finished variant/seed leaves behind, and what the report is built from.

A workdir's metrics.jsonl (classic_cnns.train) becomes one small JSON file per variant and seed,

    experiments/results/NAME/runs/SCALE/VARIANT/seedS.json

holding the final numbers, every curve (training error and every evaluation split, against steps),
the config and its hash (configs.config_hash), the dataset, the parameter count, the machine (CPU
model, cores, devices), the wall time and the date. Workdirs and checkpoints can then be deleted,
and an experiment completed over several days on different machines: each machine adds its files,
the report reads them all. A failed run leaves `seedS.failed.json` (its one-line error) instead,
removed when the run later succeeds.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from typing import Any

from classic_cnns import machine

FORMAT = 1


# ----------------------------------------------------------------------------- workdirs
def read_metrics(workdir: str) -> list[dict[str, Any]]:
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def is_finished(workdir: str, config=None) -> bool:
  """The run in `workdir` reached its end: the trainer writes the `<split>_final` record only after the
  last step, for step- and epoch-based runs alike (a step-based config must also match its step)."""
  finals = [r for r in read_metrics(workdir) if r["split"].endswith("_final")]
  if not finals:
    return False
  return config is None or config.num_steps <= 0 or finals[-1]["step"] == config.num_steps


def _error(record: dict[str, Any]) -> float:
  return 100.0 * (1.0 - record["top1"])


def summarise_run(records: list[dict[str, Any]]) -> dict[str, Any]:
  """Final numbers and curves (errors in %) from one metrics.jsonl. `curves` has one [step, error]
  list per split (train; val and/or test, the final evaluation included in its split); `curve_eval`
  is the held-out curve the target and the figures use: the validation split when the run evaluated
  on one, else the split of the final evaluation."""
  train = [r for r in records if r["split"] == "train"]
  finals = [r for r in records if r["split"].endswith("_final")]
  final = finals[-1] if finals else None
  curves: dict[str, list[list[float]]] = {"train": [[r["step"], _error(r)] for r in train]}
  for r in records:
    if r["split"] == "train":
      continue
    split = r["split"][: -len("_final")] if r["split"].endswith("_final") else r["split"]
    points = curves.setdefault(split, [])
    if points and points[-1][0] == r["step"]:
      points[-1] = [r["step"], _error(r)]
    else:
      points.append([r["step"], _error(r)])
  final_split = final["split"][: -len("_final")] if final else None
  heldout = (
    "val" if "val" in curves else (final_split or next((s for s in curves if s != "train"), None))
  )
  curve_eval = curves.get(heldout, []) if heldout else []
  return {
    "steps": final["step"] if final else (train[-1]["step"] if train else 0),
    "finished": final is not None,
    "final_split": final_split,
    "heldout_split": heldout,
    "final_train_error": _error(train[-1]) if train else None,
    "final_train_loss": train[-1]["loss"] if train else None,
    "final_eval_error": _error(final) if final else None,
    "final_eval_top5_error": 100 * (1 - final["top5"]) if final and "top5" in final else None,
    "final_eval_loss": final["loss"] if final else None,
    "best_eval_accuracy": max((100 - e for _, e in curve_eval), default=None),
    "curves": curves,
    "curve_train": curves["train"],
    "curve_eval": curve_eval,
  }


# ----------------------------------------------------------------------------- the store
def run_dir(results: str, name: str, scale: str) -> str:
  return os.path.join(results, name, "runs", scale)


def summary_path(results: str, name: str, scale: str, variant: str, seed: int) -> str:
  return os.path.join(run_dir(results, name, scale), variant, f"seed{seed}.json")


def failure_path(results: str, name: str, scale: str, variant: str, seed: int) -> str:
  return os.path.join(run_dir(results, name, scale), variant, f"seed{seed}.failed.json")


def write_json(path: str, data: dict[str, Any]) -> None:
  """Atomic: a reader (another machine's report, a crash) never sees half a file."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def load_all(
  results: str, name: str, scale: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
  """(summaries, failures) stored for an experiment at a scale, in a stable order."""
  root = run_dir(results, name, scale)
  summaries, failures = [], []
  if not os.path.isdir(root):
    return summaries, failures
  for variant in sorted(os.listdir(root)):
    vdir = os.path.join(root, variant)
    if not os.path.isdir(vdir):
      continue
    for f in sorted(os.listdir(vdir)):
      if not (f.startswith("seed") and f.endswith(".json")):
        continue
      data = read_json(os.path.join(vdir, f))
      if data is None or data.get("format") != FORMAT:
        continue
      (failures if f.endswith(".failed.json") else summaries).append(data)
  key = lambda d: (d.get("variant", ""), d.get("seed", 0))
  return sorted(summaries, key=key), sorted(failures, key=key)


def machine_info() -> dict[str, Any]:
  import flax
  import jax

  devices = jax.devices()
  return {
    "cpu": machine.cpu_model(),
    "cores": os.cpu_count(),
    "platform": devices[0].platform,
    "devices": sorted({str(getattr(d, "device_kind", d)) for d in devices}),
    "device_count": len(devices),
    "jax": jax.__version__,
    "flax": flax.__version__,
    "python": platform.python_version(),
  }


def now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def machine_label(m: dict[str, Any]) -> str:
  devices = ", ".join(m.get("devices", []))
  return (
    f"{m.get('cpu') or 'unknown CPU'}, {m.get('cores')} cores; {m.get('device_count')} x {m.get('platform')}"
    + (f" ({devices})" if devices and m.get("platform") != "cpu" else "")
  )
