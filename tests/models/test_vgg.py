"""VGG family: counts, Table 1 structure, dense evaluation, BN/dropout modes."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, list_models
from tests.models.helpers import (
  abstract_output,
  abstract_variables,
  assert_exact_param_count,
  forward_backward_is_finite,
  init,
  kernel_calls,
  train_loss_jaxprs,
)

# A narrow VGG (widths / 16, FC 64) so real forwards at 224 stay cheap.
NARROW = dict(widths=(4, 8, 16, 32, 32), fc_features=64, num_classes=10)
VGG_NAMES = [n for n in list_models("vgg")]


@pytest.mark.parametrize("name", VGG_NAMES)
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_variants_registered():
  assert set(VGG_NAMES) == {
    "vgg11",
    "vgg13",
    "vgg16c",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16c_bn",
    "vgg16_bn",
    "vgg19_bn",
    "vgg13_5x5",
    "vgg11_lrn",
  }


def _kernel_sizes(name):
  p = abstract_variables(name)["params"]
  convs = sorted((k for k in p if k.startswith("conv")), key=lambda k: int(k[4:]))
  return [p[k]["kernel"].shape[0] for k in convs]


def test_table1_structure():
  assert _kernel_sizes("vgg11") == [3] * 8
  assert _kernel_sizes("vgg19") == [3] * 16
  # Config C: the third conv of stages 3-5 is 1x1.
  assert _kernel_sizes("vgg16c") == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
  assert _kernel_sizes("vgg13_5x5") == [5] * 5
  p = abstract_variables("vgg16")["params"]
  assert p["fc1"]["kernel"].shape == (7 * 7 * 512, 4096)


def test_output_shape():
  assert abstract_output("vgg16").shape == (2, 1000)
  assert abstract_output("vgg16", 288, dense=True).shape == (2, 1000)


def test_forward_backward_narrow_bn():
  forward_backward_is_finite("vgg11_bn", 32, **NARROW)


@pytest.fixture(scope="module")
def narrow():
  model = create_model("vgg11", **NARROW)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 224, 224, 3))
  return (
    model,
    init(model, jax.random.PRNGKey(0), x[:, :32, :32]),
    x,
  )  # params do not depend on size


def test_dense_equals_fc_at_224(narrow):
  model, v, x = narrow
  fc = model.apply(v, x)
  dense = model.apply(v, x, dense=True)
  np.testing.assert_allclose(dense, fc, rtol=1e-4, atol=1e-5)


def test_dense_larger_input(narrow):
  model, v, _ = narrow
  x = jax.random.normal(jax.random.PRNGKey(3), (2, 256, 256, 3))
  out, state = model.apply(v, x, dense=True, mutable=["intermediates"])
  score_map = state["intermediates"]["score_map"][0]
  assert score_map.shape == (2, 2, 2, 10)  # 256 -> 8x8 stage-5 map -> 2x2 class score map
  np.testing.assert_allclose(out, score_map.mean(axis=(1, 2)), rtol=1e-6)
  assert out.shape == (2, 10) and np.all(np.isfinite(out))
  with pytest.raises(ValueError):
    model.apply(v, jnp.zeros((1, 192, 192, 3)), dense=True)


def test_lrn_variant_differs(narrow):
  model, v, x = narrow
  lrn = create_model("vgg11_lrn", **NARROW)
  assert not np.allclose(model.apply(v, x[:, :32, :32]), lrn.apply(v, x[:, :32, :32]))


def test_train_vs_eval_bn_and_dropout():
  model = create_model("vgg11_bn", **NARROW)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  v = init(model, jax.random.PRNGKey(0), x)
  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))  # eager: one compile per op
  e, st = apply(v, x, train=False, mutable=("batch_stats",))
  jax.tree.map(np.testing.assert_array_equal, st["batch_stats"], v["batch_stats"])
  t1, st1 = apply(
    v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=("batch_stats",)
  )
  t2, _ = apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)}, mutable=("batch_stats",))
  assert not np.allclose(t1, t2)  # dropout active
  changed = jax.tree.leaves(
    jax.tree.map(lambda a, b: bool(np.any(a != b)), st1["batch_stats"], v["batch_stats"])
  )
  assert any(changed)


# --------------------------------------------------------------------------- kernels
def test_train_step_is_plain_autodiff():
  # 32x32: the stage-5 map is 1x1, the adaptive pool spreads it to 7x7.
  for jaxpr in train_loss_jaxprs("vgg16_bn", 32):
    assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


@pytest.mark.parametrize(
  "name,size,kw,expected",
  [
    ("vgg16_bn", 32, {}, {"conv": 13, "max_pool": 5, "batch_norm_train": 13}),
    ("vgg11", 32, dict(norm="group", **NARROW), {"conv": 8, "max_pool": 5, "group_norm": 8}),
    ("vgg11", 224, dict(dense=True, **NARROW), {"conv": 8 + 3, "max_pool": 5}),  # FC1-3 as convs
  ],
)
def test_ops_use_the_given_kernels(name, size, kw, expected):
  assert kernel_calls(name, size, **kw) == expected
