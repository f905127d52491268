"""Streaming a TFDS split through tf.data, for datasets whose images vary in size or do not fit in
memory (imagenet2012, full-size imagenette): `sources.load_tfds` stacks whole splits into numpy
arrays, which needs one image size and the whole split in RAM. Here the encoded bytes are read
with `tfds.decode.SkipDecoding()`, decoded on the host (`tf.io.decode_image`) and cropped by the
same `streaming.train_transform` / `streaming.eval_transform` as the image-folder pipeline, so a
TFDS copy of ImageNet and an extracted folder copy are augmented identically.

Determinism (same contract as `streaming.StreamingTrainBatches`): the batch of step s is a pure
function of (seed, s). Epoch e reads its split with `shuffle_files=True` and
`ReadConfig(shuffle_seed=...)` (the shard order; TFDS's interleave is deterministic once a seed is
given), then a seeded `ds.shuffle(buffer, reshuffle_each_iteration=False)`; both seeds come from
`SeedSequence([seed, e])`, and `tf.data.Options().deterministic = True` keeps every parallel
stage in order. Augmentation is stateless (tf.image.stateless_*), keyed by (seed, epoch, position
in the epoch's global order).

Resuming at step s (after a restart) rebuilds epoch s // steps_per_epoch and `.skip()`s the
examples of the steps already taken, before decoding: no iterator state is checkpointed, but the
skipped part of the epoch is still read from disk and passed through the shuffle buffer (I/O, no
JPEG decoding), so resuming late in an ImageNet epoch costs a read of up to one epoch of records.

Multi-host: process p of P reads `tfds.even_splits(split, P, drop_remainder=True)[p]`, disjoint
and equally sized, and contributes batch_size // P rows of every global batch (`parallel.to_global`).
Evaluation uses `drop_remainder=False` sub-splits (every example once across processes); each
process pads its part to the same number of batches with mask-0 rows.

The validation hold-out (`val_size` > 0) is a contiguous block of the train split at an offset
drawn with `seed`: TFDS stores examples in a hash-shuffled order, so a block is a random sample.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from classic_cnns import parallel
from classic_cnns.data import common, metadata
from classic_cnns.data.common import DatasetError
from classic_cnns.data.tf_ops import (
  MODES,
  _tf,
  eval_options,
  eval_transform,
  train_options,
  train_transform,
)


@dataclasses.dataclass
class TfdsSplit:
  """A TFDS split read on the fly (encoded images, decoded on the host); the `split.Split`
  protocol."""

  builder_name: str  # e.g. "imagenet2012"
  data_dir: str | None
  split: str  # a TFDS split spec, e.g. "train", "train[:1000]+train[2000:]", "validation"
  num_examples: int
  image_shape: tuple[int, int, int]  # after the crop / canvas (set by the caller)
  num_classes: int = 0  # set by the Dataset that holds it
  streamed = True

  def __len__(self) -> int:
    return self.num_examples

  def train_batches(self, config, mesh: Mesh) -> "TfdsTrainBatches":
    """tf.data on the host: the crop family of config.data.streaming.augment, keyed by (seed, step)."""
    return TfdsTrainBatches(
      self,
      config.batch_size,
      config.seed,
      mesh,
      **train_options(config.data.streaming, self.image_shape[-1]),
    )

  def eval_batches(self, batch_size: int, config, mesh: Mesh | None, canvas: int = 0):
    o = eval_options(config.data.streaming, canvas)
    return tfds_eval_batches(self, batch_size, mesh, channels=self.image_shape[-1], **o)


def _tfds():
  _tf()  # hides the accelerators from TF before TFDS imports it
  import tensorflow_datasets as tfds

  return tfds


def _builder(name: str, data_dir: str | None):
  tfds = _tfds()
  try:
    return tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # DatasetNotFoundError and friends
    raise DatasetError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None


def _manual_hint(name: str) -> str:
  info = metadata.get(name)
  if info is not None and "manual_dir" in info.note:
    return info.note  # imagenet2012: metadata.IMAGENET_MANUAL_NOTE
  return (
    f"{name} cannot be downloaded by TFDS: put its files in TFDS's manual_dir "
    f"(default <data_dir>/downloads/manual/) as its TFDS catalog page says"
  )


def _prepare(builder, name: str, download: bool) -> None:
  """`builder` prepared, or one-line DatasetError (the messages of `sources.load_tfds`, plus the
  manual-download hint for datasets TFDS cannot download, e.g. imagenet2012)."""
  manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
  suffix = f"; {_manual_hint(name)}" if manual else ""
  if builder.is_prepared():
    return
  if not download:
    raise DatasetError(
      common.offline_message(name, builder.data_dir, "config.data.download is False") + suffix
    )
  if not manual and not common.download_host_reachable():  # manual data is prepared offline
    raise DatasetError(common.offline_message(name, builder.data_dir, "no network connection"))
  try:
    builder.download_and_prepare()
  except Exception as e:  # pylint: disable=broad-except
    first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
    why = f"{type(e).__name__}: {first}" if first else type(e).__name__
    if manual and isinstance(
      e, AssertionError
    ):  # TFDS: "Manual directory ... does not exist or is empty"
      why = "manual download missing"
    raise DatasetError(common.offline_message(name, builder.data_dir, why) + suffix) from None


def _split_names(builder) -> list[str]:
  try:
    return list(builder.info.splits.keys())
  except Exception:  # pylint: disable=broad-except
    return []


def _num_examples(builder, split: str) -> int:
  """Examples in `split`, from the prepared metadata; else from the dataset's cardinality
  (an unprepared builder, e.g. under `tfds.testing.mock_data`)."""
  try:
    return int(builder.info.splits[split].num_examples)
  except Exception:  # pylint: disable=broad-except  (KeyError: metadata has no splits)
    pass
  ds = builder.as_dataset(split=split, decoders={"image": _tfds().decode.SkipDecoding()})
  n = int(ds.cardinality())
  if n < 0:
    raise DatasetError(
      f"TFDS dataset {builder.name!r}: cannot tell how many examples split {split!r} has"
    )
  return n


def load_streaming_tfds(
  name: str,
  data_dir: str | None,
  download: bool,
  val_size: int,
  seed: int,
  image_shape: tuple[int, int, int],
) -> common.Dataset:
  """`Dataset` of TfdsSplits: train (less `val_size` held-out examples), test = "test" or else
  "validation", val = the held-out block of train (None when `val_size` <= 0)."""
  builder = _builder(name, data_dir)
  _prepare(builder, name, download)
  known = _split_names(builder)
  if known and "train" not in known:
    raise DatasetError(f"TFDS dataset {name!r} has no train split (splits: {', '.join(known)})")
  if known:
    test_split = next((s for s in ("test", "validation") if s in known), None)
  else:  # metadata without splits (mock data): the split metadata.py knows, else "test"
    info = metadata.get(name)
    test_split = info.test_split if info is not None else "test"
  shape = tuple(image_shape)
  n = _num_examples(builder, "train")
  train = TfdsSplit(name, data_dir or None, "train", n, shape)
  val = None
  if val_size > 0:
    if val_size >= n:
      raise DatasetError(f"data.val_size={val_size} leaves no training images ({n})")
    start = int(np.random.default_rng([seed, 0xDA7A]).integers(0, n - val_size + 1))
    end = start + val_size
    val = TfdsSplit(name, data_dir or None, f"train[{start}:{end}]", val_size, shape)
    parts = ([f"train[:{start}]"] if start > 0 else []) + ([f"train[{end}:]"] if end < n else [])
    train = TfdsSplit(name, data_dir or None, "+".join(parts), n - val_size, shape)
  test = None
  if test_split is not None:
    test = TfdsSplit(name, data_dir or None, test_split, _num_examples(builder, test_split), shape)
  if test is None and val is None:
    raise DatasetError(
      f"TFDS dataset {name!r} has only a train split; hold out validation data with "
      f"config.data.val_size"
    )
  try:
    label = builder.info.features["label"]
    class_names, num_classes = list(label.names), int(label.num_classes)
  except Exception as e:  # pylint: disable=broad-except
    raise DatasetError(f"TFDS dataset {name!r} has no ClassLabel feature 'label': {e}") from None
  return common.Dataset(name, train, test, num_classes, class_names, val)


def _options(threads: int):
  tf = _tf()
  options = tf.data.Options()
  options.deterministic = True
  options.threading.private_threadpool_size = threads
  return options


def _process_part(split: TfdsSplit, process_index: int, process_count: int, drop_remainder: bool):
  """(TFDS split arg, example count) read by one process: an even, disjoint sub-split."""
  if process_count == 1:
    return split.split, split.num_examples
  n, p = split.num_examples, process_count
  count = n // p if drop_remainder else n // p + int(process_index < n % p)
  part = _tfds().even_splits(split.split, n=p, drop_remainder=drop_remainder)[process_index]
  return part, count


def _read(split: TfdsSplit, part: Any, *, shuffle_seed: int | None, threads: int):
  """Dataset of (encoded image bytes, int32 label) of `part`, shards shuffled with `shuffle_seed`."""
  tf, tfds = _tf(), _tfds()
  builder = tfds.builder(split.builder_name, data_dir=split.data_dir)
  read_config = tfds.ReadConfig(
    options=_options(threads),
    try_autocache=False,
    skip_prefetch=True,
    shuffle_seed=shuffle_seed,
    shuffle_reshuffle_each_iteration=False,
  )
  ds = builder.as_dataset(
    split=part,
    shuffle_files=shuffle_seed is not None,
    read_config=read_config,
    decoders={"image": tfds.decode.SkipDecoding()},
  )
  return ds.map(lambda ex: (ex["image"], tf.cast(ex["label"], tf.int32)))


def _decode(tf, encoded, channels: int):
  return tf.io.decode_image(encoded, channels=channels, expand_animations=False)


class TfdsTrainBatches:
  """Training batches of a TfdsSplit; same contract and host modes as
  `streaming.StreamingTrainBatches`: "inception" (random-resized crop, Szegedy et al. 2015 Sec. 6),
  "resize_crop" (shorter side -> `resize`, random `crop`, AlexNet Sec. 4.1), "scale_jitter"
  (shorter side ~ U[scale_range], random `crop`, VGG Sec. 3.1), each + flip; "canvas" (central
  `resize` square, no host randomness)."""

  def __init__(
    self,
    split: TfdsSplit,
    batch_size: int,
    seed: int,
    mesh: Mesh,
    *,
    mode: str = "inception",
    resize: int = 256,
    crop: int = 224,
    channels: int = 3,
    threads: int = 0,
    scale_range: tuple[int, int] = (256, 512),
    shuffle_buffer: int = 4096,
  ):
    if len(split) < batch_size:
      raise ValueError(f"{len(split)} training images, fewer than batch_size={batch_size}")
    if batch_size % jax.process_count():
      raise ValueError(
        f"batch_size={batch_size} is not divisible by {jax.process_count()} processes"
      )
    if mode not in MODES:
      raise ValueError(f"unknown streaming augmentation {mode!r}; choose one of {', '.join(MODES)}")
    self.split, self.batch_size, self.seed, self.mesh = split, batch_size, seed, mesh
    self.mode, self.resize, self.crop, self.channels = mode, resize, crop, channels
    self.scale_range = (int(scale_range[0]), int(scale_range[1]))
    self.threads = threads or os.cpu_count()
    self.shuffle_buffer = shuffle_buffer  # encoded examples (~110 KB each on ImageNet)
    self.steps_per_epoch = len(split) // batch_size

  def _epoch_dataset(
    self, epoch: int, first_step: int, last_step: int, process_index: int, process_count: int
  ):
    """Local batches of steps [first_step, last_step) of `epoch` for one process."""
    tf = _tf()
    lb = self.batch_size // process_count
    file_seed, buffer_seed = (
      int(s) & 0x7FFFFFFF for s in np.random.SeedSequence([self.seed, epoch]).generate_state(2)
    )
    part, _ = _process_part(self.split, process_index, process_count, drop_remainder=True)
    ds = _read(self.split, part, shuffle_seed=file_seed, threads=self.threads)
    ds = ds.shuffle(self.shuffle_buffer, seed=buffer_seed, reshuffle_each_iteration=False)
    # position i of this process's epoch stream -> its index in the epoch's global order
    ds = ds.take(self.steps_per_epoch * lb).enumerate()
    ds = ds.skip(first_step * lb).take((last_step - first_step) * lb)  # resume: read, not decoded

    def load(i, encoded, label):
      index = (i // lb) * self.batch_size + process_index * lb + i % lb
      seed = tf.stack([tf.cast(self.seed * 1_000_003 + epoch, tf.int64), index])
      img = train_transform(
        tf,
        _decode(tf, encoded, self.channels),
        seed,
        self.mode,
        self.resize,
        self.crop,
        self.scale_range,
      )
      return img, label

    ds = ds.map(lambda i, ex: load(i, *ex), num_parallel_calls=self.threads, deterministic=True)
    return ds.batch(lb, drop_remainder=True).with_options(_options(self.threads)).prefetch(2)

  def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, dict[str, jax.Array]]]:
    """(step, {"image": uint8 [B, crop, crop, C] (canvas: resize), "label": int32 [B]}), steps [start, end)."""
    step = start_step
    while step < end_step:
      epoch, first = divmod(step, self.steps_per_epoch)
      last = min(self.steps_per_epoch, first + (end_step - step))
      ds = self._epoch_dataset(epoch, first, last, jax.process_index(), jax.process_count())
      before = step
      for images, labels in ds.as_numpy_iterator():
        yield (
          step,
          {
            "image": parallel.to_global(images, self.mesh, self.batch_size),
            "label": parallel.to_global(labels, self.mesh, self.batch_size),
          },
        )
        step += 1
      if step - before != last - first:
        raise DatasetError(
          f"TFDS {self.split.builder_name} {self.split.split!r} gave {step - before} of "
          f"{last - first} batches of epoch {epoch}: fewer examples than its metadata says"
        )


def _eval_local_dataset(
  split: TfdsSplit,
  local_batch: int,
  process_index: int,
  process_count: int,
  *,
  resize: int,
  crop: int,
  channels: int,
  threads: int,
):
  """One process's eval batches (image, label, mask): its even sub-split, padded with mask-0 rows to
  ceil(ceil(N / P) / local_batch) batches, the same count on every process."""
  tf = _tf()
  part, count = _process_part(split, process_index, process_count, drop_remainder=False)
  batches = -(-(-(-split.num_examples // process_count)) // local_batch)
  ds = _read(split, part, shuffle_seed=None, threads=threads).take(count)
  ds = ds.map(
    lambda e, l: (eval_transform(tf, _decode(tf, e, channels), resize, crop), l, tf.constant(1.0)),
    num_parallel_calls=threads,
    deterministic=True,
  )
  pad = tf.data.Dataset.from_tensors(
    (tf.zeros((crop, crop, channels), tf.uint8), tf.constant(0, tf.int32), tf.constant(0.0))
  ).repeat(batches * local_batch - count)
  return ds.concatenate(pad).batch(local_batch).with_options(_options(threads)).prefetch(2)


def tfds_eval_batches(
  split: TfdsSplit,
  batch_size: int,
  mesh: Mesh | None,
  *,
  resize: int = 256,
  crop: int = 224,
  channels: int = 3,
  threads: int = 0,
) -> Iterator[dict[str, Any]]:
  """Every example once (shorter side -> `resize`, centre `crop`; crop == resize: the canvas square);
  padding rows have mask 0. `mesh=None`: numpy batches of the whole split, one process."""
  n = jax.process_count() if mesh is not None else 1
  if batch_size % n:
    raise ValueError(f"batch_size={batch_size} is not divisible by {n} processes")
  ds = _eval_local_dataset(
    split,
    batch_size // n,
    jax.process_index() if n > 1 else 0,
    n,
    resize=resize,
    crop=crop,
    channels=channels,
    threads=threads or os.cpu_count(),
  )
  for images, labels, mask in ds.as_numpy_iterator():
    if mesh is None:
      yield {"image": images, "label": labels, "mask": mask}
      continue
    yield {
      "image": parallel.to_global(images, mesh, batch_size),
      "label": parallel.to_global(labels, mesh, batch_size),
      "mask": parallel.to_global(mask, mesh, batch_size),
    }
