"""The batches a run iterates, through the `split.Split` protocol: each split (in memory / on
device, a streamed image folder, a streamed TFDS split) makes its own training stream and its
evaluation passes (every example once, padded and masked)."""

from __future__ import annotations

from typing import Iterator

import ml_collections

from classic_cnns.data.split import Batch, Split, TrainBatches


def make_train_batches(split: Split, config: ml_collections.ConfigDict, mesh) -> TrainBatches:
  """The training stream of `split` (resumable at any step: a pure function of (seed, step))."""
  return split.train_batches(config, mesh)


def eval_batches(
  split: Split, batch_size: int, config: ml_collections.ConfigDict, mesh, canvas: int = 0
) -> Iterator[Batch]:
  """Every example of `split` once, padded + masked (`canvas`: see `split.Split.eval_batches`)."""
  return split.eval_batches(batch_size, config, mesh, canvas)
