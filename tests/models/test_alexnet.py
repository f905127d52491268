"""AlexNet family: counts, paper geometry, tiny forward/backward, dropout, init."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, layers, list_models
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

TINY = dict(widths=(8, 16, 16, 16, 8), fc_features=32, num_classes=10)


@pytest.mark.parametrize("name", list_models("alexnet"))
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_variants_registered():
  assert set(list_models("alexnet")) == {"alexnet", "alexnet_paper", "alexnet_paper_nogroups"}


def _intermediate_shapes(name, size, **kw):
  return {k: t[0].shape[1:3] for k, t in abstract_intermediates(name, size, **kw).items()}


@pytest.mark.parametrize("overlap", [True, False])
def test_paper_geometry(overlap):
  # 227 -> conv1 55 -> pool 27 -> pool 13 -> pool 6 (Sec. 3.5); 2x2/2 pooling keeps every size
  # (Sec. 3.4 "output of equivalent dimensions"), hence the same FC input and parameter count.
  s = _intermediate_shapes("alexnet_paper", 227, overlap_pool=overlap)
  assert s["prepool1"] == (55, 55)
  assert [s[f"layer{i}"] for i in range(1, 6)] == [(27, 27), (13, 13), (13, 13), (13, 13), (6, 6)]
  assert (
    count_params(abstract_variables("alexnet_paper", overlap_pool=overlap)["params"]) == 60_965_224
  )


def test_output_shapes():
  assert abstract_output("alexnet_paper").shape == (2, 1000)
  assert abstract_output("alexnet").shape == (2, 1000)
  assert abstract_output("alexnet", 256).shape == (2, 1000)  # adaptive 6x6 pool


def test_grouped_kernels():
  p = abstract_variables("alexnet_paper")["params"]
  assert p["conv2"]["kernel"].shape == (5, 5, 48, 256)  # each tower sees half of conv1's maps
  assert p["conv3"]["kernel"].shape == (3, 3, 256, 384)  # conv3 sees both towers
  assert p["conv5"]["kernel"].shape == (3, 3, 192, 256)


def test_forward_backward_tiny():
  # 67x67: conv1 15 -> pool 7 -> pool 3 -> pool 1 (the smallest size keeping every stage).
  forward_backward_is_finite("alexnet_paper", 67, **TINY)


@pytest.mark.parametrize("act", ["tanh", "sigmoid"])
def test_activations(act):
  model = create_model("alexnet_paper", act=act, **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 67, 67, 3))
  v = init(model, jax.random.PRNGKey(0), x)
  assert np.all(np.isfinite(model.apply(v, x)))


def test_dropout_train_vs_eval():
  model = create_model("alexnet_paper", **TINY)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 67, 67, 3))
  v = init(model, jax.random.PRNGKey(0), x)
  e1, e2 = model.apply(v, x), model.apply(v, x, train=False)
  np.testing.assert_array_equal(e1, e2)
  t1 = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
  t2 = model.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(t1, t2)
  no_drop = create_model("alexnet_paper", dropout=0.0, **TINY)
  np.testing.assert_allclose(no_drop.apply(v, x, train=True), e1, rtol=1e-6)


def test_paper_init():
  # Sec. 5: weights N(0, 0.01); biases 1 in conv2/4/5 and the hidden FCs, 0 elsewhere.
  model = create_model("alexnet_paper", **TINY)
  p = init(model, jax.random.PRNGKey(0), jnp.zeros((1, 67, 67, 3)))["params"]
  for layer in ("conv2", "conv4", "conv5", "fc1", "fc2"):
    assert np.all(p[layer]["bias"] == 1.0), layer
  for layer in ("conv1", "conv3", "fc3"):
    assert np.all(p[layer]["bias"] == 0.0), layer
  assert abs(float(jnp.std(p["fc1"]["kernel"])) - 0.01) < 2e-3


@pytest.mark.parametrize("shape,out", [((5, 9), 3), ((1, 1), 6), ((13, 13), 6), ((12, 12), 6)])
def test_adaptive_avg_pool_matches_torch_bins(shape, out):
  x = np.random.RandomState(0).randn(2, *shape, 3).astype(np.float32)
  ref = np.zeros((2, out, out, 3), np.float32)
  for i in range(out):
    for j in range(out):
      h0, h1 = (i * shape[0]) // out, -((-(i + 1) * shape[0]) // out)
      w0, w1 = (j * shape[1]) // out, -((-(j + 1) * shape[1]) // out)
      ref[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
  np.testing.assert_allclose(
    layers.adaptive_avg_pool(jnp.asarray(x), out), ref, rtol=1e-5, atol=1e-6
  )


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("name,size", [("alexnet", 224), ("alexnet_paper", 227)])
def test_train_step_is_plain_autodiff(name, size):
  for jaxpr in train_loss_jaxprs(name, size):
    assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


@pytest.mark.parametrize("name,size", [("alexnet", 224), ("alexnet_paper", 227)])
def test_convs_and_pools_use_the_given_kernels(name, size):
  assert kernel_calls(name, size) == {"conv": 5, "max_pool": 3}
