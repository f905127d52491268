import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models.layers import (
  AttnSpec,
  LocalResponseNorm,
  NormSpec,
  make_attention,
  make_norm,
)

X = jax.random.normal(jax.random.PRNGKey(0), (8, 4, 4, 64)) * 3 + 1


def _apply(norm, x, train=True):
  m = make_norm(norm)
  v = m.init(jax.random.PRNGKey(0), x, train)
  return m.apply(v, x, train, mutable=["batch_stats"]), v


def test_batchnorm_matches_flax_in_train_and_eval():
  (y, upd), v = _apply("batch", X)
  ref = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  rv = ref.init(jax.random.PRNGKey(0), X)
  ry, rupd = ref.apply(rv, X, mutable=["batch_stats"])
  np.testing.assert_allclose(y, ry, atol=1e-5)
  np.testing.assert_allclose(upd["batch_stats"]["mean"], rupd["batch_stats"]["mean"], atol=1e-5)


def test_ghost_batchnorm_normalises_each_slice_separately():
  (y, _), _ = _apply(NormSpec("batch", virtual_batch_size=2), X)
  for g in range(4):
    sl = y[2 * g : 2 * g + 2]
    np.testing.assert_allclose(sl.mean(axis=(0, 1, 2)), 0, atol=1e-4)
  (y_global, _), _ = _apply("batch", X)
  assert not np.allclose(y, y_global, atol=1e-3)
  (y_full, _), _ = _apply(NormSpec("batch", virtual_batch_size=8), X)
  np.testing.assert_allclose(y_full, y_global, atol=1e-6)


@pytest.mark.parametrize("groups", [32, 1])
def test_groupnorm_matches_flax(groups):
  (y, _), _ = _apply(NormSpec("group", groups=groups), X)
  ref = nn.GroupNorm(num_groups=groups, epsilon=1e-5)
  np.testing.assert_allclose(y, ref.apply(ref.init(jax.random.PRNGKey(0), X), X), atol=1e-5)


@pytest.mark.parametrize("kind", ["batch", "group", "layer", "instance"])
def test_all_norms_have_same_parameters(kind):
  _, v = _apply(kind, X)
  assert jax.tree.map(jnp.shape, v["params"]) == {"scale": (64,), "bias": (64,)}


def test_instance_norm_per_example_per_channel():
  (y, _), _ = _apply("instance", X)
  np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-4)
  np.testing.assert_allclose(y.std(axis=(1, 2)), 1, atol=1e-2)


def test_unknown_norm_and_attention_rejected():
  with pytest.raises(ValueError, match="unknown norm"):
    NormSpec("batchy")
  with pytest.raises(ValueError, match="unknown attention"):
    AttnSpec("sk")


def test_se_and_cbam_parameter_counts():
  for kind, expected in [("se", 2 * 64 * 4 + 4 + 64), ("cbam", 2 * 64 * 4 + 4 + 64 + 98 + 2)]:
    m = make_attention(kind)
    v = m.init(jax.random.PRNGKey(0), X, True)
    assert sum(p.size for p in jax.tree.leaves(v["params"])) == expected


def test_lrn_matches_formula():
  x = jax.random.uniform(jax.random.PRNGKey(1), (1, 2, 2, 7))
  y = LocalResponseNorm().apply({}, x)
  xn = np.asarray(x)
  for c in range(7):
    lo, hi = max(0, c - 2), min(6, c + 2)
    denom = (2.0 + 1e-4 * np.sum(xn[..., lo : hi + 1] ** 2, axis=-1)) ** 0.75
    np.testing.assert_allclose(y[..., c], xn[..., c] / denom, rtol=1e-5)
