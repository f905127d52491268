"""The Split protocol: every split kind implements it, and the batches it makes are those of the
pipelines behind it (same order, same augmentation, same resume) for the same seed."""

import ml_collections
import numpy as np
import pytest

from classic_cnns import parallel
from classic_cnns.config import base_config
from classic_cnns.data import pipeline, split, streaming, tfds_stream
from classic_cnns.data.common import Dataset


def _config(batch_size=8, seed=3, on_device=True) -> ml_collections.ConfigDict:
  c = base_config()
  c.batch_size, c.seed, c.data.on_device = batch_size, seed, on_device
  s = c.data.streaming
  s.enabled, s.augment, s.resize, s.crop, s.threads = True, "resize_crop", 36, 32, 1
  s.scale_min, s.scale_max = 32, 44
  return c


def _arrays(n=40) -> pipeline.ArraySplit:
  images = (np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 6, 5, 1), np.uint8)) * 3
  return pipeline.ArraySplit(images, np.arange(n, dtype=np.int32) % 7)


def _same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(y)
    for k in x:
      np.testing.assert_array_equal(np.asarray(x[k]), np.asarray(y[k]))


def test_every_split_kind_implements_the_protocol():
  arrays = _arrays()
  files = streaming.FileSplit(np.array(["a.jpg"]), np.zeros(1, np.int32), (32, 32, 3))
  records = tfds_stream.TfdsSplit("x", None, "train", 5, (32, 32, 3))
  for s, streamed in ((arrays, False), (files, True), (records, True)):
    assert isinstance(s, split.Split) and s.streamed is streamed
  assert arrays.image_shape == (6, 5, 1) and len(arrays) == 40 and len(records) == 5
  ds = Dataset("d", arrays, _arrays(10), 7, [str(i) for i in range(7)])
  assert ds.train.num_classes == ds.test.num_classes == 7 and ds.image_shape == (6, 5, 1)


@pytest.mark.parametrize("on_device", [True, False])
def test_array_split_batches_are_the_pipelines(on_device):
  mesh = parallel.make_mesh()
  s, config = _arrays(), _config(on_device=on_device)
  stream = s.train_batches(config, mesh)
  assert isinstance(stream, split.TrainBatches) and stream.steps_per_epoch == 5
  direct = pipeline.TrainBatches(s, 8, 3, mesh, on_device)
  got = [b for _, b in stream.iterate(0, 12)]
  _same(got, [direct.batch(i) for i in range(12)])
  _same([b for _, b in stream.iterate(7, 12)], got[7:])  # resumed at step 7: the same batches
  evals = list(s.eval_batches(16, config, mesh, canvas=99))  # arrays: canvas does not apply
  _same(evals, list(pipeline.eval_batches(s, 16, mesh)))
  assert sum(float(np.sum(b["mask"])) for b in evals) == 40


@pytest.fixture(scope="module")
def jpeg_files(tmp_path_factory):
  pytest.importorskip("tensorflow")
  from PIL import Image

  root = tmp_path_factory.mktemp("jpegs")
  rng = np.random.default_rng(0)
  files = []
  for i in range(10):
    path = root / f"{i}.jpg"
    Image.fromarray(rng.integers(0, 255, (40 + i, 50 - i, 3), dtype=np.uint8)).save(path)
    files.append(str(path))
  return np.array(files), np.arange(10, dtype=np.int32) % 2


def test_file_split_batches_are_the_streaming_pipelines(jpeg_files):
  files, labels = jpeg_files
  mesh = parallel.make_mesh()
  config = _config(batch_size=4)
  s = streaming.FileSplit(files, labels, streaming.streamed_shape(config.data.streaming))
  stream = s.train_batches(config, mesh)
  direct = streaming.StreamingTrainBatches(
    files, labels, 4, 3, mesh, mode="resize_crop", resize=36, crop=32, threads=1
  )
  got = [b for _, b in stream.iterate(0, 5)]
  _same(got, [b for _, b in direct.iterate(0, 5)])
  _same([b for _, b in stream.iterate(3, 5)], got[3:])
  view = streaming.streaming_eval_batches(files, labels, 4, mesh, resize=36, crop=32, threads=1)
  _same(list(s.eval_batches(4, config, mesh)), list(view))
  canvas = list(s.eval_batches(4, config, mesh, canvas=40))  # central 40x40 square at side 40
  ref = streaming.streaming_eval_batches(files, labels, 4, mesh, resize=40, crop=40, threads=1)
  _same(canvas, list(ref))
  assert canvas[0]["image"].shape == (4, 40, 40, 3)
