"""Orbax checkpoints in `workdir/checkpoints`: save every N steps and at the end, keep the last K,
restore the newest usable one.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact. Each checkpoint's metadata records a CRC-32 of
every array (its bytes as saved); restoring recomputes them. A checkpoint that cannot be read
(truncated or corrupted files), whose arrays do not match their checksums, or that holds NaN/Inf
values is reported in one line and the next older one is used; nothing is deleted until the same
step is saved again. Restoring reads arrays and JSON only -- no pickle, no code execution.

A save that fails (disk full, quota, I/O error), at once or in Orbax's background writer, raises
`CheckpointWriteError`, one line naming the directory and the cause; the partial directory of
that step is removed and the older checkpoints are left as they were.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import zlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  """No usable checkpoint although some exist; the message is one line meant for the user."""


class CheckpointWriteError(CheckpointError):
  """A checkpoint could not be written (disk full, I/O error); the message is one line meant for
  the user. Not a problem of the input: a CLI exits with `exit_status`."""

  exit_status = 1


# ----------------------------------------------------------------------------- checksums
def _leaf_name(path) -> str:
  """'params/Conv_0/kernel': the same for a TrainState and the dict Orbax restores without a target."""
  parts = []
  for key in path:
    for attr in ("name", "key", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def _host_leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  host = jax.device_get([leaf for _, leaf in leaves])
  return [(_leaf_name(path), np.asarray(value)) for (path, _), value in zip(leaves, host)]


def _crc32(array: np.ndarray) -> str:
  data = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
  return f"crc32:{zlib.crc32(data):08x}"


def array_checksums(tree: Any) -> dict[str, str]:
  """{leaf name: CRC-32 of its bytes} of every array in `tree` (copied to the host)."""
  return {name: _crc32(value) for name, value in _host_leaves(tree)}


def verify(state: Any, meta: dict) -> str | None:
  """Why the restored `state` is unusable (checksums of `meta` not matching, NaN/Inf values), or
  None. Checkpoints written without checksums are only checked for NaN/Inf."""
  leaves = _host_leaves(state)
  stored = meta.get("checksums")
  if stored is not None:
    bad = [name for name, value in leaves if name in stored and stored[name] != _crc32(value)]
    if bad:
      more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
      return f"the arrays do not match their checksums: {bad[0]}{more}"
  nonfinite = [
    name
    for name, value in leaves
    if np.issubdtype(value.dtype, np.inexact) and not np.isfinite(value).all()
  ]
  if nonfinite:
    return f"it holds NaN/Inf values in {nonfinite[0]}"
  return None


# ----------------------------------------------------------------------------- write failures
_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")
_OS_ERROR_TEXT = re.compile(
  r"(No space left on device|Disk quota exceeded|Read-only file system|"
  r"Input/output error|File too large|Permission denied)"
)


def write_failure_cause(e: BaseException) -> str | None:
  """The operating system's reason when `e` is a failed file write (an OSError, or the error
  TensorStore raises for one, which carries the errno in its text); None for anything else."""
  if isinstance(e, OSError):
    return e.strerror or str(e) or type(e).__name__
  text = str(e)
  code = _OS_ERROR_CODE.search(text)
  if code:
    return os.strerror(int(code.group(1)))
  match = _OS_ERROR_TEXT.search(text)
  return match.group(1) if match else None


class Checkpointer:
  def __init__(self, workdir: str, every_steps: int, keep: int, cleanup_tmp: bool = False):
    """`cleanup_tmp`: remove the temporary directories of saves that never completed (a run killed
    mid-save); only for the one process that trains in `workdir`, never beside a running trainer."""
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.every_steps = every_steps
    self.unreadable: set[int] = (
      set()
    )  # found unusable on restore; replaced when that step is saved again
    self._in_flight: int | None = None  # step of the asynchronous save not yet known to be complete
    self.manager = ocp.CheckpointManager(
      self.directory,
      options=ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        create=True,
        cleanup_tmp_directories=cleanup_tmp,
        enable_async_checkpointing=True,
      ),
    )

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def due(self, step: int, force: bool = False) -> bool:
    """Whether `save(step, ...)` would write: every `every_steps` (or `force`), unless that step's
    checkpoint exists and is usable."""
    if not force and step % self.every_steps:
      return False
    return step in self.unreadable or step not in self.manager.all_steps()

  def save(self, step: int, state: Any, meta: dict) -> None:
    """Saves `state` (asynchronously) with `meta` and the arrays' checksums. The caller checks
    that `state` is worth saving (finite). CheckpointWriteError if this or the previous save fails."""
    self.wait()
    meta = {**meta, "checksums": array_checksums(state)}
    try:
      if step in self.unreadable:
        self.manager.delete(step)  # replaced by the new save below, never deleted without one
        self.unreadable.discard(step)
      self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
        force=True,
      )
    except Exception as e:  # pylint: disable=broad-except
      self._raise_write_error(step, e)
    self._in_flight = step

  def maybe_save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    if not self.due(step, force):
      return False
    self.save(step, state, meta)
    return True

  def _raise_write_error(self, step: int | None, e: Exception) -> None:
    """Raises CheckpointWriteError for a failed write (after removing its partial directory), else `e`."""
    cause = write_failure_cause(e)
    if cause is None:
      raise e
    if step is not None and jax.process_index() == 0:
      for partial in glob.glob(
        os.path.join(glob.escape(self.directory), f"{step}.orbax-checkpoint-tmp*")
      ):
        shutil.rmtree(partial, ignore_errors=True)
    try:
      good = sorted(
        int(d)
        for d in os.listdir(self.directory)
        if d.isdigit() and int(d) != step and int(d) not in self.unreadable
      )
    except OSError:
      good = []
    kept = (
      f"the last good checkpoint (step {good[-1]}) is kept"
      if good
      else "no earlier checkpoint exists"
    )
    what = f"the checkpoint of step {step}" if step is not None else "a checkpoint"
    raise CheckpointWriteError(
      f"cannot write {what} in workdir {self.workdir}: {cause}; {kept} in "
      f"{self.directory}; make room and rerun the same command to resume"
    ) from e

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the newest usable checkpoint, or None if there is none."""
    steps = self.steps()
    for step in reversed(steps):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
          ),
        )
        state, meta = restored["state"], dict(restored["meta"])
        problem = verify(state, meta)
      except Exception as e:  # pylint: disable=broad-except
        problem = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
      if problem is None:
        return state, meta
      self.unreadable.add(step)
      logging.warning(
        "checkpoint at step %d is unreadable (%s); trying an older one", step, problem
      )
      if jax.process_index() == 0:
        print(
          f"warning: checkpoint {self.directory}/{step} is unreadable ({problem}); trying an older one",
          flush=True,
        )
    if steps:
      raise CheckpointError(
        f"none of the checkpoints {steps} in {self.directory} can be read; "
        f"move the directory away to start afresh"
      )
    return None

  def wait(self) -> None:
    """Blocks until the asynchronous save is complete; CheckpointWriteError if it failed."""
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      step, self._in_flight = self._in_flight, None
      self._raise_write_error(step, e)
    self._in_flight = None

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self.manager.close()


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of `tree`, the restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
