"""Batches for the trainer: deterministic, resumable, sharded over the device mesh.

Training order is a pure function of (seed, step): epoch e visits the training split in the
permutation `default_rng([seed, e])`, and step s reads slice s mod steps_per_epoch of it, so a
run resumed at any step sees exactly the batches it would have seen (the tail that does not fill
a batch is dropped each epoch, a different tail every epoch). Evaluation covers every example
exactly once: the last batch is padded and a mask marks the real rows.

With `on_device=True` the uint8 split is placed on the accelerators once (replicated) and each
batch is gathered inside jit from a sharded index vector: the host sends only indices.

`ArraySplit` is the in-memory implementation of the `split.Split` protocol.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from classic_cnns import parallel


@dataclasses.dataclass
class ArraySplit:
  """A split held in host memory as uint8 arrays (the `split.Split` protocol)."""

  images: np.ndarray  # [N, H, W, C] uint8
  labels: np.ndarray  # [N] int32
  num_classes: int = 0  # set by the Dataset that holds it
  streamed = False

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.images.shape[1:])

  def train_batches(self, config: Any, mesh: Mesh) -> "TrainBatches":
    """Sharded gathers of config.batch_size examples, on device unless config.data.on_device."""
    return TrainBatches(self, config.batch_size, config.seed, mesh, config.data.on_device)

  def eval_batches(
    self, batch_size: int, config: Any, mesh: Mesh, canvas: int = 0
  ) -> Iterator[dict[str, jax.Array]]:
    """Every example once, the whole images (`canvas` does not apply to arrays)."""
    del config, canvas
    return eval_batches(self, batch_size, mesh)


class TrainBatches:
  def __init__(self, split: ArraySplit, batch_size: int, seed: int, mesh: Mesh, on_device: bool):
    if len(split) < batch_size:
      raise ValueError(
        f"the training split has {len(split)} examples, fewer than batch_size={batch_size}"
      )
    self.split, self.batch_size, self.seed, self.mesh = split, batch_size, seed, mesh
    self.steps_per_epoch = len(split) // batch_size
    self.on_device = on_device
    self._perm_epoch, self._perm = -1, None
    if on_device:
      rep = parallel.replicated(mesh)
      self._images = jax.device_put(split.images, rep)
      self._labels = jax.device_put(split.labels, rep)
      self._gather = jax.jit(
        lambda images, labels, idx: (images[idx], labels[idx]),
        out_shardings=parallel.batch_sharded(mesh),
      )

  def indices(self, step: int) -> np.ndarray:
    """Global example indices of training step `step` (0-based)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._perm_epoch:
      self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
      self._perm_epoch = epoch
    return self._perm[i * self.batch_size : (i + 1) * self.batch_size]

  def batch(self, step: int) -> dict[str, jax.Array]:
    local = self.indices(step)[parallel.process_slice(self.batch_size)]
    if self.on_device:
      idx = parallel.to_global(local.astype(np.int32), self.mesh, self.batch_size)
      images, labels = self._gather(self._images, self._labels, idx)
      return {"image": images, "label": labels}
    return {
      "image": parallel.to_global(self.split.images[local], self.mesh, self.batch_size),
      "label": parallel.to_global(self.split.labels[local], self.mesh, self.batch_size),
    }

  def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, dict[str, jax.Array]]]:
    for step in range(start_step, end_step):
      yield step, self.batch(step)


def eval_batches(split: ArraySplit, batch_size: int, mesh: Mesh) -> Iterator[dict[str, jax.Array]]:
  """Every example once; the final partial batch is zero-padded with mask 0 on the padding."""
  n = len(split)
  sl = parallel.process_slice(batch_size)
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    mask = idx < n
    idx = np.where(mask, idx, 0)
    images = split.images[idx[sl]]
    labels = split.labels[idx[sl]]
    yield {
      "image": parallel.to_global(images, mesh, batch_size),
      "label": parallel.to_global(labels, mesh, batch_size),
      "mask": parallel.to_global(mask[sl].astype(np.float32), mesh, batch_size),
    }
