"""Orbax checkpoints in `workdir/checkpoints`: save every N steps and at the end, keep the last K,
restore the newest complete one.

Orbax writes each step to a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoints intact. If the newest checkpoint still cannot be read
(truncated or corrupted files), it is reported in one line and the next older one is used;
nothing is deleted. Restoring reads arrays and JSON only -- no pickle, no code execution.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class CheckpointError(RuntimeError):
  """No usable checkpoint although some exist; the message is one line meant for the user."""


class Checkpointer:
  def __init__(self, workdir: str, every_steps: int, keep: int):
    self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self.every_steps = every_steps
    self.unreadable: set[int] = set()  # found corrupt on restore; replaced when that step is saved again
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=True))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def maybe_save(self, step: int, state: Any, meta: dict, force: bool = False) -> bool:
    if not force and step % self.every_steps:
      return False
    if step in self.unreadable:
      self.manager.delete(step)  # replaced by the new save below, never deleted without one
      self.unreadable.discard(step)
    elif step in self.manager.all_steps():
      return False
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    meta=ocp.args.JsonSave(meta)), force=True)
    return True

  def restore_latest(self, abstract_state: Any) -> tuple[Any, dict] | None:
    """(state, meta) of the newest readable checkpoint, or None if there is none."""
    steps = self.steps()
    for step in reversed(steps):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
        return restored["state"], dict(restored["meta"])
      except Exception as e:  # pylint: disable=broad-except
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        self.unreadable.add(step)
        logging.warning("checkpoint at step %d is unreadable (%s); trying an older one", step, msg)
        print(f"warning: checkpoint {self.directory}/{step} is unreadable ({msg}); trying an older one",
              flush=True)
    if steps:
      raise CheckpointError(f"none of the checkpoints {steps} in {self.directory} can be read; "
                            f"move the directory away to start afresh")
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def abstract_like(tree: Any) -> Any:
  """Shape/dtype/sharding skeleton of `tree`, the restore target."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
