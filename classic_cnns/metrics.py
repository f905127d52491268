"""Where numbers go: `workdir/metrics.jsonl` (one JSON object per record), TensorBoard event
files in `workdir/tensorboard` (tensorboardX: no TensorFlow needed), and console progress with
steps/s, img/s and ETA. Only process 0 writes.

metrics.jsonl holds only values that are a pure function of the config and seed (no timings), so
two runs of the same config on the same machine produce identical files; a resumed run first drops
the records after its checkpoint, so kill + resume gives the file of an uninterrupted run. A line
cut short by a crash mid-write (or otherwise unreadable) is dropped then, with a one-line warning.
A train record whose averaging window lacks steps because the run resumed from a checkpoint that
did not carry them (one written by an older version, or a changed config.log_every_steps) has
`"partial_window": true`.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import numpy as np


class MetricsWriter:
  def __init__(self, workdir: str, resume_step: int):
    self.enabled = jax.process_index() == 0
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._tb = None
    if not self.enabled:
      return
    kept = []
    if os.path.exists(self.path):
      kept = self._records_up_to(resume_step)
    tmp = f"{self.path}.tmp"
    with open(tmp, "w") as f:  # replaced in one rename: a crash mid-write loses no record
      f.writelines(kept)
    os.replace(tmp, self.path)
    from tensorboardX import SummaryWriter

    self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def _records_up_to(self, resume_step: int) -> list[str]:
    """The lines of the records up to `resume_step` (no final ones), each ending in a newline;
    unreadable lines (the last one cut short by a crash mid-write) dropped with a warning."""
    kept, dropped = [], []
    with open(self.path, errors="replace") as f:
      lines = f.readlines()
    for number, line in enumerate(lines, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        step, split = int(record["step"]), str(record["split"])
      except (ValueError, TypeError, KeyError):
        dropped.append(number)
        continue
      if step <= resume_step and not split.endswith("_final"):
        kept.append(line if line.endswith("\n") else line + "\n")
    if dropped:
      where = (
        "its last line, cut short by an interrupted write"
        if dropped == [len(lines)]
        else f"unreadable line(s) {', '.join(map(str, dropped[:5]))}{' ...' if len(dropped) > 5 else ''}"
      )
      print(f"warning: {self.path}: dropped {where}", flush=True)
    return kept

  def write(
    self,
    step: int,
    split: str,
    values: dict[str, float],
    extra_tb: dict[str, float] | None = None,
    partial_window: bool = False,
  ):
    """One record; `partial_window`: a train record averaged over fewer steps than an uninterrupted
    run's (marked so in metrics.jsonl)."""
    if not self.enabled:
      return
    record = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
    if partial_window:
      record["partial_window"] = True
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for k, v in {**values, **(extra_tb or {})}.items():
      self._tb.add_scalar(f"{split}/{k}", float(v), int(step))

  def close(self):
    if self._tb is not None:
      self._tb.close()


def format_duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(seconds)
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """Console progress: step, epoch, loss, accuracy, steps/s, img/s, ETA."""

  def __init__(self, total_steps: int, start_step: int, batch_size: int, steps_per_epoch: int):
    self.total, self.batch, self.spe = total_steps, batch_size, steps_per_epoch
    self.last_step, self.last_time = start_step, time.perf_counter()
    self.enabled = jax.process_index() == 0

  def rates(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    dt = max(now - self.last_time, 1e-9)
    steps_per_s = (step - self.last_step) / dt
    self.last_step, self.last_time = step, now
    return {"steps_per_s": steps_per_s, "img_per_s": steps_per_s * self.batch}

  def line(self, step: int, values: dict[str, float], rates: dict[str, float]) -> None:
    if not self.enabled:
      return
    eta = (self.total - step) / rates["steps_per_s"] if rates["steps_per_s"] > 0 else float("inf")
    acc = f" top1 {100 * values['top1']:.2f}%" if "top1" in values else ""
    print(
      f"step {step}/{self.total} (epoch {step / self.spe:.2f}) loss {values['loss']:.4f}{acc} "
      f"lr {values.get('lr', float('nan')):.4g} | {rates['steps_per_s']:.1f} steps/s "
      f"{rates['img_per_s']:.0f} img/s | ETA {format_duration(eta)}",
      flush=True,
    )


# ----------------------------------------------------------------------------- logging windows
def summarise_window(step_metrics: list[dict[str, np.ndarray]]) -> tuple[dict[str, float], int]:
  """Mean of each metric over the logged steps (skipped steps excluded), #skipped."""
  kept = [m for m in step_metrics if m["skipped"] == 0] or step_metrics
  values = {
    k: float(np.mean([m[k] for m in kept])) for k in kept[0] if k not in ("skipped", "finite")
  }
  skipped = int(sum(m["skipped"] for m in step_metrics))
  return values, skipped


def window_meta(window: list[dict[str, np.ndarray]], window_start: int) -> dict:
  """The per-step metrics since the last train record, for a checkpoint's metadata: a run resumed
  from it logs the same averages as an uninterrupted run."""
  keys = list(window[0]) if window else []
  return {
    "start": window_start,
    "metrics": {
      k: {
        "dtype": str(np.asarray(window[0][k]).dtype),
        "values": [np.asarray(m[k]).item() for m in window],
      }
      for k in keys
    },
  }


def window_from_meta(
  carried: dict | None, resume_step: int, log_every: int
) -> tuple[list[dict[str, np.ndarray]], int]:
  """(per-step metrics, the step before the first of them) to continue the logging window of a run
  resumed at `resume_step` from what its checkpoint carried: the steps after the last multiple of
  `log_every`, or as many as it carried (a partial window) or none (a checkpoint without them)."""
  try:
    start, metrics = int(carried["start"]), carried["metrics"]
    n = resume_step - start
    window = [
      {k: np.asarray(v["values"][i], v["dtype"]) for k, v in metrics.items()} for i in range(n)
    ]
    if n < 0 or any(len(v["values"]) != n for v in metrics.values()):
      raise ValueError(n)
  except (TypeError, KeyError, ValueError, IndexError):
    return [], resume_step
  boundary = resume_step - resume_step % log_every
  if start < boundary:
    window, start = window[boundary - start :], boundary
  return window, start
