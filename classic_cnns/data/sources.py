"""Dataset sources. Each returns a `Dataset` whose splits implement `split.Split`; in memory
(`pipeline.ArraySplit`, uint8 NHWC arrays) unless config.data.streaming reads them on the fly:

  embedded  a real MNIST sample shipped in the package (10k train + 2k test, no download)
  npz       a local .npz with x_train y_train x_test y_test (e.g. ../shared/datasets/mnist.npz)
  tfds      any TFDS dataset by name through tf.data (`data_dir` option); offline, a missing
            download becomes one `DatasetError` that says how to use local data instead
  folder    an image-folder tree root/<split>/<class>/*.{jpg,jpeg,png}

TensorFlow is imported only by the tfds source, so the other sources run where TF is absent.

Every source checks what it loads, so that bad data is one `DatasetError` line before a run starts:
readable files (a truncated or corrupt .npz, an image that does not decode: named by its path),
uint8 images of one shape in every split, integer labels >= 0, no empty split. `check_for_training`
adds what needs the config: labels below config.model.num_classes and a batch that fits the
training split.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
import zlib

import numpy as np

from classic_cnns.data import common
from classic_cnns.data.common import IMAGE_EXTENSIONS, Dataset, DatasetError  # noqa: F401
from classic_cnns.data.pipeline import ArraySplit

Split = ArraySplit  # in-memory splits are built as sources.Split(images, labels)

EMBEDDED_PATH = os.path.join(os.path.dirname(__file__), "mnist_sample.npz")
# What np.load raises on a truncated or corrupt file (zip directory, CRC, deflate stream, header).
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, IndexError, zipfile.BadZipFile, zlib.error)


def check_labels(labels: np.ndarray, what: str) -> np.ndarray:
  """int32 labels; DatasetError unless they are whole numbers >= 0 (class indices)."""
  y = np.asarray(labels)
  if y.dtype == np.bool_ or not (
    np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)
  ):
    raise DatasetError(f"{what}: labels must be integer class indices, got dtype {y.dtype}")
  if np.issubdtype(y.dtype, np.floating):
    bad = ~np.isfinite(y) | (y != np.round(y))
    if bad.any():
      i = int(np.argmax(bad))
      raise DatasetError(f"{what}: labels must be integer class indices, got {y[i]} at index {i}")
  if len(y) and y.min() < 0:
    i = int(np.argmin(y))
    raise DatasetError(f"{what}: labels must be in [0, num_classes), got {y[i]:g} at index {i}")
  if len(y) and y.max() >= 2**31:
    raise DatasetError(f"{what}: label {y.max():g} is too large for a class index")
  return y.astype(np.int32)


def _as_split(x: np.ndarray, y: np.ndarray, what: str) -> ArraySplit:
  x, y = np.asarray(x), np.asarray(y)
  if x.ndim == 3:
    x = x[..., None]
  if x.ndim != 4 or x.dtype != np.uint8:
    raise DatasetError(
      f"{what}: expected uint8 images [N,H,W] or [N,H,W,C], got {x.dtype} {x.shape}"
    )
  if y.ndim != 1 or len(y) != len(x):
    raise DatasetError(f"{what}: expected {len(x)} labels, got shape {y.shape}")
  if len(x) == 0:
    raise DatasetError(f"{what}: the split is empty (no examples)")
  if min(x.shape[1:]) == 0:
    raise DatasetError(f"{what}: images of shape {x.shape[1:]} are empty")
  return ArraySplit(x, check_labels(y, what))


def _same_shape(train: ArraySplit, other: ArraySplit | None, what: str) -> None:
  if other is not None and other.images.shape[1:] != train.images.shape[1:]:
    raise DatasetError(
      f"{what}: images are {'x'.join(map(str, other.images.shape[1:]))} but the training "
      f"images are {'x'.join(map(str, train.images.shape[1:]))}"
    )


def load_npz(path: str, name: str = "npz") -> Dataset:
  if not os.path.isfile(path):
    raise DatasetError(f"npz file not found: {path}")
  try:
    with np.load(path, allow_pickle=False) as f:
      missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
      if missing:
        raise DatasetError(
          f"{path} lacks the keys {', '.join(missing)} (needs x_train y_train x_test y_test)"
        )
      train = _as_split(f["x_train"], f["y_train"], f"{path} train")
      test = _as_split(f["x_test"], f["y_test"], f"{path} test")
  except NPZ_ERRORS as e:
    why = " ".join(str(e).split())[:200] or type(e).__name__
    raise DatasetError(f"cannot read {path} as .npz (truncated or corrupt?): {why}") from None
  _same_shape(train, test, f"{path} test")
  num_classes = int(max(train.labels.max(), test.labels.max())) + 1
  return Dataset(name, train, test, num_classes, [str(i) for i in range(num_classes)])


def load_embedded() -> Dataset:
  return load_npz(EMBEDDED_PATH, name="mnist_sample")


def load_tfds(name: str, data_dir: str = "", download: bool = True) -> Dataset:
  """Loads a whole TFDS dataset into memory through tf.data (small datasets: MNIST/CIFAR size).
  A dataset not yet prepared under `data_dir` is downloaded when `download` and online."""
  from classic_cnns.data import metadata

  info = metadata.get(name)
  if info is not None and info.image_shape is None:
    raise DatasetError(
      f"TFDS {name!r} has images of different sizes and is streamed, not loaded into memory: "
      f"set --config.data.streaming.enabled=True (classic_cnns/data/tfds_stream.py)"
    )
  import tensorflow as tf  # only here: the other sources must work without TensorFlow

  tf.config.set_visible_devices([], "GPU")  # never let TF take accelerator memory
  import tensorflow_datasets as tfds

  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except Exception as e:  # DatasetNotFoundError and friends
    raise DatasetError(f"unknown TFDS dataset {name!r}: {str(e).splitlines()[0]}") from None
  prepared = builder.is_prepared() if hasattr(builder, "is_prepared") else False
  if not prepared:
    if not download:
      raise DatasetError(
        common.offline_message(name, builder.data_dir, "config.data.download is False")
      )
    if not common.download_host_reachable():
      raise DatasetError(common.offline_message(name, builder.data_dir, "no network connection"))
  try:
    builder.download_and_prepare()
  except Exception as e:
    why = (
      f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120]}"
      if str(e).strip()
      else type(e).__name__
    )
    raise DatasetError(common.offline_message(name, builder.data_dir, why)) from None
  splits = {}
  for split, alternatives in (("train", ("train",)), ("test", ("test", "validation"))):
    ds, err = None, None
    for candidate in alternatives:  # imagenet2012 / imagenette evaluate on "validation"
      try:
        ds = builder.as_dataset(split=candidate, as_supervised=True).batch(10_000)
        break
      except Exception as e:  # pylint: disable=broad-except
        err = e
    if ds is None:
      raise DatasetError(
        f"TFDS dataset {name!r}: cannot read split {split!r}: {str(err).splitlines()[0]}"
      )
    chunks = list(tfds.as_numpy(ds))  # (batch_size=-1 crashes TF under tfds.testing.mock_data)
    x = np.concatenate([c[0] for c in chunks])
    y = np.concatenate([c[1] for c in chunks])
    splits[split] = _as_split(x, y, f"tfds {name} {split}")
  label = builder.info.features["label"]
  return Dataset(name, splits["train"], splits["test"], label.num_classes, list(label.names))


def decode_image(path: str) -> np.ndarray:
  """uint8 [H, W, 3] of an image file; DatasetError naming the file when it does not decode."""
  from PIL import Image

  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("RGB"))
  except (
    OSError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
  ) as e:  # PIL: truncated, unknown format
    why = " ".join(str(e).split())[:200] or type(e).__name__
    raise DatasetError(f"cannot decode image {path}: {why}") from None


def load_folder(root: str) -> Dataset:
  """root/<split>/<class>/*.jpg|png with splits train and test (or val); classes sorted by name."""
  if not os.path.isdir(root):
    raise DatasetError(f"image folder not found: {root}")
  splits_found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  if "train" not in splits_found:
    raise DatasetError(f"{root} has no train/ subfolder (expects root/<split>/<class>/*.jpg)")
  classes = sorted(
    d
    for d in os.listdir(os.path.join(root, "train"))
    if os.path.isdir(os.path.join(root, "train", d))
  )
  index = {c: i for i, c in enumerate(classes)}

  def read(split: str) -> ArraySplit | None:
    files = []
    for c in classes:
      d = os.path.join(root, split, c)
      if os.path.isdir(d):
        files += [
          (os.path.join(d, f), index[c])
          for f in sorted(os.listdir(d))
          if f.lower().endswith(IMAGE_EXTENSIONS)
        ]
    if not files:
      return None
    images = [decode_image(f) for f, _ in files]
    if len({im.shape for im in images}) != 1:
      raise DatasetError(f"{root}/{split}: images have different sizes; resize them first")
    return ArraySplit(np.stack(images), np.array([y for _, y in files], np.int32))

  train = read("train")
  if train is None:
    raise DatasetError(f"no images (*.jpg, *.jpeg, *.png) under {root}/train/<class>/")
  test = read("test") or read("val")  # None for a train-only tree: hold out config.data.val_size
  _same_shape(train, test, f"{root} test/val")
  return Dataset(os.path.basename(os.path.normpath(root)), train, test, len(classes), classes)


def hold_out_validation(ds: Dataset, val_size: int, seed: int) -> Dataset:
  """Moves `val_size` training examples, drawn with `seed`, into the validation split."""
  if val_size <= 0:
    return ds
  n = len(ds.train)
  if val_size >= n:
    raise DatasetError(f"data.val_size={val_size} leaves no training data ({n} examples)")
  perm = np.random.default_rng([seed, 0xDA7A]).permutation(n)
  tr, va = np.sort(perm[val_size:]), np.sort(perm[:val_size])
  train = ArraySplit(ds.train.images[tr], ds.train.labels[tr])
  val = ArraySplit(ds.train.images[va], ds.train.labels[va])
  return dataclasses.replace(ds, train=train, val=val)


def check_for_training(ds: Dataset, batch_size: int, num_classes: int) -> None:
  """DatasetError unless `ds` can train a model of `num_classes` classes with `batch_size`: every
  label of every in-memory split below num_classes, no empty split, a batch no larger than the
  training split."""
  for name in ("train", "val", "test"):
    split = getattr(ds, name)
    if split is None:
      continue
    if len(split) == 0:
      raise DatasetError(f"dataset {ds.name}: the {name} split is empty")
    labels = getattr(split, "labels", None)
    if labels is not None and len(labels) and int(np.max(labels)) >= num_classes:
      i = int(np.argmax(labels))
      raise DatasetError(
        f"dataset {ds.name}: {name} label {int(labels[i])} (index {i}) is not below "
        f"config.model.num_classes={num_classes}; labels must be in [0, num_classes)"
      )
  if batch_size > len(ds.train):
    raise DatasetError(
      f"config.batch_size={batch_size} exceeds the {len(ds.train)} training examples of "
      f"dataset {ds.name}; use a batch of at most {len(ds.train)}"
    )


def load_dataset(data_config, seed: int) -> Dataset:
  """The dataset a config asks for, with its validation split held out."""
  src = data_config.source
  if data_config.get("streaming") is not None and data_config.streaming.enabled:
    from classic_cnns.data import streaming

    if src == "folder":
      return streaming.load_streaming_folder(
        data_config.path,
        data_config.val_size,
        seed,
        streaming.streamed_shape(data_config.streaming),
      )
    if src == "tfds":
      from classic_cnns.data import tfds_stream

      return tfds_stream.load_streaming_tfds(
        data_config.name,
        data_config.data_dir,
        data_config.download,
        data_config.val_size,
        seed,
        streaming.streamed_shape(data_config.streaming),
      )
    raise DatasetError(
      f"config.data.streaming.enabled needs config.data.source='folder' or 'tfds', not {src!r}"
    )
  if src == "embedded":
    ds = load_embedded()
  elif src == "npz":
    ds = load_npz(data_config.path)
  elif src == "tfds":
    ds = load_tfds(data_config.name, data_config.data_dir, data_config.download)
  elif src == "folder":
    ds = load_folder(data_config.path)
  else:
    raise DatasetError(f"unknown data source {src!r}")
  if ds.test is None and data_config.val_size <= 0:
    raise DatasetError(
      f"{data_config.path} has only a train split; hold out validation data with "
      f"config.data.val_size (e.g. 5000 for CIFAR-10, ResNet Sec. 4.2)"
    )
  return hold_out_validation(ds, data_config.val_size, seed)
