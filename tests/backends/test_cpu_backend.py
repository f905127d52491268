"""The XLA:CPU backend (classic_cnns/backends/cpu) computes what the portable kernels compute:

- its ops (`backends/cpu/ops.py`: custom-VJP BatchNorm, GroupNorm, max-pool, the loop conv) equal the
  portable `models.layers` functions in values and gradients;
- whole models -- train-mode outputs, updated batch_stats, parameter gradients -- with
  `cpu.make_kernels("onednn")` and `("xla")` equal `layers.PORTABLE`'s to float32 rounding;
- `cpu.compile_init` (batched draws, XLA level 1) gives the parameters of `jax.jit(init)` bit for bit;
- `backends.select` picks the backend by platform, device count and whether oneDNN works, with
  one-line errors where the asked-for backend cannot run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import backends
from classic_cnns.backends import cpu
from classic_cnns.backends.cpu import onednn, ops
from classic_cnns.models import create_model, layers, model_info

OK, WHY = onednn.available()
needs_onednn = pytest.mark.skipif(
  not OK and os.environ.get("CLASSIC_CNNS_REQUIRE_ONEDNN") != "1",
  reason=f"oneDNN unavailable: {WHY}",
)
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# --------------------------------------------------------------------------- ops vs portable
@pytest.mark.parametrize("groups,rows,channels", [(1, 4096, 16), (4, 512, 8), (16, 128, 32)])
def test_batch_norm_train_equals_portable(groups, rows, channels):
  """ops.batch_norm_train (channel sums as dots, closed-form backward) == the portable two-pass
  formula with autodiff's gradient, per group of rows: output, statistics, gradients of x, scale, bias."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1.5, 2.0, (groups, rows, channels)), jnp.float32)
  scale = jnp.asarray(rng.normal(1.0, 0.3, (channels,)), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.3, (channels,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  y, mean, var = ops.batch_norm_train(x, scale, bias)
  y_ref, mean_ref, var_ref = layers.batch_norm_train_portable(x, scale, bias)
  np.testing.assert_allclose(y, y_ref, atol=2e-5)
  np.testing.assert_allclose(mean, mean_ref, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(var, var_ref, rtol=1e-4)
  np.testing.assert_allclose(var_ref, np.var(np.asarray(x, np.float64), axis=1), rtol=1e-5)
  grad = lambda bn: jax.jit(jax.grad(lambda *a: jnp.sum(jnp.sin(bn(*a)[0]) * w), (0, 1, 2)))(
    x, scale, bias
  )
  for g, r in zip(grad(ops.batch_norm_train), grad(layers.batch_norm_train_portable)):
    np.testing.assert_allclose(g, r, atol=2e-5 * float(jnp.abs(r).max()))


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_group_norm_equals_portable(groups):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(0.7, 1.5, (3, 64, 16)), jnp.float32)
  scale = jnp.asarray(rng.normal(1.0, 0.3, (16,)), jnp.float32)
  bias = jnp.asarray(rng.normal(0.0, 0.3, (16,)), jnp.float32)
  w = jnp.asarray(rng.normal(size=x.shape), jnp.float32)
  np.testing.assert_allclose(
    ops.group_norm(x, scale, bias, groups),
    layers.group_norm_portable(x, scale, bias, groups),
    atol=2e-5,
  )
  grad = lambda gn: jax.grad(lambda *a: jnp.sum(jnp.sin(gn(*a, groups)) * w), (0, 1, 2))(
    x, scale, bias
  )
  for g, r in zip(grad(ops.group_norm), grad(layers.group_norm_portable)):
    np.testing.assert_allclose(g, r, atol=2e-5 * float(jnp.abs(r).max()))


@pytest.mark.parametrize("use_onednn", [False, pytest.param(True, marks=needs_onednn)])
@pytest.mark.parametrize(
  "kernel,padding",
  [(1, "SAME"), (3, ((1, 1), (1, 1))), (7, ((3, 3), (3, 3))), (3, "VALID"), (3, ((0, 2), (1, 0)))],
)
def test_loop_conv_equals_lax_values_and_gradients(kernel, padding, use_onednn):
  """ops.make_loop_conv: XLA with the forward-layout backward pass (`_conv_loop`), or oneDNN."""
  conv = ops.make_loop_conv(use_onednn)
  kx, kk, kd = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, (3, 9, 8, 5))
  k = jax.random.normal(kk, (kernel, kernel, 5, 4))
  ref = lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )
  ours = lambda x, k: conv(x, k, (1, 1), padding)
  np.testing.assert_allclose(jax.jit(ours)(x, k), jax.jit(ref)(x, k), rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(kd, jax.eval_shape(ref, x, k).shape)
  grads = lambda f: jax.jit(jax.grad(lambda x, k: jnp.sum(f(x, k) * dy), argnums=(0, 1)))(x, k)
  for got, want in zip(grads(ours), grads(ref)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="stride-1"):
    conv(x, k, (2, 2), padding)


@pytest.mark.parametrize(
  "shape,window,strides,padding",
  [
    ((2, 9, 9, 3), (3, 3), (2, 2), ((1, 1), (1, 1))),  # ResNet / DenseNet stem pool
    ((2, 8, 8, 4), (2, 2), (2, 2), "VALID"),  # VGG
    ((2, 13, 13, 2), (3, 3), (2, 2), "VALID"),  # AlexNet's overlapping pool
    ((1, 7, 7, 2), (3, 3), (1, 1), ((1, 1), (1, 1))),  # Inception's pool branch
    ((1, 10, 10, 2), (3, 3), (2, 2), ((0, 1), (0, 1))),  # GoogLeNet ceil_mode padding
    (
      (1, 11, 10, 2),
      (2, 3),
      (3, 2),
      ((1, 0), (0, 2)),
    ),  # anything else: stride 3, uneven window/padding
  ],
)
def test_max_pool_values_and_gradient_equal_portable(shape, window, strides, padding):
  """ops.max_pool (through `layers.max_pool`, as the models call it): the portable max-pool's values;
  the gradient routes each output's cotangent to the same element as JAX's select-and-scatter (the
  first maximum), checked with many ties (integers)."""
  rng = np.random.default_rng(0)
  pool = lambda kernels: lambda x: layers.max_pool(x, window, strides, padding, kernels=kernels)
  for x in (rng.normal(size=shape), rng.integers(-2, 3, size=shape)):  # integers: ties everywhere
    x = jnp.asarray(x, jnp.float32)
    y_ref, vjp_ref = jax.vjp(pool(layers.PORTABLE), x)
    y, vjp = jax.vjp(pool(cpu.make_kernels("xla")), x)
    np.testing.assert_array_equal(y, y_ref)
    dy = jnp.asarray(
      2.0 ** rng.integers(0, 20, size=y.shape), jnp.float32
    )  # distinct powers: misrouting shows
    np.testing.assert_array_equal(vjp(dy)[0], vjp_ref(dy)[0])


def test_cpu_kernels_are_the_ops():
  for policy in ops.CONV_POLICIES:
    k = cpu.make_kernels(policy)
    assert k.name == f"cpu:{policy}"
    assert (k.max_pool, k.batch_norm_train, k.group_norm) == (
      ops.max_pool,
      ops.batch_norm_train,
      ops.group_norm,
    )


# --------------------------------------------------------------------------- whole models
# (model, input side, batch, overrides): every op kind the kernels carry -- strided and 1x1 convs,
# scanned convs (loop_conv), BatchNorm (plain and DenseNet's functional one), GroupNorm, max pools
# (NiN's 3x3/2, GoogLeNet's ceil-mode and 1-stride pool branch), a 7x7/2 stem, aux heads. Narrowed or
# shortened where the family allows it: compiling is what costs here.
_SMALL_GOOGLENET = (
  ("3a", 8, 8, 8, 4, 4, 4),
  "pool",
  ("4a", 8, 8, 8, 4, 4, 4),
  ("4d", 8, 8, 8, 4, 4, 4),
  "pool4",
  ("5a", 8, 8, 8, 4, 4, 4),
)
_SMALL_NIN = ((5, 1, 2, (32, 24, 16)), (5, 1, 2, (32, 32, 32)), (3, 1, 1, (32, 32, None)))
MODELS = {
  "resnet20": ("resnet20", 32, 4, {}),
  "resnet20-scan_blocks": ("resnet20", 32, 4, {"scan_blocks": True}),
  "resnet20-group": ("resnet20", 32, 4, {"norm": "group"}),
  "densenet_bc": ("densenet_bc_100_12", 32, 4, {"block_config": (2, 2)}),
  "densenet_bc-scan_layers": (
    "densenet_bc_100_12",
    32,
    4,
    {"block_config": (2, 2), "scan_layers": True},
  ),
  "densenet40-scan_layers": (
    "densenet40_k12",
    32,
    4,
    {"block_config": (3, 3), "scan_layers": True},
  ),
  "nin_cifar_bn": ("nin_cifar_bn", 32, 4, {"blocks": _SMALL_NIN}),
  "googlenet_bn_aux": ("googlenet_bn_aux", 32, 2, {"num_classes": 10, "table": _SMALL_GOOGLENET}),
}
SLOW = {"densenet_bc", "densenet40-scan_layers", "googlenet_bn_aux"}
_cache: dict[tuple[str, str], object] = {}  # (case, what) -> variables / the portable pass


def _setup(case):
  """(model with the portable kernels, variables, x, labels) of MODELS[case]; initialised once."""
  name, side, batch, overrides = MODELS[case]
  model = create_model(name, **overrides)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, side, side, model_info(name).in_channels))
  labels = jnp.arange(batch) % 10
  if (case, "variables") not in _cache:
    rngs = {"params": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)}
    _cache[case, "variables"] = jax.jit(lambda x: model.init(rngs, x, train=False))(x)
  return model, _cache[case, "variables"], x, labels


def _train_pass(model, variables, x, labels):
  """(hlo text, {loss, outputs, batch_stats, grads}) of one train-mode forward + backward, compiled once."""
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

  def loss_fn(params, x, labels):
    out, new = model.apply(
      {"params": params, **rest},
      x,
      train=True,
      rngs={"dropout": jax.random.PRNGKey(3)},
      mutable=["batch_stats"],
    )
    outs = (
      (out[0], *out[1]) if isinstance(out, tuple) else (out,)
    )  # GoogLeNet: (logits, aux logits)
    loss = sum(-jnp.mean(jax.nn.log_softmax(o)[jnp.arange(x.shape[0]), labels]) for o in outs)
    return loss, (outs, new.get("batch_stats", {}))

  lowered = jax.jit(jax.value_and_grad(loss_fn, has_aux=True)).lower(params, x, labels)
  (loss, (outs, stats)), grads = lowered.compile()(params, x, labels)
  return lowered.as_text(), {"loss": loss, "outputs": outs, "batch_stats": stats, "grads": grads}


def _leaf_errors(got, want):
  """Per leaf of `want`: (path, max |got - want| / max |want|, ||got - want|| / ||want||)."""
  assert jax.tree.structure(got) == jax.tree.structure(want)
  out = []
  for (path, b), a in zip(jax.tree_util.tree_leaves_with_path(want), jax.tree.leaves(got)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if b.size:
      tiny = np.finfo(np.float32).tiny
      out.append(
        (
          jax.tree_util.keystr(path),
          float(np.abs(a - b).max() / max(np.abs(b).max(), tiny)),
          float(np.linalg.norm(a - b) / max(np.linalg.norm(b), tiny)),
        )
      )
  return out


@pytest.mark.parametrize(
  "case", [c if c not in SLOW else pytest.param(c, marks=pytest.mark.slow) for c in MODELS]
)
@pytest.mark.parametrize("policy", [pytest.param("onednn", marks=needs_onednn), "xla"])
def test_model_train_pass_equals_portable(case, policy):
  """Loss, outputs and updated batch_stats agree to 1e-4 of each leaf's largest magnitude (measured:
  <= 5e-6). Gradients agree as closely (measured: <= 8e-6) unless a ReLU flips: a pre-activation
  within float32 rounding of 0 takes the other side under any reordering of the sums -- permuting
  the batch of the portable pass itself does it -- and each flip moves the gradients of every layer
  before it by up to ~1e-2 of the leaf's largest entry (measured: 7e-3; 1.6e-3 in norm); so their
  bound is 3e-2 elementwise and 1e-2 in norm, still far below what a wrong gradient gives (O(1))."""
  model, variables, x, labels = _setup(case)
  if (case, "portable") not in _cache:
    _cache[case, "portable"] = _train_pass(model, variables, x, labels)[1]
  want = _cache[case, "portable"]
  hlo, got = _train_pass(model.clone(kernels=cpu.make_kernels(policy)), variables, x, labels)
  assert ("ClassicCnnsConv" in hlo) == (policy == "onednn")  # the CPU kernels are really in use
  assert got["batch_stats"] or "group" in case
  for part in ("loss", "outputs", "batch_stats"):
    for path, worst, _ in _leaf_errors(got[part], want[part]):
      assert worst <= 1e-4, (part, path, worst)
  for path, worst, normwise in _leaf_errors(got["grads"], want["grads"]):
    assert worst <= 3e-2 and normwise <= 1e-2, (path, worst, normwise)


def test_backends_kernels_leave_the_parameters_alone():
  """Parameters and their names never depend on the kernels (abstract init, nothing compiled)."""
  x = jnp.zeros((1, 32, 32, 3))
  shapes = lambda k: jax.eval_shape(
    lambda: create_model("resnet20", scan_blocks=True, kernels=k).init(
      jax.random.PRNGKey(0), x, train=False
    )
  )
  assert shapes(cpu.make_kernels("xla")) == shapes(layers.PORTABLE)


# --------------------------------------------------------------------------- bit-identical init
# Run with XLA_FLAGS = the CPU backend's production flags only (tests/conftest.py adds
# --xla_backend_optimization_level=0 for this process, which changes the samplers' last bits against
# compile_init's level 1). argv: JSON [[name, side, overrides], ...]; prints "ok <name>" per model.
_INIT_BITS = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from classic_cnns import parallel
from classic_cnns.backends import cpu
from classic_cnns.models import create_model, model_info
mesh = parallel.make_mesh()
for name, side, overrides in json.loads(sys.argv[1]):
  model = create_model(name, **overrides)
  x = jnp.zeros((1, side, side, model_info(name).in_channels), jnp.float32)
  init = lambda: model.init({"params": jax.random.PRNGKey(7), "dropout": jax.random.PRNGKey(8)}, x, train=False)
  shardings = jax.tree.map(lambda _: parallel.replicated(mesh), jax.eval_shape(init))
  got, want = cpu.compile_init(init, shardings)(), jax.jit(init)()
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name + jax.tree_util.keystr(path))
  print("ok", name, flush=True)
'''


def _init_bits_equal(cases, timeout=600):
  env = {**os.environ, "XLA_FLAGS": cpu.XLA_FLAGS}
  r = subprocess.run(
    [sys.executable, "-c", _INIT_BITS, json.dumps(cases)],
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
    cwd=REPO,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert [l.split()[1] for l in r.stdout.splitlines() if l.startswith("ok ")] == [
    c[0] for c in cases
  ], r.stdout


# The plain `jax.jit(init)` side compiles at XLA's default LLVM level, slowly (ResNet-20: ~20 s on 2
# cores, a 6-layer DenseNet ~40 s): the default run checks ResNet-20 (variance-scaling and PyTorch
# uniform draws) and a narrow GoogLeNet-BN with aux heads (normal and LeCun truncated-normal draws);
# -m slow adds DenseNets (with draws inside scans) and the full GoogLeNet.
def test_compile_init_is_bit_identical_to_jit():
  _init_bits_equal(
    [["resnet20", 32, {}], ["googlenet_bn_aux", 32, {"num_classes": 10, "table": _SMALL_GOOGLENET}]]
  )


@pytest.mark.slow
def test_compile_init_is_bit_identical_to_jit_densenets_and_full_googlenet():
  _init_bits_equal(
    [
      ["densenet40_k12", 32, {"block_config": (3, 3)}],
      ["densenet40_k12", 32, {"block_config": (3, 3), "scan_layers": True}],
      ["googlenet_bn_aux", 224, {}],
    ],
    timeout=1800,
  )


# --------------------------------------------------------------------------- backends.select
@pytest.mark.parametrize("platform", ["cpu", "gpu", "tpu"])
def test_portable_runs_everywhere(platform):
  b = backends.select("portable", platform=platform, num_devices=8)
  assert b.name == "portable" and b.kernels is layers.PORTABLE
  assert b.prepare(lambda k: None, (1, 32, 32, 3)) is b


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_auto_is_portable_off_cpu_and_cpu_kernels_are_refused_there(platform):
  b = backends.select("auto", "auto", platform=platform, num_devices=4)
  assert b.name == "portable" and b.kernels is layers.PORTABLE and platform in b.describe()
  with pytest.raises(backends.BackendError) as e:
    backends.select("cpu", platform=platform, num_devices=4)
  assert "\n" not in str(e.value) and "CPU only" in str(e.value) and platform in str(e.value)


def test_cpu_without_onednn(monkeypatch):
  """kernels=cpu needs oneDNN (one line saying why); auto falls back to XLA's convolutions (the other
  CPU kernels stay); an explicit oneDNN conv policy is refused."""
  monkeypatch.setattr(onednn, "available", lambda: (False, "why: no oneDNN in this test"))
  with pytest.raises(backends.BackendError) as e:
    backends.select("cpu", platform="cpu", num_devices=1)
  assert "\n" not in str(e.value) and "why: no oneDNN in this test" in str(e.value)
  b = backends.select("auto", platform="cpu", num_devices=1)
  assert (b.name, b.cpu_convs, b.kernels.name) == ("cpu", "xla", "cpu:xla")
  assert "oneDNN unavailable" in b.describe() and b.kernels.max_pool is ops.max_pool
  for convs in ("onednn", "mixed", "measured"):
    with pytest.raises(backends.BackendError, match="needs oneDNN"):
      backends.select("auto", convs, platform="cpu", num_devices=1)
  b = backends.select("cpu", "xla", platform="cpu", num_devices=1)  # no oneDNN asked for: fine
  assert b.cpu_convs == "xla"


def test_multi_device_cpu_runs_convs_on_xla():
  for kernels in ("auto", "cpu"):
    b = backends.select(kernels, platform="cpu", num_devices=4)
    assert (b.name, b.cpu_convs) == ("cpu", "xla") and "4 devices" in b.describe()
  with pytest.raises(
    backends.BackendError, match="cpu_convs=onednn runs on one CPU device; this run has 4"
  ):
    backends.select("cpu", "onednn", platform="cpu", num_devices=4)


@needs_onednn
def test_single_cpu_with_onednn():
  assert backends.select("auto", platform="cpu", num_devices=1).cpu_convs == "mixed"
  assert backends.select("cpu", platform="cpu", num_devices=1).cpu_convs == "mixed"
  b = backends.select("cpu", "onednn", platform="cpu", num_devices=1)
  assert (b.cpu_convs, b.kernels.name) == ("onednn", "cpu:onednn")
  assert (
    b.prepare(lambda k: None, (1, 32, 32, 3)).kernels is b.kernels
  )  # nothing to prepare but `measured`


def test_unknown_choices_are_one_line_errors():
  with pytest.raises(
    backends.BackendError, match="config.kernels='cuda' is not one of auto, portable, cpu"
  ):
    backends.select("cuda", platform="cpu", num_devices=1)
  with pytest.raises(backends.BackendError, match="config.cpu_convs='fast' is not one of"):
    backends.select("cpu", "fast", platform="cpu", num_devices=1)


def test_default_xla_flags():
  assert backends.default_xla_flags("auto") == backends.default_xla_flags("cpu") == cpu.XLA_FLAGS
  assert backends.default_xla_flags("portable") == ""


def test_trainer_turns_backend_errors_into_config_errors(monkeypatch):
  from classic_cnns import build
  from classic_cnns.config import ConfigError, base_config

  monkeypatch.setattr(onednn, "available", lambda: (False, "why: no oneDNN in this test"))
  config = base_config()
  config.kernels = "cpu"
  with pytest.raises(ConfigError, match="why: no oneDNN in this test"):
    build.select_backend(config)
  config.kernels = "portable"
  assert build.select_backend(config).kernels is layers.PORTABLE
