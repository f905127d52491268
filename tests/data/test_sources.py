import os

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
  arrays = {"x_train": rng.integers(0, 255, (n_train,) + hw, dtype=np.uint8),
            "y_train": rng.integers(0, 3, n_train), "x_test": rng.integers(0, 255, (n_test,) + hw, dtype=np.uint8),
            "y_test": rng.integers(0, 3, n_test)}
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
