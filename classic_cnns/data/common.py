"""What every data module shares: the split and dataset types, the user-facing DatasetError, and
the offline messages of the TFDS sources."""

from __future__ import annotations

import dataclasses

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetError(RuntimeError):
  """The data cannot be loaded; the message is one line meant for the user."""


@dataclasses.dataclass
class Split:
  images: np.ndarray  # [N, H, W, C] uint8
  labels: np.ndarray  # [N] int32

  def __len__(self) -> int:
    return len(self.labels)


@dataclasses.dataclass
class Dataset:
  name: str
  train: Split
  test: Split | None  # None: a train-only folder; evaluate on the held-out validation split
  num_classes: int
  class_names: list[str]
  val: Split | None = None

  @property
  def image_shape(self) -> tuple[int, int, int]:
    if hasattr(self.train, "image_shape"):  # streamed: streaming.FileSplit, tfds_stream.TfdsSplit
      return tuple(self.train.image_shape)
    return tuple(self.train.images.shape[1:])


def offline_message(name: str, where: str, why: str) -> str:
  return (
    f"TFDS dataset {name!r} is not prepared under {where!r} and cannot be downloaded ({why}); "
    f"use local data instead: --config.data.source=npz --config.data.path=FILE.npz, "
    f"--config.data.source=folder --config.data.path=DIR, or --config.data.data_dir=DIR holding "
    f"a prepared copy"
  )


def download_host_reachable(timeout: float = 5.0) -> bool:
  """TFDS retries a failing download for minutes; one quick connection attempt answers first."""
  import socket

  try:
    socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
    return True
  except OSError:
    return False
