import os
import re

import numpy as np
import pytest

from classic_cnns.data import common, sources
from classic_cnns.data.sources import DatasetError


def test_embedded_sample_is_real_mnist_and_small():
  ds = sources.load_embedded()
  assert ds.train.images.shape == (10_000, 28, 28, 1) and ds.test.images.shape == (2_000, 28, 28, 1)
  assert ds.train.images.dtype == np.uint8 and ds.num_classes == 10
  assert os.path.getsize(sources.EMBEDDED_PATH) < 2.2e6
  counts = np.bincount(ds.train.labels, minlength=10)
  assert counts.min() > 800  # every digit present in roughly MNIST proportions


def test_embedded_sample_is_reproducible_from_mnist(shared_datasets, tmp_path):
  from classic_cnns.data.make_embedded_sample import make_sample

  out = tmp_path / "s.npz"
  make_sample(os.path.join(shared_datasets, "mnist.npz"), str(out))
  a, b = np.load(out), np.load(sources.EMBEDDED_PATH)
  for k in ("x_train", "y_train", "x_test", "y_test"):
    np.testing.assert_array_equal(a[k], b[k])


def _write_npz(path, n_train=64, n_test=20, hw=(8, 8), drop=None):
  rng = np.random.default_rng(0)
  arrays = {
    "x_train": rng.integers(0, 255, (n_train,) + hw, dtype=np.uint8),
    "y_train": rng.integers(0, 3, n_train),
    "x_test": rng.integers(0, 255, (n_test,) + hw, dtype=np.uint8),
    "y_test": rng.integers(0, 3, n_test),
  }
  if drop:
    arrays.pop(drop)
  np.savez(path, **arrays)
  return arrays


def test_npz_source(tmp_path):
  arrays = _write_npz(tmp_path / "d.npz")
  ds = sources.load_npz(str(tmp_path / "d.npz"))
  assert ds.train.images.shape == (64, 8, 8, 1) and ds.num_classes == 3
  np.testing.assert_array_equal(ds.test.labels, arrays["y_test"])


def test_npz_errors_are_one_line(tmp_path):
  _write_npz(tmp_path / "bad.npz", drop="y_test")
  with pytest.raises(DatasetError, match="lacks the keys y_test"):
    sources.load_npz(str(tmp_path / "bad.npz"))
  with pytest.raises(DatasetError, match="not found"):
    sources.load_npz(str(tmp_path / "missing.npz"))
  (tmp_path / "junk.npz").write_bytes(b"not a zip")
  with pytest.raises(DatasetError, match="cannot read"):
    sources.load_npz(str(tmp_path / "junk.npz"))


def test_hold_out_validation_deterministic_and_disjoint():
  ds = sources.load_embedded()
  a = sources.hold_out_validation(ds, 1000, seed=3)
  b = sources.hold_out_validation(ds, 1000, seed=3)
  c = sources.hold_out_validation(ds, 1000, seed=4)
  assert len(a.train) == 9000 and len(a.val) == 1000
  np.testing.assert_array_equal(a.val.images, b.val.images)
  assert not np.array_equal(a.val.images, c.val.images)
  with pytest.raises(DatasetError):
    sources.hold_out_validation(ds, 10_000, seed=0)


def test_image_folder(tmp_path):
  from PIL import Image

  rng = np.random.default_rng(0)
  for split, n in (("train", 3), ("test", 2)):
    for cls in ("cat", "dog"):
      d = tmp_path / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)).save(d / f"{i}.png")
  ds = sources.load_folder(str(tmp_path))
  assert ds.class_names == ["cat", "dog"] and ds.train.images.shape == (6, 6, 6, 3)
  assert list(ds.train.labels) == [0, 0, 0, 1, 1, 1] and len(ds.test) == 4


def test_train_only_folder_needs_validation_hold_out(tmp_path):
  from PIL import Image
  import ml_collections

  for cls in ("a", "b"):
    (tmp_path / "train" / cls).mkdir(parents=True)
    for i in range(5):
      Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(tmp_path / "train" / cls / f"{i}.jpg")
  cfg = ml_collections.ConfigDict({"source": "folder", "path": str(tmp_path), "val_size": 0})
  with pytest.raises(DatasetError, match="only a train split"):
    sources.load_dataset(cfg, seed=0)
  cfg.val_size = 4
  ds = sources.load_dataset(cfg, seed=0)
  assert ds.test is None and len(ds.val) == 4 and len(ds.train) == 6


def test_image_folder_without_images(tmp_path):
  (tmp_path / "train" / "cat").mkdir(parents=True)
  with pytest.raises(DatasetError, match="no images"):
    sources.load_folder(str(tmp_path))


def test_tfds_source_with_mock_data(monkeypatch):
  tfds = pytest.importorskip("tensorflow_datasets")
  monkeypatch.setattr(common, "download_host_reachable", lambda timeout=5.0: True)
  with tfds.testing.mock_data(num_examples=40):
    ds = sources.load_tfds("mnist")
  assert ds.train.images.shape == (40, 28, 28, 1) and ds.train.images.dtype == np.uint8
  assert ds.num_classes == 10 and len(ds.test) == 40


def test_tfds_offline_is_one_clear_error(tmp_path):
  pytest.importorskip("tensorflow_datasets")
  with pytest.raises(DatasetError, match="use local data instead"):
    sources.load_tfds("mnist", data_dir=str(tmp_path), download=False)
  with pytest.raises(DatasetError, match="unknown TFDS dataset"):
    sources.load_tfds("no_such_dataset_xyz", data_dir=str(tmp_path))


def test_truncated_or_corrupt_npz_is_one_line(tmp_path):
  _write_npz(tmp_path / "d.npz")
  data = (tmp_path / "d.npz").read_bytes()
  for cut in (len(data) // 10, len(data) // 2, len(data) - 30):
    (tmp_path / "t.npz").write_bytes(data[:cut])
    with pytest.raises(DatasetError, match="truncated or corrupt") as e:
      sources.load_npz(str(tmp_path / "t.npz"))
    assert "\n" not in str(e.value) and str(tmp_path / "t.npz") in str(e.value)


@pytest.mark.parametrize(
  "change,match",
  [
    (
      {"y_train": np.array([0, 1, -1] + [0] * 61)},
      "labels must be in [0, num_classes), got -1 at index 2",
    ),
    (
      {"y_test": np.array([0.0, 1.5] + [0.0] * 18)},
      "labels must be integer class indices, got 1.5 at index 1",
    ),
    ({"y_test": np.array([0.0, np.nan] + [0.0] * 18)}, "labels must be integer class indices"),
    ({"y_train": np.array(["a"] * 64)}, "labels must be integer class indices, got dtype <U1"),
    (
      {"x_test": np.zeros((0, 8, 8), np.uint8), "y_test": np.zeros((0,), np.int64)},
      "test: the split is empty",
    ),
    (
      {"x_train": np.zeros((0, 8, 8), np.uint8), "y_train": np.zeros((0,), np.int64)},
      "train: the split is empty",
    ),
    (
      {"x_test": np.zeros((20, 9, 8), np.uint8)},
      "images are 9x8x1 but the training images are 8x8x1",
    ),
    ({"x_train": np.zeros((64, 8, 8), np.float32)}, "expected uint8 images"),
  ],
)
def test_bad_npz_contents_are_one_line(tmp_path, change, match):
  arrays = _write_npz(tmp_path / "d.npz")
  arrays.update(change)
  np.savez(tmp_path / "d.npz", **arrays)
  with pytest.raises(DatasetError, match=re.escape(match)):
    sources.load_npz(str(tmp_path / "d.npz"))


def test_float_labels_with_whole_values_are_class_indices(tmp_path):
  arrays = _write_npz(tmp_path / "d.npz")
  np.savez(tmp_path / "d.npz", **{**arrays, "y_train": arrays["y_train"].astype(np.float32)})
  ds = sources.load_npz(str(tmp_path / "d.npz"))
  np.testing.assert_array_equal(ds.train.labels, arrays["y_train"])


def test_check_for_training(tmp_path):
  _write_npz(tmp_path / "d.npz")
  ds = sources.load_npz(str(tmp_path / "d.npz"))
  sources.check_for_training(ds, batch_size=64, num_classes=3)
  with pytest.raises(DatasetError, match="config.batch_size=65 exceeds the 64 training examples"):
    sources.check_for_training(ds, batch_size=65, num_classes=3)
  with pytest.raises(DatasetError, match=re.escape("is not below config.model.num_classes=2")):
    sources.check_for_training(ds, batch_size=8, num_classes=2)


def test_image_folder_with_a_corrupt_image_names_it(tmp_path):
  from PIL import Image

  for split in ("train", "test"):
    (tmp_path / split / "cat").mkdir(parents=True)
    for i in range(2):
      Image.fromarray(np.full((6, 6, 3), i, np.uint8)).save(tmp_path / split / "cat" / f"{i}.jpg")
  bad = tmp_path / "train" / "cat" / "1.jpg"
  bad.write_bytes(bad.read_bytes()[:100])
  with pytest.raises(DatasetError, match=f"cannot decode image {re.escape(str(bad))}: "):
    sources.load_folder(str(tmp_path))
  bad.write_text("not an image")
  with pytest.raises(DatasetError, match=f"cannot decode image {re.escape(str(bad))}: "):
    sources.load_folder(str(tmp_path))


def test_streamed_folder_with_a_corrupt_image_stops_with_its_path(tmp_path):
  """Streamed files are decoded as they are read: a bad one is a DataReadError (one line, its path,
  the step), not a TensorFlow traceback."""
  pytest.importorskip("tensorflow")
  from PIL import Image
  from classic_cnns import parallel
  from classic_cnns.data import streaming

  rng = np.random.default_rng(0)
  for cls in ("a", "b"):
    (tmp_path / "train" / cls).mkdir(parents=True)
    for i in range(4):
      Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
        tmp_path / "train" / cls / f"{i}.jpg"
      )
  bad = tmp_path / "train" / "b" / "2.jpg"
  bad.write_bytes(bad.read_bytes()[:150])
  files, labels, _ = streaming.list_image_folder(str(tmp_path), "train")
  batches = streaming.StreamingTrainBatches(
    files, labels, 4, 0, parallel.make_mesh(), mode="resize_crop", resize=16, crop=16
  )
  with pytest.raises(
    streaming.DataReadError, match=f"cannot read image {re.escape(str(bad))} \\(training step"
  ) as e:
    for _ in batches.iterate(0, 4):
      pass
  assert "\n" not in str(e.value) and e.value.exit_status == 1
  with pytest.raises(
    streaming.DataReadError, match=f"{re.escape(str(bad))} \\(evaluation batch 2\\)"
  ):
    list(streaming.streaming_eval_batches(files, labels, 4, None, resize=16, crop=16))
