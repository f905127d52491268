"""NiN family: counts, Caffe pooling geometry, GAP vs FC head, dropout / BN modes."""

from __future__ import annotations


import jax
import numpy as np
import pytest

from classic_cnns.models import create_model, list_models
from tests.models.helpers import (
  abstract_intermediates,
  abstract_output,
  abstract_variables,
  assert_exact_param_count,
  count_params,
  forward_backward_is_finite,
  init,
  kernel_calls,
  train_loss_jaxprs,
)


@pytest.mark.parametrize("name", list_models("nin_"))
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_variants_registered():
  assert set(list_models("nin_")) == {"nin_cifar", "nin_cifar_bn", "nin_imagenet"}


def _block_shapes(name, size, **kw):
  return [t[0].shape[1:] for _, t in sorted(abstract_intermediates(name, size, **kw).items())]


def test_caffe_geometry():
  # ceil-mode 3x3/2 pools as Caffe: CIFAR 32 -> 16 -> 8 (GAP over 8x8); ImageNet 54 -> 27 -> 13 -> 6.
  assert _block_shapes("nin_cifar", 32) == [(16, 16, 96), (8, 8, 192), (8, 8, 10)]
  assert _block_shapes("nin_imagenet", 224) == [
    (27, 27, 96),
    (13, 13, 256),
    (6, 6, 384),
    (6, 6, 1000),
  ]


def test_output_shapes():
  assert abstract_output("nin_cifar").shape == (2, 10)
  assert abstract_output("nin_cifar", num_classes=100).shape == (2, 100)
  assert abstract_output("nin_imagenet").shape == (2, 1000)


def test_fc_head_count():
  # Flatten the 8x8x10 class maps + Dense(10): 966,986 + 640*10 + 10.
  assert count_params(abstract_variables("nin_cifar", head="fc")["params"]) == 973_396
  assert abstract_output("nin_cifar", head="fc", head_dropout=0.5).shape == (2, 10)
  with pytest.raises(ValueError):
    abstract_output("nin_cifar", head_dropout=0.5)


def test_forward_backward():
  forward_backward_is_finite("nin_cifar_bn", 32)


def test_gap_is_mean_of_class_maps():
  model = create_model("nin_cifar")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  v = init(model, jax.random.PRNGKey(0), x)
  out, st = model.apply(v, x, mutable=["intermediates"])
  np.testing.assert_allclose(out, st["intermediates"]["block3"][0].mean(axis=(1, 2)), rtol=1e-6)


def test_train_vs_eval():
  model = create_model("nin_cifar_bn")
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 32, 32, 3))
  v = init(model, jax.random.PRNGKey(0), x)
  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))  # eager: one compile per op
  e1, st = apply(v, x, train=False, mutable=("batch_stats",))
  e2, _ = apply(v, x, train=False, mutable=("batch_stats",))
  np.testing.assert_array_equal(e1, e2)
  jax.tree.map(np.testing.assert_array_equal, st["batch_stats"], v["batch_stats"])
  t1, st1 = apply(
    v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=("batch_stats",)
  )
  t2, _ = apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)}, mutable=("batch_stats",))
  assert not np.allclose(t1, t2)
  assert any(
    jax.tree.leaves(
      jax.tree.map(lambda a, b: bool(np.any(a != b)), st1["batch_stats"], v["batch_stats"])
    )
  )
  # The class-map conv keeps its bias and has no norm.
  p = v["params"]["mlpconv3"]
  assert "bias" in p["conv2"] and "norm2" not in p and "bias" not in p["conv1"]


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("name", ["nin_cifar", "nin_cifar_bn"])
def test_train_step_is_plain_autodiff(name):
  for jaxpr in train_loss_jaxprs(name, 32):
    assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


@pytest.mark.parametrize(
  "name,size,kw,expected",
  [
    (
      "nin_cifar_bn",
      32,
      {},
      {"conv": 9, "max_pool": 1, "batch_norm_train": 8},
    ),  # the 2nd pool is AVE
    ("nin_cifar", 32, dict(norm="group"), {"conv": 9, "max_pool": 1, "group_norm": 8}),
    ("nin_imagenet", 224, {}, {"conv": 12, "max_pool": 3}),
  ],
)
def test_ops_use_the_given_kernels(name, size, kw, expected):
  assert kernel_calls(name, size, **kw) == expected
