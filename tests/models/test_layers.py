import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models.layers import (AttnSpec, LocalResponseNorm, NormSpec, make_attention,
                                        make_norm)

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


@pytest.mark.parametrize("groups,rows,channels", [(1, 4096, 16), (4, 512, 8), (16, 128, 32)])
def test_batch_norm_train_custom_gradient_matches_autodiff_of_the_formula(groups, rows, channels):
  """layers.batch_norm_train (channel sums as dots, closed-form backward) == autodiff of the textbook
  formula, per group of rows, for the output and for the gradients of x, scale and bias."""
  from classic_cnns.models.layers import batch_norm_train

  def textbook(x, scale, bias, eps=1e-5):
    mean = x.mean(1, keepdims=True)
    var = jnp.maximum((x * x).mean(1, keepdims=True) - mean ** 2, 0.0)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias

  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1.5, 2.0, (groups, rows, channels)), jnp.float32)
  scale = jnp.asarray(rng.normal(1.0, 0.3, (channels,)), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.3, (channels,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  y, mean, var = batch_norm_train(x, scale, bias)
  np.testing.assert_allclose(y, textbook(x, scale, bias), atol=2e-5)
  np.testing.assert_allclose(mean, x.mean(1), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, x.var(1), rtol=1e-4)
  got = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(batch_norm_train(*a)[0]) * w), (0, 1, 2)))(x, scale, bias)
  want = jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(textbook(*a)) * w), (0, 1, 2)))(x, scale, bias)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, atol=2e-5 * float(jnp.abs(r).max()))


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_group_norm_custom_gradient_matches_autodiff_of_the_formula(groups):
  from classic_cnns.models.layers import group_norm

  def textbook(x, scale, bias, eps=1e-5):
    xg = x.reshape(x.shape[0], x.shape[1], groups, -1)
    mean = xg.mean((1, 3), keepdims=True)
    var = jnp.maximum((xg * xg).mean((1, 3), keepdims=True) - mean ** 2, 0.0)
    return ((xg - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape) * scale + bias

  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(0.7, 1.5, (3, 64, 16)), jnp.float32)
  scale = jnp.asarray(rng.normal(1.0, 0.3, (16,)), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.3, (16,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  np.testing.assert_allclose(group_norm(x, scale, bias, groups), textbook(x, scale, bias), atol=2e-5)
  got = jax.grad(lambda *a: jnp.sum(jnp.sin(group_norm(*a, groups)) * w), (0, 1, 2))(x, scale, bias)
  want = jax.grad(lambda *a: jnp.sum(jnp.sin(textbook(*a)) * w), (0, 1, 2))(x, scale, bias)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, atol=2e-5 * float(jnp.abs(r).max()))


def test_ghost_batchnorm_normalises_each_slice_separately():
  (y, _), _ = _apply(NormSpec("batch", virtual_batch_size=2), X)
  for g in range(4):
    sl = y[2 * g:2 * g + 2]
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
    denom = (2.0 + 1e-4 * np.sum(xn[..., lo:hi + 1] ** 2, axis=-1)) ** 0.75
    np.testing.assert_allclose(y[..., c], xn[..., c] / denom, rtol=1e-5)


@pytest.mark.parametrize("kernel,padding", [(1, "SAME"), (3, ((1, 1), (1, 1))), (7, ((3, 3), (3, 3))),
                                            (3, "VALID"), (3, ((0, 2), (1, 0)))])
def test_conv_for_loops_matches_lax_values_and_gradients(kernel, padding):
  from classic_cnns.models.layers import conv_for_loops
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (3, 9, 8, 5))
  k = jax.random.normal(kk, (kernel, kernel, 5, 4))
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
  ours = lambda x, k: conv_for_loops(x, k, (1, 1), padding)
  np.testing.assert_allclose(jax.jit(ours)(x, k), jax.jit(ref)(x, k), rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(kd, jax.eval_shape(ref, x, k).shape)
  grads = lambda f: jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k) * dy), argnums=(0, 1)))(x, k)
  for got, want in zip(grads(ours), grads(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="stride-1"):
    conv_for_loops(x, k, (2, 2), padding)


@pytest.mark.parametrize("shape,window,strides,padding", [
    ((2, 9, 9, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet / DenseNet stem pool
    ((2, 8, 8, 4), (2, 2), (2, 2), "VALID"),  # VGG
    ((2, 13, 13, 2), (3, 3), (2, 2), "VALID"),  # AlexNet's overlapping pool
    ((1, 7, 7, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),  # Inception's pool branch
    ((1, 10, 10, 2), (3, 3), (2, 2), ((0, 1), (0, 1))),  # GoogLeNet ceil_mode padding
    ((1, 11, 10, 2), (2, 3), (3, 2), ((1, 0), (0, 2))),  # anything else: stride 3, uneven window/padding
])
def test_max_pool_values_and_gradient_equal_flax(shape, window, strides, padding):
  """layers.max_pool: nn.max_pool's values; the gradient routes each output's cotangent to the same
  element as JAX's select-and-scatter (the first maximum), checked with many ties (integers)."""
  from classic_cnns.models.layers import max_pool
  rng = np.random.default_rng(0)
  for x in (rng.normal(size=shape), rng.integers(-2, 3, size=shape)):  # integers: ties everywhere
    x = jnp.asarray(x, jnp.float32)
    y_ref, vjp_ref = jax.vjp(lambda x: nn.max_pool(x, window, strides, padding), x)
    y, vjp = jax.vjp(lambda x: max_pool(x, window, strides, padding), x)
    np.testing.assert_array_equal(y, y_ref)
    dy = jnp.asarray(2.0 ** rng.integers(0, 20, size=y.shape), jnp.float32)  # distinct powers: misrouting shows
    np.testing.assert_array_equal(vjp(dy)[0], vjp_ref(dy)[0])
