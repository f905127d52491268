"""The batches a run iterates: training batches (in memory / on device, a streamed image folder, a
streamed TFDS split) and evaluation passes over every example once (padded and masked), chosen by
what the split is."""

from __future__ import annotations

import ml_collections

from classic_cnns.data import pipeline


def make_train_batches(split, config: ml_collections.ConfigDict, mesh):
  """In-memory splits: sharded gathers (on device by default); streamed splits (image folder files
  or a TFDS split): tf.data on the host."""
  from classic_cnns.data import streaming

  if streaming.is_streamed(split):
    s = config.data.streaming
    kw = dict(
      mode=s.augment,
      resize=s.resize,
      crop=s.crop,
      channels=split.image_shape[-1],
      threads=s.threads,
      scale_range=(s.scale_min, s.scale_max),
    )
    if hasattr(split, "files"):
      return streaming.StreamingTrainBatches(
        split.files, split.labels, config.batch_size, config.seed, mesh, **kw
      )
    from classic_cnns.data import tfds_stream

    return tfds_stream.TfdsTrainBatches(split, config.batch_size, config.seed, mesh, **kw)
  return pipeline.TrainBatches(split, config.batch_size, config.seed, mesh, config.data.on_device)


def eval_batches(split, batch_size: int, config: ml_collections.ConfigDict, mesh, canvas: int = 0):
  """Every example once, padded + masked. Streamed splits give the host's evaluation view (resize +
  centre crop; the canvas square in canvas mode) or, with `canvas`, the central canvas x canvas square
  of the image rescaled to that shorter side (evaluate.py's multi-view protocols)."""
  from classic_cnns.data import streaming

  if streaming.is_streamed(split):
    s = config.data.streaming
    side = canvas or streaming.streamed_shape(s)[0]
    return streaming.eval_batches(
      split, batch_size, mesh, resize=canvas or s.resize, crop=side, threads=s.threads
    )
  return pipeline.eval_batches(split, batch_size, mesh)
