"""Facts about the machine a run is on, for reports and per-machine caches."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo's "model name", else platform.processor()), for reports."""
  model = platform.processor() or ""
  try:
    with open("/proc/cpuinfo") as f:
      return next(
        (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model
      )
  except OSError:
    return model


def cache_root() -> str:
  """The project's cache directory: $CLASSIC_CNNS_CACHE, else $XDG_CACHE_HOME/classic_cnns, else
  ~/.cache/classic_cnns (the CPU backend's kernel library and conv choices, the XLA cache)."""
  return os.environ.get("CLASSIC_CNNS_CACHE") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "classic_cnns"
  )


def cache_dir() -> str:
  """`cache_root()`, created if missing."""
  root = cache_root()
  os.makedirs(root, exist_ok=True)
  return root
