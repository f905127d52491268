"""Shared command-line plumbing: one-line errors and non-zero exits for bad input.

Every entry point runs through `run(main)`: absl flag errors (unknown --config key, a value of the
wrong type, a missing flag) and the project's user-facing errors become a single line
`error: ...` on stderr with exit status 2 -- no traceback, no usage dump.
"""
from __future__ import annotations

import contextlib
import os
import sys

from absl import app, flags


def set_xla_flags(kernels: str) -> str:
  """Called by each CLI's main() before JAX starts its backends: sets the XLA flags the backend of
  config.kernels wants (`backends.default_xla_flags`) when the user set no XLA_FLAGS (and
  CLASSIC_CNNS_DEFAULT_XLA_FLAGS is not 0), prints the XLA_FLAGS in effect, and returns them."""
  from classic_cnns import backends
  wanted = backends.default_xla_flags(kernels)
  if wanted and "XLA_FLAGS" not in os.environ and os.environ.get("CLASSIC_CNNS_DEFAULT_XLA_FLAGS", "1") == "1":
    os.environ["XLA_FLAGS"] = wanted
  flags_now = os.environ.get("XLA_FLAGS", "")
  if flags_now:
    print(f"XLA_FLAGS={flags_now}", flush=True)
  return flags_now


def fail(message: str, status: int = 2) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def user_error_types() -> tuple[type[BaseException], ...]:
  from classic_cnns.checkpoint import CheckpointError
  from classic_cnns.config import ConfigError
  from classic_cnns.data.sources import DatasetError
  from classic_cnns.train import TrainingDivergedError
  return (ConfigError, DatasetError, CheckpointError, TrainingDivergedError, PermissionError)


@contextlib.contextmanager
def user_errors():
  """Turns the project's user-facing errors into one line + exit 2."""
  try:
    yield
  except user_error_types() as e:
    fail(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _one_line_flag_error(e: Exception) -> str:
  lines = str(e).strip().splitlines()
  text = lines[0] if lines else type(e).__name__
  root = e
  while (root.__cause__ or root.__context__) is not None:  # innermost: e.g. get_config's ValueError
    root = root.__cause__ or root.__context__
  detail = str(root).strip().splitlines()[-1] if root is not e and str(root).strip() else ""
  if detail and detail not in text:
    text = f"{text.rstrip(': ')}: {detail}"
  return text[:400]


def _unknown_key_message(argv: list[str], key: str) -> str:
  key = key.strip("\"' ")
  for arg in argv:
    name = arg.split("=", 1)[0]
    if name.startswith("--config.") and key in name.split("."):
      return f"unknown config key {name[2:]!r} (not in the config file's schema; see classic_cnns/config.py)"
  return f"unknown config key {key!r}"


def run(main) -> None:
  """app.run with flag-parsing errors reduced to one line."""
  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except (KeyError, AttributeError) as e:  # ml_collections: a key not in the locked config
      fail(_unknown_key_message(argv, str(e.args[0]) if e.args else ""))
    except (flags.Error, ValueError, TypeError, OSError) as e:
      cause = e.__cause__ or e.__context__
      if isinstance(cause, (KeyError, AttributeError)):
        fail(_unknown_key_message(argv, str(cause.args[0]) if cause.args else ""))
      fail(f"bad command line: {_one_line_flag_error(e)}")
  app.run(main, flags_parser=parse)


def define_once(define, name: str, *args, **kwargs):
  """`define(name, ...)` unless another entry-point module (imported in the same process, e.g. by
  the test runner) already defined the flag `name`; then that flag is shared."""
  if name in flags.FLAGS:
    return flags.FlagHolder(flags.FLAGS, flags.FLAGS[name])
  return define(name, *args, **kwargs)
