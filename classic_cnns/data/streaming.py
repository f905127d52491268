"""Streaming input pipeline (tf.data on the host) for datasets too large to hold in memory:
image folders of JPEG/PNG files (e.g. ImageNet laid out as root/train/<class>/*.JPEG).

Same contract as `pipeline.TrainBatches`: the batch of step s is a pure function of (seed, s).
Each epoch visits the files in the permutation `default_rng([seed, epoch])`; process p reads only
its slice of every global batch (multi-host), decodes and augments on the host CPU with
`num_parallel_calls`, and hands uint8 batches to the device; normalisation happens in jit.
Resuming at step s starts the file list at s's position: no iterator state to checkpoint.
Host-side augmentation is stateless (tf.image.stateless_*), keyed by (seed, epoch, index), so it is
deterministic too.

Host modes (`config.data.streaming.augment`):
  inception     random-resized crop on the whole image, area 8-100%, aspect 3/4-4/3 (Szegedy et al.
                2015 Sec. 6), + flip; evaluation: shorter side -> `resize`, centre `crop`
  resize_crop   shorter side -> `resize`, random `crop` (AlexNet Sec. 4.1), + flip; evaluation as above
  scale_jitter  shorter side -> S ~ U[scale_min, scale_max] per image, random `crop` (VGG Sec. 3.1
                multi-scale training), + flip; evaluation as above
  canvas        no randomness on the host: shorter side -> `resize`, the central `resize` x `resize`
                square (AlexNet Sec. 2 builds exactly this 256 x 256 image). The split then looks like
                an in-memory split of that size, so EVERY in-jit op of augment.py (crop families, pixel
                mean, GCN/ZCA, PCA lighting, ...) and every evaluation protocol applies unchanged.
The evaluation protocols other than `single` use canvases too (evaluate.py): centre / 10 crops are cut
in jit from the `resize` square, dense evaluation rescales the central square of the image.

Files are decoded as they are read: one that is missing or does not decode stops the run with a
one-line `DataReadError` naming its path and the step (exit status 1 from the command-line tools),
not a TensorFlow traceback; the last checkpoint stays, so fix or remove the file and rerun.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterator

import jax
import numpy as np
from jax.sharding import Mesh

from classic_cnns import parallel
from classic_cnns.data.common import IMAGE_EXTENSIONS, DatasetError
from classic_cnns.data.tf_ops import (  # noqa: F401  (re-exported: the streamed pipelines' TF ops)
  MODES,
  _decode,
  _resize_shorter,  # noqa: F401
  _tf,
  eval_options,
  eval_transform,
  streamed_shape,
  train_options,
  train_transform,
)


class DataReadError(DatasetError):
  """A file of a streamed split could not be read or decoded while the run read it; one line naming
  the file."""

  exit_status = 1


def _first_line(e: BaseException) -> str:
  """The cause in TensorFlow's error message, without its op and function names."""
  import re

  text = str(getattr(e, "message", None) or e)
  text = re.sub(r"\{\{function_node [^}]*\}\}", "", text)
  text = re.sub(r"\[Op:[^\]]*\].*", "", text, flags=re.S)
  lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("[[")]
  return (lines[0] if lines else type(e).__name__)[:200]


def _unreadable(files, channels: int) -> tuple[str, str] | None:
  """(path, why) of the first of `files` that cannot be read and decoded, else None."""
  tf = _tf()
  for path in files:
    path = path.decode() if isinstance(path, bytes) else str(path)
    try:
      _decode(tf, tf.constant(path), channels)
    except Exception as e:  # pylint: disable=broad-except  (tf.errors.*: not found, invalid data)
      return path, _first_line(e)
  return None


def _read_error(e: BaseException, files, channels: int, where: str) -> DataReadError:
  """The DataReadError for a tf.data failure `e` while reading `files` (the batch at `where`)."""
  found = _unreadable(files, channels)
  if found is not None:
    return DataReadError(f"cannot read image {found[0]} ({where}): {found[1]}")
  return DataReadError(f"cannot read the images of {where}: {_first_line(e)}")


@dataclasses.dataclass
class FileSplit:
  """A split kept as file paths, decoded on the fly (`config.data.streaming`); the `split.Split`
  protocol."""

  files: np.ndarray
  labels: np.ndarray
  image_shape: tuple[int, int, int]  # after the crop
  num_classes: int = 0  # set by the Dataset that holds it
  streamed = True

  def __len__(self) -> int:
    return len(self.labels)

  def train_batches(self, config, mesh: Mesh) -> "StreamingTrainBatches":
    """tf.data on the host: the crop family of config.data.streaming.augment, keyed by (seed, step)."""
    return StreamingTrainBatches(
      self.files,
      self.labels,
      config.batch_size,
      config.seed,
      mesh,
      **train_options(config.data.streaming, self.image_shape[-1]),
    )

  def eval_batches(self, batch_size: int, config, mesh: Mesh | None, canvas: int = 0):
    return eval_batches(self, batch_size, mesh, **eval_options(config.data.streaming, canvas))


def is_streamed(split) -> bool:
  """True for a split read on the fly (FileSplit here, tfds_stream.TfdsSplit), not held in memory."""
  return split is not None and not hasattr(split, "images")


def load_streaming_folder(root: str, val_size: int, seed: int, shape: tuple[int, int, int]):
  """Dataset of FileSplits from root/train (+ root/val or root/test, or `val_size` held out);
  `shape` is what the host produces (`streamed_shape`)."""
  from classic_cnns.data.common import Dataset

  files, labels, classes = list_image_folder(root, "train")
  shape = tuple(shape)
  test = None
  for name in ("test", "val"):
    if os.path.isdir(os.path.join(root, name)):
      f, l, _ = list_image_folder(root, name, classes)
      test = FileSplit(f, l, shape)
      break
  val = None
  if val_size > 0:
    if val_size >= len(files):
      raise DatasetError(f"data.val_size={val_size} leaves no training images ({len(files)})")
    perm = np.random.default_rng([seed, 0xDA7A]).permutation(len(files))
    tr, va = np.sort(perm[val_size:]), np.sort(perm[:val_size])
    val = FileSplit(files[va], labels[va], shape)
    files, labels = files[tr], labels[tr]
  if test is None and val is None:
    raise DatasetError(
      f"{root} has only a train split; hold out validation data with config.data.val_size"
    )
  return Dataset(
    os.path.basename(os.path.normpath(root)),
    FileSplit(files, labels, shape),
    test,
    len(classes),
    classes,
    val,
  )


def sample_images(split, resize: int, crop: int, max_images: int) -> np.ndarray:
  """uint8 [n, crop, crop, C]: the evaluation view of up to `max_images` images (for statistics that
  need images: channel mean/std, per-pixel mean, ZCA, PCA). Folders: spread evenly over the split;
  TFDS splits: the first ones (TFDS shuffles examples when it prepares a dataset)."""
  n = min(max_images, len(split))
  subset = np.linspace(0, len(split) - 1, n).astype(np.int64) if hasattr(split, "files") else None
  out, have = [], 0
  for b in eval_batches(split, min(n, 256), None, resize=resize, crop=crop, subset=subset):
    x = np.asarray(b["image"])[np.asarray(b["mask"]) > 0][: n - have]
    out.append(x)
    have += len(x)
    if have >= n:
      break
  return np.concatenate(out)


def channel_stats(split, resize: int, crop: int, max_images: int = 256):
  """Per-channel mean/std (0-255 units) of up to `max_images` centre crops."""
  x = sample_images(split, resize, crop, max_images).astype(np.float64)
  return (
    tuple(float(v) for v in x.mean(axis=(0, 1, 2))),
    tuple(float(max(v, 1e-3)) for v in x.std(axis=(0, 1, 2))),
  )


def list_image_folder(root: str, split: str, classes: list[str] | None = None):
  """(files, labels, class_names) of root/<split>/<class>/*.{jpg,jpeg,png} without decoding."""
  d = os.path.join(root, split)
  if not os.path.isdir(d):
    raise DatasetError(f"image folder split not found: {d}")
  classes = classes or sorted(c for c in os.listdir(d) if os.path.isdir(os.path.join(d, c)))
  files, labels = [], []
  for i, c in enumerate(classes):
    cdir = os.path.join(d, c)
    if os.path.isdir(cdir):
      names = sorted(f for f in os.listdir(cdir) if f.lower().endswith(IMAGE_EXTENSIONS))
      files += [os.path.join(cdir, f) for f in names]
      labels += [i] * len(names)
  if not files:
    raise DatasetError(f"no images (*.jpg, *.jpeg, *.png) under {d}/<class>/")
  return np.array(files), np.array(labels, np.int32), classes


class StreamingTrainBatches:
  def __init__(
    self,
    files: np.ndarray,
    labels: np.ndarray,
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
  ):
    if len(files) < batch_size:
      raise ValueError(f"{len(files)} training images, fewer than batch_size={batch_size}")
    if mode not in MODES:
      raise ValueError(f"unknown streaming augmentation {mode!r}; choose one of {', '.join(MODES)}")
    self.files, self.labels, self.batch_size, self.seed, self.mesh = (
      files,
      labels,
      batch_size,
      seed,
      mesh,
    )
    self.mode, self.resize, self.crop, self.channels = mode, resize, crop, channels
    self.scale_range = (int(scale_range[0]), int(scale_range[1]))
    self.threads = threads or os.cpu_count()
    self.steps_per_epoch = len(files) // batch_size

  def _local_indices(self, epoch: int, first_step: int, last_step: int) -> np.ndarray:
    """[steps, local batch] indices into self.files this process reads in steps first..last-1."""
    perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
    per_step = perm[: self.steps_per_epoch * self.batch_size].reshape(
      self.steps_per_epoch, self.batch_size
    )
    return per_step[first_step:last_step, parallel.process_slice(self.batch_size)]

  def _epoch_dataset(self, epoch: int, first_step: int, last_step: int):
    tf = _tf()
    local = self._local_indices(epoch, first_step, last_step).reshape(-1)
    base = (first_step * self.batch_size + np.arange(len(local))).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((self.files[local], self.labels[local], base))

    def load(path, label, index):
      seed = tf.stack([tf.cast(self.seed * 1_000_003 + epoch, tf.int64), index])
      img = train_transform(
        tf,
        _decode(tf, path, self.channels),
        seed,
        self.mode,
        self.resize,
        self.crop,
        self.scale_range,
      )
      return img, label

    local_batch = self.batch_size // jax.process_count()
    ds = ds.map(load, num_parallel_calls=self.threads, deterministic=True).batch(
      local_batch, drop_remainder=True
    )
    options = tf.data.Options()
    options.threading.private_threadpool_size = self.threads
    return ds.with_options(options).prefetch(2)

  def iterate(self, start_step: int, end_step: int) -> Iterator[tuple[int, dict[str, jax.Array]]]:
    tf = _tf()
    step = start_step
    while step < end_step:
      epoch, first = divmod(step, self.steps_per_epoch)
      last = min(self.steps_per_epoch, first + (end_step - step))
      batches = self._epoch_dataset(epoch, first, last).as_numpy_iterator()
      while True:
        try:
          images, labels = next(batches)
        except StopIteration:
          break
        except tf.errors.OpError as e:
          i = step - epoch * self.steps_per_epoch
          files = self.files[self._local_indices(epoch, i, i + 1).reshape(-1)]
          raise _read_error(e, files, self.channels, f"training step {step + 1}") from None
        yield (
          step,
          {
            "image": parallel.to_global(images, self.mesh, self.batch_size),
            "label": parallel.to_global(labels, self.mesh, self.batch_size),
          },
        )
        step += 1


def streaming_eval_batches(
  files: np.ndarray,
  labels: np.ndarray,
  batch_size: int,
  mesh: Mesh | None,
  *,
  resize: int = 256,
  crop: int = 224,
  channels: int = 3,
  threads: int = 0,
  subset: np.ndarray | None = None,
):
  """Every image once (shorter side -> resize, centre crop; crop == resize: the canvas square), the
  last batch padded with mask 0. `subset`: only these indices. `mesh=None`: numpy batches, one process."""
  tf = _tf()
  order = np.arange(len(files)) if subset is None else np.asarray(subset)
  n = len(order)
  idx = np.arange(-(-n // batch_size) * batch_size)
  mask = (idx < n).astype(np.float32)
  idx = order[np.where(idx < n, idx, 0)]
  procs = jax.process_count() if mesh is not None else 1
  if mesh is not None:
    idx = idx.reshape(-1, batch_size)[:, parallel.process_slice(batch_size)].reshape(-1)
    mask = mask.reshape(-1, batch_size)[:, parallel.process_slice(batch_size)].reshape(-1)
  ds = tf.data.Dataset.from_tensor_slices((files[idx], labels[idx], mask))
  ds = ds.map(
    lambda p, l, m: (eval_transform(tf, _decode(tf, p, channels), resize, crop), l, m),
    num_parallel_calls=threads or os.cpu_count(),
    deterministic=True,
  )
  local_batch = batch_size // procs
  batches = ds.batch(local_batch).prefetch(2).as_numpy_iterator()
  b = 0
  while True:
    try:
      images, lbl, m = next(batches)
    except StopIteration:
      return
    except tf.errors.OpError as e:
      raise _read_error(
        e,
        files[idx[b * local_batch : (b + 1) * local_batch]],
        channels,
        f"evaluation batch {b + 1}",
      ) from None
    b += 1
    if mesh is None:
      yield {"image": images, "label": lbl, "mask": m}
    else:
      yield {
        "image": parallel.to_global(images, mesh, batch_size),
        "label": parallel.to_global(lbl, mesh, batch_size),
        "mask": parallel.to_global(m, mesh, batch_size),
      }


def eval_batches(
  split,
  batch_size: int,
  mesh: Mesh | None,
  *,
  resize: int,
  crop: int,
  threads: int = 0,
  subset: np.ndarray | None = None,
):
  """Evaluation batches of any streamed split (image folder files or a TFDS split)."""
  if hasattr(split, "files"):
    return streaming_eval_batches(
      split.files,
      split.labels,
      batch_size,
      mesh,
      resize=resize,
      crop=crop,
      channels=split.image_shape[-1],
      threads=threads,
      subset=subset,
    )
  from classic_cnns.data import tfds_stream

  if subset is not None:
    raise ValueError("sampling a subset of a TFDS stream is not supported")
  return tfds_stream.tfds_eval_batches(
    split,
    batch_size,
    mesh,
    resize=resize,
    crop=crop,
    channels=split.image_shape[-1],
    threads=threads,
  )
