"""What every data module shares: the dataset type, the user-facing DatasetError, and the offline
messages of the TFDS sources. The splits implement `split.Split` (in memory: pipeline.ArraySplit;
streamed: streaming.FileSplit, tfds_stream.TfdsSplit)."""

from __future__ import annotations

import dataclasses

from classic_cnns.data.split import Split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class DatasetError(RuntimeError):
  """The data cannot be loaded; the message is one line meant for the user."""


@dataclasses.dataclass
class Dataset:
  name: str
  train: Split
  test: Split | None  # None: a train-only folder; evaluate on the held-out validation split
  num_classes: int
  class_names: list[str]
  val: Split | None = None

  def __post_init__(self):
    for split in (self.train, self.test, self.val):  # each split knows the dataset's classes
      if split is not None:
        split.num_classes = self.num_classes

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.image_shape)


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
