import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import parallel
from classic_cnns.data import augment, pipeline
from classic_cnns.data.pipeline import ArraySplit as Split


def _split(n=100):
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 1), np.uint8)
  return Split(images, np.arange(n, dtype=np.int32))


@pytest.mark.parametrize("on_device", [True, False])
def test_train_order_is_a_function_of_seed_and_step(on_device):
  mesh = parallel.make_mesh()
  a = pipeline.TrainBatches(_split(), 16, seed=1, mesh=mesh, on_device=on_device)
  b = pipeline.TrainBatches(_split(), 16, seed=1, mesh=mesh, on_device=not on_device)
  assert a.steps_per_epoch == 6
  seen = np.concatenate([np.asarray(a.batch(s)["label"]) for s in range(6)])
  assert len(set(seen)) == 96  # no repeats within an epoch
  for step in (0, 5, 6, 13):  # resuming at any step gives the same batch, either path
    np.testing.assert_array_equal(a.batch(step)["label"], b.batch(step)["label"])
    np.testing.assert_array_equal(a.batch(step)["image"][:, 0, 0, 0], a.batch(step)["label"])
  assert not np.array_equal(a.indices(0), a.indices(6))  # new permutation each epoch
  c = pipeline.TrainBatches(_split(), 16, seed=2, mesh=mesh, on_device=on_device)
  assert not np.array_equal(a.indices(0), c.indices(0))


def test_eval_covers_every_example_once_with_mask():
  mesh = parallel.make_mesh()
  labels, masks = [], []
  for b in pipeline.eval_batches(_split(37), 16, mesh):
    assert b["image"].shape[0] == 16
    labels.append(np.asarray(b["label"]))
    masks.append(np.asarray(b["mask"]))
  labels, masks = np.concatenate(labels), np.concatenate(masks)
  assert masks.sum() == 37
  assert sorted(labels[masks > 0]) == list(range(37))


def test_preprocess_pad_normalise_and_augment():
  x = jnp.full((4, 28, 28, 1), 255, jnp.uint8)
  cfg = augment.Preprocess(pad_to=32, mean=(127.5,), std=(127.5,))
  y = augment.preprocess(x, cfg, train=False, rng=None)
  assert y.shape == (4, 32, 32, 1)
  assert float(y[0, 16, 16, 0]) == 1.0 and float(y[0, 0, 0, 0]) == 0.0
  img = jnp.arange(4 * 8 * 8 * 3, dtype=jnp.float32).reshape(4, 8, 8, 3)
  crop = augment.random_pad_crop(img, jax.random.PRNGKey(0), 2)
  assert crop.shape == img.shape
  again = augment.random_pad_crop(img, jax.random.PRNGKey(0), 2)
  np.testing.assert_array_equal(crop, again)
  flipped = augment.random_flip(img, jax.random.PRNGKey(3))
  for i in range(4):
    assert np.array_equal(flipped[i], img[i]) or np.array_equal(flipped[i], img[i, :, ::-1])
