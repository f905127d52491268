"""NiN family: counts, Caffe pooling geometry, GAP vs FC head, dropout / BN modes."""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, layers, list_models, model_info
from tests.models.helpers import (
  abstract_output,
  abstract_variables,
  assert_exact_param_count,
  count_params,
  forward_backward_is_finite,
  init,
)


@pytest.mark.parametrize("name", list_models("nin_"))
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_variants_registered():
  assert set(list_models("nin_")) == {"nin_cifar", "nin_cifar_bn", "nin_imagenet"}


def _block_shapes(name, size, **kw):
  model = create_model(name, **kw)
  x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
  v = abstract_variables(name, size, **kw)
  _, state = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), v, x)
  return [t[0].shape[1:] for _, t in sorted(state["intermediates"].items())]


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
def _loss_and_grad_jaxprs(name, size, **kw):
  """The jaxprs (as text) of a train-mode cross-entropy loss through `create_model(name)` and of its
  gradient, traced on abstract values (no compile). A custom VJP shows only in the loss's jaxpr
  (`jax.grad` inlines the rule), a foreign call in both."""
  info = model_info(name)
  model = create_model(name, **kw)
  v = abstract_variables(name, size, **kw)
  params, rest = v["params"], {k: t for k, t in v.items() if k != "params"}
  x = jax.ShapeDtypeStruct((2, size, size, info.in_channels), jnp.float32)
  labels = np.arange(2) % 10

  def loss(params, rest, x):
    logits, _ = model.apply(
      {"params": params, **rest},
      x,
      train=True,
      rngs={"dropout": jax.random.PRNGKey(0)},
      mutable=["batch_stats"],
    )
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1))

  return [str(jax.make_jaxpr(f)(params, rest, x)) for f in (loss, jax.grad(loss))]


def _kernel_calls(name, size, **kw):
  """How often each `Kernels` op is called by one train-mode forward of `create_model(name,
  kernels=recording)`; also checks that the variables do not depend on the kernels."""
  calls = collections.Counter()

  def record(op):
    fn = getattr(layers.PORTABLE, op)

    def wrapped(*args, **kwargs):
      calls[op] += 1
      return fn(*args, **kwargs)

    return wrapped

  ops = ("conv", "loop_conv", "max_pool", "batch_norm_train", "group_norm")
  kernels = dataclasses.replace(layers.PORTABLE, name="recording", **{op: record(op) for op in ops})
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
  v = abstract_variables(name, size, **kw)
  assert shapes(abstract_variables(name, size, kernels=kernels, **kw)) == shapes(v)
  model = create_model(name, kernels=kernels, **kw)
  x = jax.ShapeDtypeStruct((2, size, size, model_info(name).in_channels), jnp.float32)
  calls.clear()
  jax.eval_shape(
    lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"]
    ),
    v,
    x,
  )
  return dict(calls)


@pytest.mark.parametrize("name", ["nin_cifar", "nin_cifar_bn"])
def test_train_step_is_plain_autodiff(name):
  for jaxpr in _loss_and_grad_jaxprs(name, 32):
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
  assert _kernel_calls(name, size, **kw) == expected
