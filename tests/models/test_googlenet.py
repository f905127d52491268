"""GoogLeNet (Szegedy et al. 2015), paper and torchvision layouts: counts, geometry, aux heads,
the norm defaults and the `kernels` every op goes through."""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, layers, list_models, model_info
from classic_cnns.models.googlenet import GoogLeNet
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

FAMILY = ["googlenet", "googlenet_aux", "googlenet_bn", "googlenet_bn_aux"]


def test_family_is_registered():
  assert set(FAMILY) == set(list_models("googlenet"))


@pytest.mark.parametrize("name", FAMILY)
def test_exact_param_count(name):
  assert_exact_param_count(name)  # init with train=False: aux params must exist already


def test_aux_heads_cost_what_sec5_says():
  # Two heads, each 1x1 conv 128 (+bias or BN) -> FC 2048->1024 -> FC 1024->1000, on 512 / 528 channels.
  head = lambda c, conv_extra: c * 128 + conv_extra + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
  paper = model_info("googlenet_aux").paper_params - model_info("googlenet").paper_params
  tv = model_info("googlenet_bn_aux").paper_params - model_info("googlenet_bn").paper_params
  assert paper == head(512, 128) + head(528, 128)
  assert tv == head(512, 256) + head(528, 256)


@pytest.mark.parametrize("name", FAMILY)
def test_output_shapes_train_and_eval(name):
  assert abstract_output(name, train=False).shape == (2, 1000)
  out = abstract_output(name, train=True)
  if name.endswith("_aux"):  # (logits, (aux1, aux2)) only in training
    logits, aux = out
    assert logits.shape == (2, 1000) and len(aux) == 2 and all(a.shape == (2, 1000) for a in aux)
  else:
    assert out.shape == (2, 1000)


def test_bfloat16_compute_float32_params():
  logits, aux = abstract_output("googlenet_aux", train=True, dtype=jnp.bfloat16)
  assert logits.dtype == aux[0].dtype == jnp.bfloat16
  assert abstract_output("googlenet_bn", dtype=jnp.bfloat16).dtype == jnp.bfloat16
  params = abstract_variables("googlenet_aux", dtype=jnp.bfloat16)["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def _intermediates(name, size=224, **kw):
  model = create_model(name, **kw)
  x = jnp.zeros((1, size, size, 3))

  def run():
    v = model.init(jax.random.PRNGKey(0), x, train=False)
    return model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])[1]

  return jax.eval_shape(run)["intermediates"]


@pytest.mark.parametrize("name", ["googlenet", "googlenet_bn"])
def test_table1_geometry(name):
  """Ceil-mode max-pools reproduce Table 1: 112 -> 56 -> 28 -> 14 -> 7."""
  inter = _intermediates(name)
  shape = lambda k: inter[k]["__call__"][0].shape[1:]
  assert shape("conv1") == (112, 112, 64) and shape("conv2") == (56, 56, 192)
  expected = {
    "3a": (28, 256),
    "3b": (28, 480),
    "4a": (14, 512),
    "4b": (14, 512),
    "4c": (14, 512),
    "4d": (14, 528),
    "4e": (14, 832),
    "5a": (7, 832),
    "5b": (7, 1024),
  }
  for block, (s, c) in expected.items():
    assert shape(f"inception{block}") == (s, s, c)
  # LRN only in the paper version (Fig. 3: after pool1 and after conv2).
  assert sum(k.startswith("LocalResponseNorm") for k in inter) == (2 if name == "googlenet" else 0)


def test_paper_vs_torchvision_layout():
  paper = abstract_variables("googlenet")["params"]
  tv = abstract_variables("googlenet_bn")["params"]
  assert paper["inception3a"]["b3_5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
  assert tv["inception3a"]["b3_5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)
  assert "bias" in paper["conv1"]["conv"] and "norm" not in paper["conv1"]
  assert "bias" not in tv["conv1"]["conv"] and "scale" in tv["conv1"]["norm"]
  # A norm replaces the conv biases; every norm kind has the same count; with a 5x5 branch the
  # torchvision layout differs from the paper one only in parameter-free choices.
  n = lambda name, **kw: count_params(abstract_variables(name, **kw)["params"])
  assert (
    n("googlenet", norm="group")
    == n("googlenet", norm="batch")
    == n("googlenet_bn", branch5_kernel=5)
  )


def test_aux_params_exist_after_eval_init_and_match_train_init():
  model = create_model("googlenet_bn_aux")
  x = jnp.zeros((1, 224, 224, 3))
  shapes = lambda train: jax.tree.map(
    lambda a: a.shape,
    jax.eval_shape(
      lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=train
      )
    ),
  )
  assert shapes(False) == shapes(True)
  assert {"aux1", "aux2"} <= set(shapes(False)["params"])
  assert not {"aux1", "aux2"} & set(abstract_variables("googlenet_bn")["params"])


def test_max_pool_ceil_mode_matches_pytorch_formula():
  max_pool = layers.max_pool_ceil
  for n, k, s, pad, out in [
    (112, 3, 2, 0, 56),
    (56, 3, 2, 0, 28),
    (28, 3, 2, 0, 14),
    (14, 3, 2, 0, 7),
    (14, 2, 2, 0, 7),
    (28, 3, 1, 1, 28),
    (147, 3, 2, 0, 73),
    (7, 3, 2, 0, 3),
  ]:
    assert max_pool(jnp.zeros((1, n, n, 1)), k, s, pad).shape[1] == out
  assert max_pool(jnp.zeros((1, 112, 112, 1)), 3, 2, ceil_mode=False).shape[1] == 55
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)  # 4 -> ceil((4-3)/2)+1 = 2; last window clipped
  np.testing.assert_array_equal(max_pool(x, 3, 2)[0, :, :, 0], [[10, 11], [14, 15]])


def test_adaptive_avg_pool_windows():
  x = jnp.arange(14.0 * 14).reshape(1, 14, 14, 1)
  y = layers.adaptive_avg_pool(x, 4)
  bounds = [(0, 4), (3, 7), (7, 11), (10, 14)]  # floor(i*14/4), ceil((i+1)*14/4)
  for i, (r0, r1) in enumerate(bounds):
    for j, (c0, c1) in enumerate(bounds):
      assert float(y[0, i, j, 0]) == pytest.approx(float(jnp.mean(x[0, r0:r1, c0:c1])))


def _adaptive_avg_pool_by_slices(x, out):
  """Reference: PyTorch's AdaptiveAvgPool2d as a mean over each window [floor(i n / out),
  ceil((i + 1) n / out)), in NumPy."""
  span = lambda n: [(i * n // out, -(-(i + 1) * n // out)) for i in range(out)]
  return np.stack(
    [
      np.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in span(x.shape[2])], 1)
      for r0, r1 in span(x.shape[1])
    ],
    1,
  )


@pytest.mark.parametrize(
  "hw", [(14, 14), (4, 4), (2, 2), (1, 1), (7, 7), (9, 9), (17, 17), (14, 9)]
)
def test_adaptive_avg_pool_matches_window_means(hw):
  # The aux heads read 4a/4d: 14x14 at 224 (Table 1), 4x4 at 64 (the tests here), 2x2 / 1x1 at
  # 32 / 16 (smoke sizes); the others are odd sizes and a non-square map.
  x = np.random.RandomState(0).randn(2, *hw, 3).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(layers.adaptive_avg_pool(jnp.asarray(x), 4)),
    _adaptive_avg_pool_by_slices(x, 4),
    rtol=1e-5,
    atol=1e-6,
  )


# --------------------------------------------------------------------------- norm defaults and kernels
def recording_kernels_and_eps():
  """(`Kernels` that compute as `layers.PORTABLE` and log each call, the log): a Counter of calls
  per op and the epsilons `batch_norm_train` was given."""
  log = {"calls": collections.Counter(), "eps": set()}
  p = layers.PORTABLE

  def conv(*a, **kw):
    log["calls"]["conv"] += 1
    return p.conv(*a, **kw)

  def max_pool(*a, **kw):
    log["calls"]["max_pool"] += 1
    return p.max_pool(*a, **kw)

  def batch_norm_train(x, scale, bias, epsilon=1e-5):
    log["calls"]["batch_norm_train"] += 1
    log["eps"].add(epsilon)
    return p.batch_norm_train(x, scale, bias, epsilon)

  return dataclasses.replace(
    p, name="recording", conv=conv, max_pool=max_pool, batch_norm_train=batch_norm_train
  ), log


def loss_and_grad_jaxprs(model, size, batch=2) -> str:
  """The jaxprs (as text; traced, not compiled) of softmax cross-entropy (+ 0.3 x the aux losses)
  in train mode with mutable batch_stats, and of its gradient. Both: a custom VJP shows as
  `custom_vjp_call` only in the loss's jaxpr (grad inlines its fwd / bwd rules), an `ffi_call` in
  either."""
  v = abstract_init(model, size, batch)
  x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
  ce = lambda logits: jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

  def loss(params, rest, x):
    out, _ = model.apply(
      {"params": params, **rest},
      x,
      train=True,
      rngs={"dropout": jax.random.PRNGKey(0)},
      mutable=["batch_stats"],
    )
    return ce(out[0]) + 0.3 * sum(ce(a) for a in out[1]) if isinstance(out, tuple) else ce(out)

  args = (v["params"], {k: c for k, c in v.items() if k != "params"}, x)
  return str(jax.make_jaxpr(loss)(*args)) + "\n" + str(jax.make_jaxpr(jax.grad(loss))(*args))


def test_norm_defaults_declared_once():
  # torchvision's BasicConv2d: BatchNorm eps 1e-3; a kind string takes the other fields from there.
  assert GoogLeNet.NORM_DEFAULTS == NormSpec("batch", epsilon=1e-3)
  assert "NORM_DEFAULTS" not in {
    f.name for f in dataclasses.fields(GoogLeNet)
  }  # a ClassVar, no field
  assert layers.resolve_norm("batch", GoogLeNet.NORM_DEFAULTS) == NormSpec("batch", epsilon=1e-3)
  assert layers.resolve_norm(NormSpec("batch"), GoogLeNet.NORM_DEFAULTS) == NormSpec("batch")


@pytest.mark.parametrize(
  "name,overrides,eps",
  [
    ("googlenet_bn_aux", {}, 1e-3),
    ("googlenet_bn_aux", {"norm": "batch"}, 1e-3),
    ("googlenet_bn_aux", {"norm": NormSpec("batch")}, 1e-5),
    ("googlenet_aux", {}, None),
  ],
)
def test_every_conv_pool_and_norm_goes_through_kernels(name, overrides, eps):
  kernels, log = recording_kernels_and_eps()
  model = create_model(name, kernels=kernels, **overrides)
  variables = abstract_init(
    model, 224
  )  # traced only: the paper's aux pool (5x5/3) needs 14x14 at 4a
  log["calls"].clear()
  trace_train_apply(model, variables, 224)
  # One train-mode apply (aux heads included): each conv and BatchNorm once; max-pools: 4 in the
  # trunk (Table 1) + 1 per Inception block.
  params = variables["params"]
  expected = {
    "conv": count_leaves(params, "kernel", "conv"),
    "max_pool": 4 + 9,
    "batch_norm_train": count_leaves(params, "scale", "norm"),
  }
  assert expected["conv"] == 57 + 2 * 1 and log["calls"] == {k: n for k, n in expected.items() if n}
  assert log["eps"] == ({eps} if eps else set())


def test_gradient_is_plain_autodiff():
  # Portable kernels: the backward pass is autodiff's own (no custom VJP rule, no foreign call).
  jaxpr = loss_and_grad_jaxprs(create_model("googlenet_bn_aux"), 64)
  assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr
  assert "conv_general_dilated" in jaxpr


# --------------------------------------------------------------------------- real compute
def synthetic_variables(model, x):
  """Variables with init's structure and He-scaled random kernels, built from `jax.eval_shape`
  (a real `init` of these nets compiles for minutes on a 2-core CPU; counts and init structure
  are covered by the eval_shape tests above)."""
  shapes = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
    )
  )
  rs = np.random.RandomState(0)

  def make(path, sd):
    leaf = str(path[-1])
    if "scale" in leaf or "var" in leaf:
      return np.ones(sd.shape, sd.dtype)  # NumPy: an eager jnp.ones compiles once per shape
    if "bias" in leaf or "mean" in leaf:
      return np.zeros(sd.shape, sd.dtype)
    return (rs.randn(*sd.shape) * np.sqrt(2.0 / np.prod(sd.shape[:-1]))).astype(sd.dtype)

  return jax.tree_util.tree_map_with_path(make, shapes)


def train_step_fn(model, x, aux_weight=0.3):
  """jit(value_and_grad) of softmax CE on class 0 (+ aux_weight x aux losses, Sec. 5); returns the
  loss, grads and the updated batch_stats."""

  def ce(logits):
    return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

  @jax.jit
  def step(params, rest, key):
    def loss_fn(p):
      out, state = model.apply(
        {"params": p, **rest}, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"]
      )
      if isinstance(out, tuple):
        return ce(out[0]) + aux_weight * sum(ce(a) for a in out[1]), state
      return ce(out), state

    (loss, state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return loss, grads, state

  return step


def test_forward_backward_train_vs_eval_googlenet_bn_aux():
  # 64x64 keeps compilation short; the adaptive 4x4 aux pool works on the 4x4 map of 4a/4d.
  model = create_model("googlenet_bn_aux", num_classes=10)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, 3))
  v = synthetic_variables(model, x)
  params, rest = v["params"], {"batch_stats": v["batch_stats"]}
  step = train_step_fn(model, x)
  loss, grads, state = step(params, rest, jax.random.PRNGKey(1))
  assert np.isfinite(float(loss))
  assert all_finite(grads)
  assert float(jnp.abs(grads["aux1"]["fc2"]["kernel"]).sum()) > 0  # aux losses reach the heads
  # BN running statistics move in training; dropout depends on the key in training.
  assert not any(leaves_equal(state["batch_stats"], v["batch_stats"]))
  loss2, _, _ = step(params, rest, jax.random.PRNGKey(2))
  assert float(loss) != float(loss2)
  # Eval: plain logits, no dropout, statistics unchanged.
  ev = jax.jit(
    lambda key: model.apply(v, x, train=False, rngs={"dropout": key}, mutable=["batch_stats"])
  )
  (o1, s1), (o2, _) = ev(jax.random.PRNGKey(1)), ev(jax.random.PRNGKey(2))
  assert o1.shape == (2, 10)
  np.testing.assert_array_equal(o1, o2)
  assert all(leaves_equal(s1, v["batch_stats"]))
