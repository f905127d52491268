"""Per convolution shape and pass, the faster of oneDNN and XLA on this machine, measured once.

Which library is faster depends on the CPU and the shape: with AVX-512, oneDNN wins almost every
pass; with AVX2 only (oneDNN 2.6's jit:avx2 kernels), XLA can win wide 3x3 convs such as ResNet-18's
deeper stages while oneDNN keeps the small ones (`python benchmarks/profile_step.py` shows a step's
time per op on a given machine). So the `measured` conv policy (config.cpu_convs=measured; opt-in)
times, for every conv geometry of a train step, its forward, input-gradient and weight-gradient
passes with each library -- like cuDNN's benchmark mode or XLA's GPU autotuner -- and runs each pass
on the faster one.

A pre-pass, before the step is traced: `conv_geometries` traces the step abstractly (no compile)
with a recording conv, `measure_table` times each new geometry (about 1-2 s each, at most
CLASSIC_CNNS_AUTOTUNE_BUDGET = 120 s per process; geometries left then run on oneDNN) and returns
the table the step's conv reads (`ops.make_conv("measured", table)`). Choices are remembered in
memory and in `conv_choices.json` in the cache directory (`CLASSIC_CNNS_CACHE`, default
~/.cache/classic_cnns), keyed by the CPU and the oneDNN library. An unreadable cache file is
re-measured over, never fatal. Choices never change results beyond float rounding: both libraries
compute the same convolution (tests/backends/test_autotune.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from typing import Callable

import jax
from absl import logging

from classic_cnns import machine
from classic_cnns.backends.cpu import onednn, ops

_LOCK = threading.Lock()
_CHOICES: dict[str, list[str]] | None = None  # key -> passes on XLA (loaded lazily from disk)
MIN_SECONDS = 0.03  # each timing round runs a pass at least this long
# Measuring stops for the rest of the process after this many seconds (a deep net without scans
# has hundreds of geometries); geometries not measured then run every pass on oneDNN, uncached.
BUDGET_SECONDS = float(os.environ.get("CLASSIC_CNNS_AUTOTUNE_BUDGET", "120"))
_spent = [0.0]
# XLA takes a pass only when measured this much faster: a pass that switches library costs more in
# a step than alone (the other library's threads; layouts), and close calls are noise.
XLA_MARGIN = 1.15


def _machine() -> str:
  # The library file's name changes with the kernel source, the compile command and jax.
  return f"{machine.cpu_model()}|{os.cpu_count()} cpus|{os.path.basename(onednn._state.get('library', ''))}"


def _path() -> str:
  return os.path.join(machine.cache_dir(), "conv_choices.json")


def _load() -> dict[str, list[str]]:
  global _CHOICES
  if _CHOICES is None:
    try:
      with open(_path()) as f:
        data = json.load(f)
      _CHOICES = (
        {k: list(v) for k, v in data.items() if isinstance(v, list)}
        if isinstance(data, dict)
        else {}
      )
    except (OSError, ValueError):
      _CHOICES = {}
  return _CHOICES


def _save(choices: dict[str, list[str]]) -> None:
  try:  # atomic: concurrent processes (pytest -n) may write at once; the last complete file wins
    os.makedirs(os.path.dirname(_path()), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(_path()), suffix=".json")
    with os.fdopen(fd, "w") as f:
      json.dump(choices, f, indent=0, sort_keys=True)
    os.replace(tmp, _path())
  except OSError:
    pass  # an unwritable cache only costs re-measuring in the next process


def best_seconds(fns: dict[str, Callable], *args, rounds: int = 5) -> dict[str, float]:
  """Best per-call wall time of each `fn(*args)`: after a warm-up, `rounds` rounds that time every fn
  in turn (interleaved, so that a slow patch of the machine hits all of them) for >= MIN_SECONDS."""
  calls = {}
  for name, fn in fns.items():
    jax.block_until_ready(fn(*args))
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    calls[name] = max(1, int(MIN_SECONDS / max(time.perf_counter() - t, 1e-6)))
  best = {name: float("inf") for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      t = time.perf_counter()
      for _ in range(calls[name]):
        out = fn(*args)
      jax.block_until_ready(out)
      best[name] = min(best[name], (time.perf_counter() - t) / calls[name])
  return best


def measure(x_shape, w_shape, strides, padding) -> dict[str, dict[str, float]]:
  """Seconds per call of each pass ({pass: {"onednn": s, "xla": s}}) for one conv geometry."""
  out_hw = onednn._output_hw(x_shape, w_shape, strides, padding)
  y_shape = (x_shape[0], *out_hw, w_shape[3])
  x, w, dy = (
    jax.random.normal(jax.random.PRNGKey(i), s) for i, s in enumerate((x_shape, w_shape, y_shape))
  )
  times: dict[str, dict[str, float]] = {}
  unsafe = onednn.unsafe_passes(
    x_shape, w_shape, strides, padding
  )  # on XLA whatever is measured; never run on oneDNN
  for name, (a, b, shape) in zip(
    onednn.PASSES, ((x, w, y_shape), (dy, w, x_shape), (x, dy, w_shape))
  ):
    if name in unsafe:
      times[name] = {"onednn": float("inf"), "xla": 0.0}
      continue
    fns = {
      lib: jax.jit(
        lambda a, b, name=name, on_xla=on_xla, shape=shape: onednn._pass(
          name, on_xla, a, b, strides, padding, shape
        )
      )
      for lib, on_xla in (("onednn", frozenset()), ("xla", frozenset(onednn.PASSES)))
    }
    times[name] = best_seconds(fns, a, b)
  return times


def xla_passes(x_shape, w_shape, strides, padding) -> frozenset[str]:
  """The passes of this conv geometry that run faster on XLA here (measured on first use). Runs
  microbenchmarks: call it outside any trace (`measure_table`)."""
  key = f"{_machine()}|{ops.geometry_key(x_shape, w_shape, strides, padding)}"
  with _LOCK:
    choices = _load()
    if key not in choices:
      if _spent[0] >= BUDGET_SECONDS:
        return frozenset()
      t = time.perf_counter()
      times = measure(tuple(x_shape), tuple(w_shape), tuple(strides), tuple(map(tuple, padding)))
      _spent[0] += time.perf_counter() - t
      if _spent[0] >= BUDGET_SECONDS:
        logging.warning(
          "conv autotune: %.0f s spent measuring (CLASSIC_CNNS_AUTOTUNE_BUDGET); convolutions "
          "not measured yet run on oneDNN in this process",
          _spent[0],
        )
      choices[key] = sorted(p for p, t in times.items() if t["xla"] * XLA_MARGIN < t["onednn"])
      _save(choices)
    return frozenset(choices[key])


def conv_geometries(fn: Callable, *args, **kwargs) -> list[ops.Geometry]:
  """The (x shape, w shape, strides, padding) of every float32 NHWC conv oneDNN would run in
  `fn(record_conv, *args, **kwargs)`, where `fn` builds its model with `record_conv` as the conv and
  `args` may be `jax.ShapeDtypeStruct`s: traced by `jax.eval_shape`, nothing compiled or run."""
  seen: dict[ops.Geometry, None] = {}

  def record_conv(*args, **kwargs):  # lax.conv_general_dilated's signature
    geometry = ops.onednn_geometry(*args, **kwargs)
    if geometry is not None:
      seen[geometry] = None
    return jax.lax.conv_general_dilated(*args, **kwargs)

  jax.eval_shape(lambda *a, **k: fn(record_conv, *a, **k), *args, **kwargs)
  return list(seen)


def measure_table(geometries: list[ops.Geometry]) -> dict[str, frozenset[str]]:
  """{ops.geometry_key: passes faster on XLA} for `geometries`, measured (or read from the cache)
  by this call, before any step is traced."""
  return {ops.geometry_key(*g): xla_passes(*g) for g in geometries}
