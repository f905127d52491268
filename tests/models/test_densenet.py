"""DenseNet family: exact counts (Table 1 / Table 2), shapes, train/eval, channel bookkeeping."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from classic_cnns.models import create_model, list_models, model_info
from classic_cnns.models.densenet import DenseNet, pack_layers, unpack_layers
from tests.models.helpers import (
  abstract_init,
  abstract_output,
  abstract_variables,
  all_finite,
  assert_exact_param_count,
  count_params,
  init,
  leaves_equal,
  recording_kernels,
)

NAMES = list_models("densenet")
TINY = dict(growth_rate=4, block_config=(2, 2), stem="cifar", num_classes=10)


@functools.lru_cache(maxsize=None)
def _abstract(name: str):
  """eval_shape'd variables at the registered input size, traced once per name for this file."""
  return abstract_variables(name)


def _init(model, x):
  return init(
    model, {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
  )


def _init_eager(model, x):  # for jax.eval_shape
  return model.init(
    {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
  )


def _apply(model, variables, x, train, key=0):
  return model.apply(
    variables, x, train=train, rngs={"dropout": jax.random.PRNGKey(key)}, mutable=["batch_stats"]
  )


def test_all_variants_registered():
  assert set(NAMES) == {
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet161",
    "densenet264",
    "densenet_bc_100_12",
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc_250_24",
    "densenet_bc_190_40",
  }


@pytest.mark.parametrize("name", NAMES)
def test_exact_param_count(name):
  got, want = count_params(_abstract(name)["params"]), model_info(name).paper_params
  assert got == want, f"{name}: {got:,} params, reference {want:,}"


def test_group_norm_keeps_param_count():
  assert_exact_param_count("densenet121", norm="group")


@pytest.mark.parametrize(
  "name,shape", [("densenet121", (2, 1000)), ("densenet_bc_100_12", (2, 10))]
)
def test_output_shape(name, shape):
  out = abstract_output(name)
  assert out.shape == shape


def test_num_classes_override():
  info = model_info("densenet40_k12")
  params = abstract_variables("densenet40_k12", num_classes=100)["params"]
  assert params["classifier"]["kernel"].shape == (16 + 3 * 12 * 12, 100)
  assert count_params(params) == info.paper_params + 90 * 449


@pytest.mark.parametrize(
  "name,stem,k,blocks,theta",
  [
    ("densenet121", 64, 32, (6, 12, 24, 16), 0.5),
    ("densenet161", 96, 48, (6, 12, 36, 24), 0.5),
    ("densenet40_k12", 16, 12, (12, 12, 12), 1.0),
    ("densenet_bc_100_12", 24, 12, (16, 16, 16), 0.5),
  ],
)
def test_channel_bookkeeping(name, stem, k, blocks, theta):
  """Each transition sees (its input) + layers * k channels and emits floor(theta * that)."""
  params = _abstract(name)["params"]
  assert params["stem_conv"]["kernel"].shape[-1] == stem
  c = stem
  for i, n in enumerate(blocks):
    c += n * k
    name_in = f"transition{i + 1}" if i + 1 < len(blocks) else "final_norm"
    if i + 1 < len(blocks):
      kernel = params[name_in]["conv"]["kernel"]
      assert kernel.shape[2] == c, (name_in, kernel.shape, c)
      c = int(theta * c)
      assert kernel.shape[3] == c
    else:
      assert params["final_norm"]["scale"].shape == (c,)
  # inside a block, layer j sees c_in + (j - 1) * k channels
  assert params["block1_layer3"]["norm1"]["scale"].shape == (stem + 2 * k,)


def test_bottleneck_layout():
  params = _abstract("densenet_bc_100_12")["params"]
  layer = params["block2_layer1"]
  # block 2 starts from the compressed (24 + 16 * 12) / 2 = 108 channels; bottleneck width 4k = 48
  assert layer["conv1"]["kernel"].shape == (1, 1, 108, 48)
  assert layer["conv2"]["kernel"].shape == (3, 3, 48, 12)
  plain = _abstract("densenet40_k12")["params"]["block1_layer1"]
  assert set(plain) == {"norm1", "conv2"} and plain["conv2"]["kernel"].shape == (3, 3, 16, 12)


# The runtime tests share one tiny net (2 blocks of 2 bottleneck layers, k=4, 16x16 input) and
# four compilations: init, train-mode value+grad (plain and memory-efficient), eval forward. Keys
# use the "rbg" PRNG: threefry dropout masks dominate CPU compile time otherwise.
def _key(seed):
  return jax.random.key(seed, impl="rbg")


X = np.random.RandomState(0).randn(2, 16, 16, 3).astype(np.float32)


@pytest.fixture(scope="module")
def tiny():
  """variables, and jitted (params, batch_stats, seed) -> ((loss, (logits, state)), grads)."""
  plain = DenseNet(**TINY, dropout=0.2)
  variables = jax.jit(
    lambda x: plain.init({"params": _key(0), "dropout": _key(1)}, x, train=False)
  )(X)

  def grad_fn(model):
    @jax.jit
    def loss_and_grad(p, stats, seed):
      def loss_fn(p):
        logits, state = model.apply(
          {"params": p, "batch_stats": stats},
          X,
          train=True,
          rngs={"dropout": _key(seed)},
          mutable=["batch_stats"],
        )
        return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0]), (logits, state)

      return jax.value_and_grad(loss_fn, has_aux=True)(p)

    return loss_and_grad

  return variables, grad_fn(plain), grad_fn(DenseNet(**TINY, dropout=0.2, memory_efficient=True))


def test_forward_backward_finite(tiny):
  variables, train_step, _ = tiny
  (loss, _), grads = train_step(variables["params"], variables["batch_stats"], 2)
  assert np.isfinite(float(loss))
  assert all_finite(grads)


def test_memory_efficient_is_identical(tiny):
  variables, train_step, remat_step = tiny
  v2 = jax.eval_shape(
    lambda: DenseNet(**TINY, memory_efficient=True).init(
      {"params": _key(0), "dropout": _key(1)}, X, train=False
    )
  )
  assert jax.tree.structure(variables) == jax.tree.structure(v2)  # same variable names
  stats = variables["batch_stats"]
  jaxpr = str(jax.make_jaxpr(lambda p: remat_step.__wrapped__(p, stats, 2))(variables["params"]))
  assert "remat" in jaxpr or "checkpoint" in jaxpr  # the dense layers are rematerialised
  (l1, (o1, s1)), g1 = train_step(variables["params"], variables["batch_stats"], 2)
  (l2, (o2, s2)), g2 = remat_step(variables["params"], variables["batch_stats"], 2)
  np.testing.assert_allclose(o1, o2, rtol=1e-6, atol=1e-6)  # same dropout masks, same outputs
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), g1, g2)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), s1, s2)


def test_train_eval_dropout_and_batch_stats(tiny):
  variables, train_step, _ = tiny
  stats = variables["batch_stats"]
  (_, (t1, s1)), _ = train_step(variables["params"], stats, 1)
  (_, (t2, _)), _ = train_step(variables["params"], stats, 2)
  assert not np.allclose(t1, t2)  # dropout active in train: the mask follows the rng
  model = DenseNet(**TINY, dropout=0.2)
  evaluate = jax.jit(
    lambda v, seed: model.apply(
      v, X, train=False, rngs={"dropout": _key(seed)}, mutable=["batch_stats"]
    )
  )
  e1, s_eval = evaluate(variables, 1)
  e2, _ = evaluate(variables, 2)
  np.testing.assert_array_equal(e1, e2)  # and off in eval
  assert not any(
    leaves_equal(stats, s1["batch_stats"])
  )  # every BN updated its running statistics in train
  assert all(leaves_equal(stats, s_eval["batch_stats"]))  # and none in eval


def test_imagenet_stem_tiny_shape():
  model = DenseNet(growth_rate=4, block_config=(1, 1), stem="imagenet", num_classes=5)
  x = jnp.ones((2, 32, 32, 3))
  variables = jax.eval_shape(lambda: _init_eager(model, x))
  assert variables["params"]["stem_conv"]["kernel"].shape == (7, 7, 3, 8)
  out, _ = jax.eval_shape(lambda v: _apply(model, v, x, False), variables)
  assert out.shape == (2, 5)


def test_unknown_stem_and_option_rejected():
  with pytest.raises(ValueError):
    create_model("densenet121", not_an_option=1)
  with pytest.raises(ValueError):
    jax.eval_shape(
      lambda: _init_eager(DenseNet(**{**TINY, "stem": "bogus"}), jnp.ones((1, 32, 32, 3)))
    )


# --------------------------------------------------------------------------- scan_layers
@pytest.mark.parametrize("name", NAMES)
def test_scan_layers_packed_layout_and_exact_count(name):
  """The scanned model's variables are the unrolled model's, packed (`pack_layers`): same shapes
  and exact count; a few arrays per block instead of 4-6 per layer."""
  scanned = abstract_variables(name, scan_layers=True)
  shapes = lambda v: jax.tree.map(lambda a: (a.shape, a.dtype), v)
  unrolled = _abstract(name)
  assert shapes(scanned) == shapes(jax.eval_shape(pack_layers, unrolled))
  assert_exact_param_count(name, scan_layers=True)
  blocks = len(create_model(name).block_config)
  assert len(jax.tree.leaves(scanned["params"])) < len(jax.tree.leaves(unrolled["params"])) - blocks


@pytest.mark.parametrize("bottleneck", [True, False])
def test_pack_then_unpack_is_the_identity(bottleneck):
  kw = {**TINY, "block_config": (3, 2), "bottleneck": bottleneck}
  v = _init(DenseNet(**kw), X)
  back = unpack_layers(pack_layers(v), kw["block_config"], kw["growth_rate"])
  assert jax.tree.structure(back) == jax.tree.structure(v)
  jax.tree.map(np.testing.assert_array_equal, back, v)


def test_scan_layers_initial_distribution():
  """Packed and stacked kernels keep He normal with the per-layer fan-out (conv2's std sqrt(2/(9k)))."""
  v = _init(
    DenseNet(growth_rate=32, block_config=(24,), stem="cifar", num_classes=10, scan_layers=True), X
  )
  block = v["params"]["block1_layers"]
  for name, fan_out in (("conv1", 4 * 32), ("conv2", 9 * 32)):
    np.testing.assert_allclose(
      float(jnp.std(block[name]["kernel"])), (2 / fan_out) ** 0.5, rtol=0.05
    )
  np.testing.assert_array_equal(block["norm1"]["scale"], 1.0)
  np.testing.assert_array_equal(v["batch_stats"]["block1_layers"]["norm2"]["var"], 1.0)


@pytest.mark.parametrize(
  "kw",
  [
    dict(growth_rate=4, block_config=(3, 2), stem="cifar", num_classes=10),
    dict(
      growth_rate=4,
      block_config=(3,),
      stem="cifar",
      num_classes=10,
      bottleneck=False,
      compression=1.0,
      memory_efficient=True,
    ),
  ],
)
def test_scan_layers_is_the_same_network(kw):
  """With the unrolled variables packed: same logits, gradients and running statistics."""
  flat, scanned = DenseNet(**kw), DenseNet(**kw, scan_layers=True)
  x = jax.random.normal(_key(3), (4, 8, 8, 3))
  v = _init(flat, x)
  v_scan = pack_layers(v)
  shapes = lambda t: jax.tree.map(lambda a: (a.shape, a.dtype), t)
  assert shapes(v_scan) == shapes(_init(scanned, x))

  def loss_and_grads(model, variables):
    def loss(params):
      logits, new = model.apply(
        {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
      )
      return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0]), new

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(variables["params"])

  (l_flat, s_flat), g_flat = loss_and_grads(flat, v)
  (l_scan, s_scan), g_scan = loss_and_grads(scanned, v_scan)
  np.testing.assert_allclose(l_scan, l_flat, rtol=1e-6)
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max())),
    g_scan,
    pack_layers({"params": g_flat})["params"],
  )
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s_scan, pack_layers(s_flat)
  )
  evaluate = lambda model, variables: jax.jit(functools.partial(model.apply, train=False))(
    variables, x
  )
  np.testing.assert_allclose(evaluate(scanned, v_scan), evaluate(flat, v), rtol=1e-5, atol=1e-5)


def test_scan_layers_rejects_other_norms():
  with pytest.raises(ValueError, match="norm='batch' only"):
    abstract_variables("densenet_bc_100_12", scan_layers=True, norm="group")


def test_scan_layers_dropout_follows_the_rng_in_train_only():
  model = DenseNet(**TINY, dropout=0.2, scan_layers=True)
  v = _init(model, X)
  run = jax.jit(lambda seed, train: _apply(model, v, X, train, seed)[0], static_argnums=1)
  assert not np.allclose(run(1, True), run(2, True))
  np.testing.assert_array_equal(run(1, True), run(1, True))
  np.testing.assert_array_equal(run(1, False), run(2, False))


# --------------------------------------------------------------------------- kernels
def _grad_jaxpr(model, variables, size):
  """The jaxpr of the cross-entropy gradient w.r.t. params in train mode (traced, not compiled)."""
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  params, rest = variables["params"], {k: s for k, s in variables.items() if k != "params"}

  def loss(params, rest, x):
    logits, _ = model.apply(
      {"params": params, **rest}, x, train=True, mutable=["batch_stats"], rngs={"dropout": _key(2)}
    )
    labels = jnp.arange(x.shape[0]) % logits.shape[-1]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), labels])

  return jax.make_jaxpr(jax.grad(loss))(params, rest, x)


@pytest.mark.parametrize(
  "kw",
  [
    {},
    {"scan_layers": True},
    {"scan_layers": True, "memory_efficient": True},
    {"memory_efficient": True, "dropout": 0.2},
  ],
)
def test_portable_gradient_is_plain_autodiff(kw):
  """The default kernels: no custom VJPs, no foreign calls anywhere in the training gradient."""
  model = create_model("densenet_bc_100_12", **kw)
  jaxpr = str(_grad_jaxpr(model, abstract_init(model, 32), 32))
  assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


SMALL_121 = dict(growth_rate=4, block_config=(2, 3), num_classes=10)  # densenet121's layout, narrow


@pytest.mark.parametrize("kw", [{}, {"norm": "group"}, {"memory_efficient": True}])
def test_every_op_goes_through_the_kernels_field(kw):
  """Stem conv + max pool, dense layers, transitions, final norm: each op calls `kernels`."""
  kernels, calls = recording_kernels()
  model = create_model("densenet121", **SMALL_121, **kw, kernels=kernels)
  v = abstract_init(model, 32)
  flat = traverse_util.flatten_dict(v["params"])
  convs = sum(k[-1] == "kernel" and a.ndim == 4 for k, a in flat.items())
  norms = sum(k[-1] == "scale" for k in flat)
  calls.clear()  # count one training forward
  _grad_jaxpr(model, v, 32)
  norm_op = "group_norm" if kw.get("norm") == "group" else "batch_norm_train"
  assert calls == {"conv": convs, "max_pool": 1, norm_op: norms}


def test_scanned_blocks_use_the_loop_conv():
  kernels, calls = recording_kernels()
  model = create_model("densenet121", **SMALL_121, scan_layers=True, kernels=kernels)
  v = abstract_init(model, 32)
  calls.clear()
  _grad_jaxpr(model, v, 32)
  # outside the scans: stem conv + 1 transition conv; stem, transition and final norm
  assert calls["conv"] == 2 and calls["max_pool"] == 1
  assert (
    calls["loop_conv"] >= 2 * 2 and calls["batch_norm_train"] >= 3 + 2 * 2
  )  # 2 per scanned layer
