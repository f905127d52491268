import numpy as np
import pytest

pytest.importorskip("tensorflow")

from classic_cnns import parallel
from classic_cnns.data import streaming
from classic_cnns.data.sources import DatasetError


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
  from PIL import Image
  root = tmp_path_factory.mktemp("jpegs")
  rng = np.random.default_rng(0)
  for split, n in (("train", 12), ("val", 5)):
    for cls in ("a", "b"):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        size = (40 + i, 50 - i)
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(d / f"{i}.jpg")
  return root


@pytest.mark.parametrize("mode", ["inception", "resize_crop"])
def test_streaming_batches_deterministic_and_resumable(jpeg_folder, mode):
  files, labels, classes = streaming.list_image_folder(str(jpeg_folder), "train")
  assert classes == ["a", "b"] and len(files) == 24
  mesh = parallel.make_mesh()
  make = lambda: streaming.StreamingTrainBatches(files, labels, 4, seed=1, mesh=mesh, mode=mode, resize=36, crop=32)
  a = [np.asarray(b["image"]) for _, b in make().iterate(0, 8)]
  b = [np.asarray(b["image"]) for _, b in make().iterate(0, 8)]
  assert a[0].shape == (4, 32, 32, 3) and a[0].dtype == np.uint8
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  resumed = [np.asarray(b["image"]) for _, b in make().iterate(5, 8)]
  for x, y in zip(a[5:], resumed):
    np.testing.assert_array_equal(x, y)
  labels_epoch0 = np.concatenate([np.asarray(b["label"]) for _, b in make().iterate(0, 6)])
  assert sorted(labels_epoch0) == sorted(labels)


def test_streaming_eval_covers_every_image_once(jpeg_folder):
  files, labels, _ = streaming.list_image_folder(str(jpeg_folder), "val")
  batches = list(streaming.streaming_eval_batches(files, labels, 4, parallel.make_mesh(), resize=36, crop=32))
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert mask.sum() == 10 and len(mask) == 12 and batches[0]["image"].shape == (4, 32, 32, 3)


def test_missing_split(jpeg_folder):
  with pytest.raises(DatasetError, match="not found"):
    streaming.list_image_folder(str(jpeg_folder), "test")


def test_trainer_streams_a_jpeg_folder(jpeg_folder, tmp_path):
  from classic_cnns import train
  from classic_cnns.config import base_config, validate_config
  c = base_config()
  c.model.name, c.model.num_classes = "lenet5", 2
  c.data.source, c.data.path = "folder", str(jpeg_folder)
  c.data.streaming.enabled, c.data.streaming.resize, c.data.streaming.crop = True, 36, 32
  c.batch_size, c.num_steps, c.log_every_steps, c.eval_batch_size = 4, 8, 4, 4
  validate_config(c, 1)
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r.final_step == 8 and r.test["count"] == 10  # every val image once
