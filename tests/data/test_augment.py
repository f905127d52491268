"""The in-jit augmentation ops: shapes, value ranges, seed determinism; statistics (PCA, ZCA, GCN,
per-pixel mean) on tiny synthetic sets; Preprocess hashing under jit; building from the config."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.config import ConfigError, base_config
from classic_cnns.data import augment
from classic_cnns.data.sources import Dataset, Split

RNG = np.random.default_rng(0)
IMAGES = jnp.asarray(RNG.integers(0, 256, (6, 20, 24, 3)), jnp.float32)  # non-square on purpose

# name -> (op(x, key), expected output shape, (min, max) allowed)
OPS = {
  "flip": (lambda x, k: augment.random_flip(x, k), (6, 20, 24, 3), (0, 255)),
  "pad_crop": (lambda x, k: augment.random_pad_crop(x, k, 4), (6, 20, 24, 3), (0, 255)),
  "resize_crop": (lambda x, k: augment.resize_random_crop(x, k, 16, 18), (6, 16, 16, 3), (0, 255)),
  "inception": (lambda x, k: augment.random_resized_crop(x, k, 16), (6, 16, 16, 3), (0, 255)),
  "scale_jitter": (
    lambda x, k: augment.scale_jitter_crop(x, k, 16, 18.0, 30.0),
    (6, 16, 16, 3),
    (0, 255),
  ),
  "color_jitter": (
    lambda x, k: augment.color_jitter(x, k, 0.4, 0.4, 0.4),
    (6, 20, 24, 3),
    (0, 255),
  ),
  "pca_lighting": (
    lambda x, k: augment.pca_lighting(x, k, 0.1, (0.2, 0.02, 0.005), np.eye(3)),
    (6, 20, 24, 3),
    (-40, 295),
  ),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_shape_range_and_seed_determinism(name):
  op, shape, (lo, hi) = OPS[name]
  f = jax.jit(op)
  a = f(IMAGES, jax.random.PRNGKey(1))
  assert a.shape == shape and a.dtype == jnp.float32
  assert lo - 1e-3 <= float(a.min()) and float(a.max()) <= hi + 1e-3
  np.testing.assert_array_equal(a, f(IMAGES, jax.random.PRNGKey(1)))  # same key, same output
  assert not np.array_equal(a, f(IMAGES, jax.random.PRNGKey(2)))  # another key, another output
  per_example = [np.array_equal(a[0], a[i]) for i in range(1, 6)]
  if name != "flip":  # per-example randomness (the same image gets different draws)
    same = f(jnp.broadcast_to(IMAGES[:1], IMAGES.shape), jax.random.PRNGKey(1))
    assert not all(np.allclose(same[0], same[i]) for i in range(1, 6))
  assert not all(per_example)


def test_crops_are_exact_where_no_resampling_is_needed():
  x, sq, k = IMAGES, IMAGES[:, :, :20], jax.random.PRNGKey(0)
  win = (jnp.array([0.0, 2.0] * 3), jnp.array([1.0, 4.0] * 3), jnp.full(6, 8.0), jnp.full(6, 8.0))

  @jax.jit
  def views(x, sq, k, win):
    return (
      augment.crop_resize(x, (8, 10), (3.0, 5.0, 8.0, 10.0)),  # same window for all
      augment.crop_resize(x, (8, 8), win),  # per-example windows
      augment.resize_random_crop(sq, k, 20, 20),  # resize to its own size, crop all of it
      augment.scale_jitter_crop(sq, k, 20, 20.0, 20.0),
      augment.random_resized_crop(sq, k, 20, (1.0, 1.0), (1.0, 1.0)),  # area 100 %, aspect 1
      augment.random_resized_crop(x, k, 20, (1.0, 1.0), (1.0, 1.0)),
    )  # no draw fits: fallback

  same, per_example, resize, jitter, whole, fallback = views(x, sq, k, win)
  np.testing.assert_allclose(
    same, x[:, 3:11, 5:15], atol=1e-4
  )  # an integer window at scale 1 = a slice
  np.testing.assert_allclose(per_example[1], x[1, 2:10, 4:12], atol=1e-4)
  for out in (resize, jitter, whole):
    np.testing.assert_allclose(out, sq, atol=1e-4)
  # torchvision's fallback: the centred whole image with its aspect clamped into the range
  np.testing.assert_allclose(fallback, x[:, :, 2:22], atol=1e-4)


def test_eval_views_and_ten_crop_windows():
  x = IMAGES  # 20 x 24
  centre, resized_crop, resized = jax.jit(
    lambda x: (
      augment.eval_view(x, 0, 16),
      augment.eval_view(x, 40, 32),
      augment.eval_view(x, 40, 0),
    )
  )(x)
  np.testing.assert_allclose(centre, x[:, 2:18, 4:20], atol=1e-4)
  assert resized_crop.shape == (6, 32, 32, 3) and resized.shape == (6, 40, 48, 3)
  assert augment.eval_view(x, 0, 0) is x
  w = augment.ten_crop_windows(20, 24, 0, 16)
  np.testing.assert_array_equal(w[:, :2], [[0, 0], [0, 8], [4, 0], [4, 8], [2, 4]])
  w = augment.ten_crop_windows(200, 240, 256, 224)  # resized to 256 x 307
  np.testing.assert_allclose(w[3, :2] * 256 / 200, [32, 83], atol=1e-4)
  np.testing.assert_allclose(w[:, 2], 224 * 200 / 256)
  with pytest.raises(ValueError):
    augment.ten_crop_windows(20, 24, 0, 21)


def test_color_jitter_semantics():
  grey = jnp.broadcast_to(IMAGES[..., :1], IMAGES.shape)
  np.testing.assert_allclose(
    augment.color_jitter(grey, jax.random.PRNGKey(0), saturation=0.9), grey, atol=1e-3
  )
  b = augment.color_jitter(IMAGES, jax.random.PRNGKey(0), brightness=0.5)
  ratio = np.asarray(b / jnp.maximum(IMAGES, 1))[(IMAGES >= 1) & (IMAGES < 100)]
  assert 0.5 - 1e-4 <= ratio.min() and ratio.max() <= 1.5 + 1e-4
  np.testing.assert_array_equal(
    augment.color_jitter(IMAGES, jax.random.PRNGKey(0)), IMAGES
  )  # all off


def test_pca_statistics_and_lighting_shift():
  cov = np.array([[0.04, 0.03, 0.02], [0.03, 0.04, 0.03], [0.02, 0.03, 0.04]])
  pixels = RNG.multivariate_normal([0.5, 0.5, 0.5], cov, size=(200, 16, 16))
  images = np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8)
  val, vec = augment.pca_rgb(images)
  true_val, true_vec = np.linalg.eigh(cov)
  np.testing.assert_allclose(val, true_val[::-1], rtol=0.05, atol=2e-4)
  assert val[0] >= val[1] >= val[2] >= 0
  np.testing.assert_allclose(np.abs(np.asarray(vec)[:, 0]), np.abs(true_vec[:, -1]), atol=0.02)
  x = jnp.full((4, 5, 5, 3), 100.0)
  y = augment.pca_lighting(x, jax.random.PRNGKey(0), 0.1, val, vec)
  shift = np.asarray(y - x)
  assert np.allclose(
    shift, shift[:, :1, :1, :]
  )  # one colour shift per image, the same at every pixel
  alpha = 0.1 * np.asarray(jax.random.normal(jax.random.PRNGKey(0), (4, 3)))
  np.testing.assert_allclose(
    shift[:, 0, 0], 255 * (alpha * np.array(val)) @ np.array(vec).T, rtol=1e-4, atol=1e-5
  )


def test_gcn_and_zca_whitening():
  base = RNG.standard_normal((3000, 48)) @ RNG.standard_normal((48, 48)) * 12 + 128
  images = np.clip(base, 0, 255).astype(np.uint8).reshape(3000, 4, 4, 3)
  g = augment.global_contrast_normalize(jnp.asarray(images[:5], jnp.float32), 55.0)
  np.testing.assert_allclose(np.asarray(g).reshape(5, -1).mean(1), 0, atol=1e-4)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(g).reshape(5, -1), axis=1), 55.0, rtol=1e-5)
  np.testing.assert_allclose(
    np.asarray(g).reshape(5, -1),
    augment._gcn_np(images[:5].reshape(5, -1).astype(np.float32), 55.0),
    rtol=1e-4,
    atol=1e-4,
  )
  w, m = augment.zca_fit(images, gcn=0.0, bias=1e-6, chunk=700)
  np.testing.assert_allclose(w, w.T, atol=1e-5)  # ZCA: the symmetric whitening matrix
  white = (images.reshape(3000, -1).astype(np.float64) - m) @ w
  np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(48), atol=2e-3)
  # in jit, through Preprocess (GCN then ZCA with the fitted constants)
  w2, m2 = augment.zca_fit(images, gcn=55.0, bias=0.1)
  prep = augment.Preprocess(gcn=55.0, zca=augment.FrozenArray(w2), zca_mean=augment.FrozenArray(m2))
  out = jax.jit(lambda x: augment.preprocess(x, prep, train=False, rng=None))(images[:8])
  ref = (augment._gcn_np(images[:8].reshape(8, -1).astype(np.float32), 55.0) - m2) @ w2
  np.testing.assert_allclose(np.asarray(out).reshape(8, -1), ref, rtol=1e-3, atol=1e-3)
  with pytest.raises(ValueError, match="CIFAR-size"):
    augment.zca_fit(np.zeros((2, 128, 128, 3), np.uint8))


def test_pixel_mean_and_normalisation_order():
  images = RNG.integers(0, 256, (11, 4, 5, 3)).astype(np.uint8)
  pm = augment.pixel_mean(images, chunk=4)
  np.testing.assert_allclose(pm, images.mean(0))
  prep = augment.Preprocess(pixel_mean=augment.FrozenArray(pm), std=(2.0, 2.0, 2.0), pad_to=6)
  out = augment.preprocess(jnp.asarray(images), prep, train=False, rng=None)
  assert out.shape == (11, 6, 6, 3)
  np.testing.assert_allclose(out[:, 1:5, :5], (images - pm) / 2.0, rtol=1e-5, atol=1e-5)
  assert float(jnp.abs(out[:, 0]).max()) == 0.0  # the pad is the (zero) mean


def test_preprocess_hashable_and_jit():
  w = RNG.standard_normal((12, 12))
  p1 = augment.Preprocess(
    zca=augment.FrozenArray(w), zca_mean=augment.FrozenArray(np.zeros(12)), flip=True
  )
  p2 = augment.Preprocess(
    zca=augment.FrozenArray(w.copy()), zca_mean=augment.FrozenArray(np.zeros(12)), flip=True
  )
  p3 = dataclasses.replace(p1, zca=augment.FrozenArray(w + 1))
  assert hash(p1) == hash(p2) and p1 == p2 and p1 != p3
  f = jax.jit(lambda x, k, p: augment.preprocess(x, p, train=True, rng=k), static_argnums=2)
  x = jnp.asarray(RNG.integers(0, 256, (3, 2, 2, 3)), jnp.uint8)
  np.testing.assert_allclose(f(x, jax.random.PRNGKey(0), p1), f(x, jax.random.PRNGKey(0), p2))
  assert not np.allclose(f(x, jax.random.PRNGKey(0), p1), f(x, jax.random.PRNGKey(0), p3))
  with pytest.raises(ValueError):
    p1.zca.array[0, 0] = 1.0  # read-only


def _ds(h=20, w=24, c=3, n=64):
  images = RNG.integers(0, 256, (n, h, w, c)).astype(np.uint8)
  return Dataset(
    "synthetic",
    Split(images, np.arange(n, dtype=np.int32) % 10),
    Split(images[:8], np.zeros(8, np.int32)),
    10,
    [str(i) for i in range(10)],
  )


def _data(**kw):
  c = base_config()
  c.data.update_from_flattened_dict(kw)
  return c.data


def test_preprocess_config_full_pipeline_train_and_eval(tmp_path):
  data = _data(
    **{
      "augment.crop": "inception",
      "augment.crop_size": 16,
      "augment.flip": True,
      "augment.pca_lighting": 0.1,
      "augment.brightness": 0.3,
      "augment.contrast": 0.3,
      "augment.saturation": 0.3,
      "normalize": "pixel",
    }
  )
  ds = _ds()
  prep = augment.preprocess_config(data, ds, save_to=str(tmp_path))
  assert (prep.eval_crop, prep.eval_resize) == (16, 18)  # 16 * 8 / 7
  assert (
    prep.pixel_mean.array.shape == (20, 24, 3) and len(prep.pca_eigval) == 3 and len(prep.std) == 3
  )
  x = jnp.asarray(ds.train.images[:8])
  f = jax.jit(lambda x, k: augment.preprocess(x, prep, train=True, rng=k))
  a = f(x, jax.random.PRNGKey(0))
  assert a.shape == (8, 16, 16, 3) and np.isfinite(np.asarray(a)).all()
  np.testing.assert_array_equal(a, f(x, jax.random.PRNGKey(0)))
  assert not np.array_equal(a, f(x, jax.random.PRNGKey(1)))
  e = augment.preprocess(x, prep, train=False, rng=None)
  assert e.shape == (8, 16, 16, 3)
  # augmentation off: training sees exactly the evaluation view
  off = dataclasses.replace(prep, enabled=False)
  np.testing.assert_allclose(
    augment.preprocess(x, off, train=True, rng=jax.random.PRNGKey(0)), e, atol=1e-6
  )
  loaded, shape = augment.load_preprocess(str(tmp_path / "preprocess.npz"))
  assert loaded == prep and shape == (20, 24, 3)


@pytest.mark.parametrize(
  "crop,extra,eval_resize",
  [("resize", {"augment.resize": 20}, 20), ("scale_jitter", {"augment.scale_min": 18.0}, 18)],
)
def test_preprocess_config_crop_families(crop, extra, eval_resize):
  prep = augment.preprocess_config(
    _data(**{"augment.crop": crop, "augment.crop_size": 16, **extra}), _ds()
  )
  assert prep.eval_resize == eval_resize and prep.train_shape((20, 24, 3)) == prep.eval_shape(
    (20, 24, 3)
  )


def test_preprocess_config_errors_and_metadata_stats():
  with pytest.raises(ConfigError, match="evaluation images"):
    augment.preprocess_config(_data(eval_crop=16), _ds())  # full-image training, cropped evaluation
  with pytest.raises(ConfigError, match="exceeds"):
    augment.preprocess_config(
      _data(**{"augment.crop": "resize", "augment.crop_size": 30, "augment.resize": 28}), _ds()
    )
  with pytest.raises(ConfigError, match="metadata"):
    augment.preprocess_config(_data(stats="metadata", name="nope"), _ds())
  prep = augment.preprocess_config(_data(source="tfds", name="cifar10"), _ds(32, 32))
  from classic_cnns.data import metadata

  assert (prep.mean, prep.std) == metadata.channel_stats("cifar10")
  ds = _ds(32, 32)
  prep = augment.preprocess_config(
    _data(source="tfds", name="cifar10", stats="data", divide_std=False), ds
  )
  assert (
    prep.mean == augment.channel_stats(ds.train.images)[0] and prep.std == ()
  )  # mean subtraction only


def test_default_path_matches_the_previous_preprocessing():
  """Flip + pad-crop + channel normalisation: same keys and ops as before the new options."""
  x = jnp.asarray(RNG.integers(0, 256, (4, 8, 8, 1)), jnp.uint8)
  prep = augment.Preprocess(pad_to=10, flip=True, crop_padding=2, mean=(100.0,), std=(50.0,))
  key = jax.random.PRNGKey(5)
  out = augment.preprocess(x, prep, train=True, rng=key)
  flip_rng, crop_rng = jax.random.split(key)
  ref = augment.pad_to_size((x.astype(jnp.float32) - 100.0) / 50.0, 10)
  ref = augment.random_flip(augment.random_pad_crop(ref, crop_rng, 2), flip_rng)
  np.testing.assert_allclose(out, ref, rtol=1e-6)
