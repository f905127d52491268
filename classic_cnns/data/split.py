"""The one interface every split of every source implements: what the trainer and the evaluators
iterate, without knowing where the examples come from.

  pipeline.ArraySplit     uint8 arrays in host memory (embedded, npz, image folder, TFDS loaded
                          whole), batches gathered on the host or, with config.data.on_device, on
                          the accelerators from a sharded index vector
  streaming.FileSplit     an image folder read file by file through tf.data (config.data.streaming)
  tfds_stream.TfdsSplit   a TFDS split read record by record through tf.data

Training batches are a pure function of (config.seed, step): the resume state is the step alone
(the checkpoint's step), so `train_batches(config, mesh).iterate(step, end)` after a restart yields
exactly the batches the interrupted run would have seen. Evaluation batches cover every example once;
the last batch is padded and `mask` is 0 on the padding rows.

This module imports nothing: the splits depend on it, not the other way round.
"""

from __future__ import annotations

from typing import Any, Iterator, Protocol, runtime_checkable

Batch = dict[str, Any]  # "image": uint8 [B, H, W, C], "label": int32 [B] (+ "mask": float32 [B])


@runtime_checkable
class TrainBatches(Protocol):
  """A split's training stream: `steps_per_epoch` full batches per epoch (the tail dropped)."""

  steps_per_epoch: int

  def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, Batch]]:
    """(step, batch) for steps [start_step, end_step), each a pure function of (seed, step)."""
    ...


@runtime_checkable
class Split(Protocol):
  """A split of a dataset: its size, classes and image shape, and its batches."""

  num_classes: int  # the dataset's classes (labels lie in [0, num_classes))
  streamed: bool  # read on the fly on the host (tf.data), not held in memory

  def __len__(self) -> int: ...

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """uint8 (H, W, C) of the images a batch holds (streamed: the host's crop or canvas)."""
    ...

  def train_batches(self, config: Any, mesh: Any) -> TrainBatches:
    """The training stream of `config` (batch_size, seed, data.on_device, data.streaming)."""
    ...

  def eval_batches(
    self, batch_size: int, config: Any, mesh: Any, canvas: int = 0
  ) -> Iterator[Batch]:
    """Every example once, padded + masked. Streamed splits give the host's evaluation view or, with
    `canvas` > 0, the central canvas x canvas square of each image rescaled to that shorter side
    (the multi-view protocols of classic_cnns/evaluators.py cut their views from it in jit);
    in-memory splits give the whole images and ignore `canvas`."""
    ...
