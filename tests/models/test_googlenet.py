"""GoogLeNet (Szegedy et al. 2015), paper and torchvision layouts: counts, geometry, aux heads."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, list_models, model_info
from classic_cnns.models.googlenet import adaptive_avg_pool, max_pool
from tests.models.helpers import (abstract_output, abstract_variables, all_finite, assert_exact_param_count,
                                  count_params, leaves_equal)

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
  expected = {"3a": (28, 256), "3b": (28, 480), "4a": (14, 512), "4b": (14, 512), "4c": (14, 512),
              "4d": (14, 528), "4e": (14, 832), "5a": (7, 832), "5b": (7, 1024)}
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
  assert n("googlenet", norm="group") == n("googlenet", norm="batch") == n("googlenet_bn", branch5_kernel=5)


def test_aux_params_exist_after_eval_init_and_match_train_init():
  model = create_model("googlenet_bn_aux")
  x = jnp.zeros((1, 224, 224, 3))
  shapes = lambda train: jax.tree.map(lambda a: a.shape, jax.eval_shape(
      lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=train)))
  assert shapes(False) == shapes(True)
  assert {"aux1", "aux2"} <= set(shapes(False)["params"])
  assert not {"aux1", "aux2"} & set(abstract_variables("googlenet_bn")["params"])


def test_max_pool_ceil_mode_matches_pytorch_formula():
  for n, k, s, pad, out in [(112, 3, 2, 0, 56), (56, 3, 2, 0, 28), (28, 3, 2, 0, 14), (14, 3, 2, 0, 7),
                            (14, 2, 2, 0, 7), (28, 3, 1, 1, 28), (147, 3, 2, 0, 73), (7, 3, 2, 0, 3)]:
    assert max_pool(jnp.zeros((1, n, n, 1)), k, s, pad).shape[1] == out
  assert max_pool(jnp.zeros((1, 112, 112, 1)), 3, 2, ceil_mode=False).shape[1] == 55
  x = jnp.arange(16.0).reshape(1, 4, 4, 1)  # 4 -> ceil((4-3)/2)+1 = 2; last window clipped
  np.testing.assert_array_equal(max_pool(x, 3, 2)[0, :, :, 0], [[10, 11], [14, 15]])


def test_adaptive_avg_pool_windows():
  x = jnp.arange(14.0 * 14).reshape(1, 14, 14, 1)
  y = adaptive_avg_pool(x, 4)
  bounds = [(0, 4), (3, 7), (7, 11), (10, 14)]  # floor(i*14/4), ceil((i+1)*14/4)
  for i, (r0, r1) in enumerate(bounds):
    for j, (c0, c1) in enumerate(bounds):
      assert float(y[0, i, j, 0]) == pytest.approx(float(jnp.mean(x[0, r0:r1, c0:c1])))


# --------------------------------------------------------------------------- real compute
def synthetic_variables(model, x):
  """Variables with init's structure and He-scaled random kernels, built from `jax.eval_shape`
  (a real `init` of these nets compiles for minutes on a 2-core CPU; counts and init structure
  are covered by the eval_shape tests above)."""
  shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                                             x, train=False))
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
      out, state = model.apply({"params": p, **rest}, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])
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
  ev = jax.jit(lambda key: model.apply(v, x, train=False, rngs={"dropout": key}, mutable=["batch_stats"]))
  (o1, s1), (o2, _) = ev(jax.random.PRNGKey(1)), ev(jax.random.PRNGKey(2))
  assert o1.shape == (2, 10)
  np.testing.assert_array_equal(o1, o2)
  assert all(leaves_equal(s1, v["batch_stats"]))
