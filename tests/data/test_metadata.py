"""Per-dataset metadata: complete entries, lookups, and the statistics checked against real data
where ../shared/datasets has it."""

import os

import numpy as np
import pytest

from classic_cnns.data import metadata

NAMES = (
  "mnist",
  "fashion_mnist",
  "cifar10",
  "cifar100",
  "svhn_cropped",
  "imagenette",
  "imagenet2012",
)


@pytest.mark.parametrize("name", NAMES)
def test_entries_are_complete(name):
  info = metadata.get(name)
  assert info is not None and info.name == name
  channels = info.image_shape[-1] if info.image_shape else 3
  assert len(info.mean) == len(info.std) == channels
  assert all(0 < m < 255 for m in info.mean) and all(0 < s < 128 for s in info.std)
  assert info.num_train > info.num_test > 0 and info.num_classes >= 10
  if info.class_names is not None:
    assert len(info.class_names) == info.num_classes == len(set(info.class_names))
  if info.image_shape is None:  # ImageNet-like: evaluated on a centre crop
    assert (info.eval_resize, info.eval_crop) == (256, 224)
    assert np.shape(info.pca_eigval) == (3,) and np.shape(info.pca_eigvec) == (3, 3)
    vec = np.array(info.pca_eigvec)
    np.testing.assert_allclose(vec.T @ vec, np.eye(3), atol=2e-3)  # orthonormal eigenvectors


def test_lookups():
  assert metadata.get("cifar10:3.0.2").name == "cifar10"
  assert metadata.get("imagenette/320px-v2").name == "imagenette"
  assert metadata.get("nope") is None
  assert metadata.channel_stats("cifar10", 3) == (
    metadata.get("cifar10").mean,
    metadata.get("cifar10").std,
  )
  assert metadata.channel_stats("cifar10", 1) is None and metadata.channel_stats("nope") is None
  assert metadata.class_names("cifar10")[0] == "airplane"
  assert metadata.class_names("imagenet2012", ["a"]) == ["a"]
  assert "manual_dir" in metadata.get("imagenet2012").note


def test_mnist_statistics_match_the_data(shared_datasets):
  with np.load(os.path.join(shared_datasets, "mnist.npz")) as f:
    x = f["x_train"].astype(np.float64)
  info = metadata.get("mnist")
  assert x.shape[0] == info.num_train and x.shape[1:] == info.image_shape[:2]
  np.testing.assert_allclose((x.mean(), x.std()), (info.mean[0], info.std[0]), atol=1e-3)
