"""Inception v2 (BN-Inception, Ioffe & Szegedy 2015) and Inception v3 (Szegedy et al. 2016)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, list_models
from classic_cnns.models.inception import InceptionV2, InceptionV3
from classic_cnns.models.layers import NormSpec
from tests.models.helpers import (
  abstract_init,
  abstract_output,
  abstract_variables,
  all_finite,
  assert_exact_param_count,
  count_leaves,
  count_params,
  leaves_equal,
  trace_train_apply,
)
from tests.models.test_googlenet import (
  loss_and_grad_jaxprs,
  recording_kernels_and_eps,
  synthetic_variables,
  train_step_fn,
)

FAMILY = ["inception_v2", "inception_v3", "inception_v3_noaux"]


def test_family_is_registered():
  assert set(FAMILY) == set(list_models("inception"))


@pytest.mark.parametrize("name", FAMILY)
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_bn_inception_with_conv_biases_matches_the_caffe_release_count():
  # The released Caffe BN-Inception has conv biases too; 11,295,240 is the count published
  # independently by osmr/imgclsmob for that model.
  v = abstract_variables("inception_v2", conv_bias=True)["params"]
  assert count_params(v) == 11_295_240


@pytest.mark.parametrize(
  "name,size", [("inception_v2", 224), ("inception_v3", 299), ("inception_v3_noaux", 299)]
)
def test_output_shapes_train_and_eval(name, size):
  assert abstract_output(name, input_size=size, train=False).shape == (2, 1000)
  out = abstract_output(name, input_size=size, train=True)
  if name == "inception_v3":  # (logits, (aux,)) only in training
    assert out[0].shape == (2, 1000) and len(out[1]) == 1 and out[1][0].shape == (2, 1000)
  else:
    assert out.shape == (2, 1000)


@pytest.mark.parametrize("name", ["inception_v2", "inception_v3"])
def test_bfloat16_compute(name):
  out = abstract_output(name, train=True, dtype=jnp.bfloat16)
  assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(out))


def _intermediates(name, size):
  model = create_model(name)
  x = jnp.zeros((1, size, size, 3))

  def run():
    v = model.init(jax.random.PRNGKey(0), x, train=False)
    return model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])[1]

  inter = jax.eval_shape(run)["intermediates"]
  return lambda k: inter[k]["__call__"][0].shape[1:]


def test_bn_inception_fig5_geometry():
  shape = _intermediates("inception_v2", 224)
  expected = {
    "3a": (28, 256),
    "3b": (28, 320),
    "3c": (14, 576),
    "4a": (14, 576),
    "4b": (14, 576),
    "4c": (14, 608),
    "4d": (14, 608),
    "4e": (7, 1056),
    "5a": (7, 1024),
    "5b": (7, 1024),
  }
  for block, (s, c) in expected.items():
    assert shape(f"inception{block}") == (s, s, c)
  p = abstract_variables("inception_v2")["params"]
  assert "b1" not in p["inception3c"] and "b4_proj" not in p["inception4e"]  # pass-through
  assert all(
    p[f"inception{b}"]["b3_3x3a"]["conv"]["kernel"].shape[:2] == (3, 3) for b in ("3a", "4d", "5b")
  )


def test_inception_v3_geometry_and_factorisation():
  shape = _intermediates("inception_v3", 299)
  for k, s in [
    ("Conv2d_1a_3x3", (149, 149, 32)),
    ("Conv2d_4a_3x3", (71, 71, 192)),
    ("Mixed_5b", (35, 35, 256)),
    ("Mixed_5d", (35, 35, 288)),
    ("Mixed_6a", (17, 17, 768)),
    ("Mixed_6e", (17, 17, 768)),
    ("Mixed_7a", (8, 8, 1280)),
    ("Mixed_7c", (8, 8, 2048)),
  ]:
    assert shape(k) == s
  p = abstract_variables("inception_v3")["params"]
  assert p["Mixed_6b"]["b7x7_2"]["conv"]["kernel"].shape == (1, 7, 128, 128)
  assert p["Mixed_6b"]["b7x7_3"]["conv"]["kernel"].shape == (7, 1, 128, 192)
  assert p["Mixed_7b"]["b3x3_2a"]["conv"]["kernel"].shape == (1, 3, 384, 384)
  assert "scale" in p["AuxLogits"]["conv1"]["norm"]  # BN-auxiliary (Sec. 7)
  convs = [
    k
    for path, _ in jax.tree_util.tree_flatten_with_path(p)[0]
    for k in [jax.tree_util.keystr(path)]
    if "['conv']" in k
  ]
  assert convs and not any(k.endswith("['bias']") for k in convs)  # no conv biases


def test_norm_defaults():
  # v3: torchvision's BasicConv2d, BatchNorm eps 1e-3; BN-Inception: the plain NormSpec (eps 1e-5).
  assert InceptionV3.NORM_DEFAULTS == NormSpec("batch", epsilon=1e-3)
  assert "NORM_DEFAULTS" not in {
    f.name for f in dataclasses.fields(InceptionV3)
  }  # a ClassVar, no field
  assert not hasattr(InceptionV2, "NORM_DEFAULTS")


def test_aux_params_exist_after_eval_init():
  assert "AuxLogits" in abstract_variables("inception_v3")["params"]
  assert "AuxLogits" not in abstract_variables("inception_v3_noaux")["params"]


def test_forward_backward_finite_inception_v3_75px():
  # 75x75 is the smallest input the v3 stem accepts (the aux head needs 17x17 at Mixed_6e, so noaux).
  model = create_model("inception_v3_noaux", num_classes=10)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 75, 75, 3))
  v = synthetic_variables(model, x)
  loss, grads, state = train_step_fn(model, x)(
    v["params"], {"batch_stats": v["batch_stats"]}, jax.random.PRNGKey(1)
  )
  assert np.isfinite(float(loss))
  assert all_finite(grads)
  assert not any(leaves_equal(state["batch_stats"], v["batch_stats"]))


@pytest.mark.parametrize(
  "name,size,overrides,eps",
  [
    ("inception_v3", 299, {}, 1e-3),
    ("inception_v3", 299, {"norm": "batch"}, 1e-3),
    ("inception_v3", 299, {"norm": NormSpec("batch")}, 1e-5),
    ("inception_v2", 224, {}, 1e-5),
  ],
)
def test_every_conv_pool_and_norm_goes_through_kernels(name, size, overrides, eps):
  kernels, log = recording_kernels_and_eps()
  model = create_model(name, kernels=kernels, **overrides)
  variables = abstract_init(model, size)
  log["calls"].clear()
  trace_train_apply(model, variables, size)
  # One train-mode apply (the v3 aux head included): each conv and BatchNorm once. Max-pools:
  # v3 2 in the stem + Mixed_6a, 7a; v2 2 in the stem + 3c, 4e, 5b (Fig. 5).
  params = variables["params"]
  n_conv = count_leaves(params, "kernel", "conv")
  assert n_conv == {"inception_v3": 94 + 2, "inception_v2": 69}[name]
  n_pool = 4 if name == "inception_v3" else 5
  assert log["calls"] == {"conv": n_conv, "batch_norm_train": n_conv, "max_pool": n_pool}
  assert log["eps"] == {eps}


def test_inception_v3_batchnorm_epsilon_is_1e3_numerically():
  # Same parameters and batch, train mode: the default model computes exactly as one built with
  # NormSpec("batch", epsilon=1e-3) and differently from one with eps 1e-5. 75x75 and no aux head
  # keep the compile short (the aux head needs 299x299).
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 75, 75, 3))
  models = [
    create_model("inception_v3_noaux", num_classes=10, **kw)
    for kw in ({}, {"norm": NormSpec("batch", epsilon=1e-3)}, {"norm": NormSpec("batch")})
  ]
  v = synthetic_variables(models[0], x)
  run = jax.jit(
    lambda v, x: [
      m.apply(v, x, train=True, rngs={"dropout": jax.random.PRNGKey(1)}, mutable=["batch_stats"])[0]
      for m in models
    ]
  )
  default, eps3, eps5 = (np.asarray(y) for y in run(v, x))
  np.testing.assert_array_equal(default, eps3)
  assert not np.array_equal(default, eps5)


def test_gradient_is_plain_autodiff():
  # Portable kernels: the backward pass is autodiff's own (no custom VJP rule, no foreign call).
  jaxpr = loss_and_grad_jaxprs(create_model("inception_v3"), 299)
  assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr
  assert "conv_general_dilated" in jaxpr
