"""ResNet family (He et al. 2016) + SE / CBAM plug-ins: counts, shapes, options, train/eval."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from classic_cnns.models import create_model, list_models, model_info, resnet
from classic_cnns.models.layers import AttnSpec
from classic_cnns.models.resnet import Bottleneck, stack_blocks
from tests.models.helpers import (
  abstract_init,
  abstract_output,
  abstract_variables,
  assert_exact_param_count,
  count_params,
  forward_backward_is_finite,
  init,
  leaves_equal,
  recording_kernels,
)

FAMILY = sorted(n for n in list_models() if model_info(n).builder.__module__ == resnet.__name__)
KEY = jax.random.PRNGKey(0)


def test_family_is_registered():
  expected = {f"resnet{d}" for d in (18, 34, 50, 101, 152, 20, 32, 44, 56, 110, 1202)}
  expected |= {"plain18", "plain34", "resnet34_a", "resnet34_c", "se_resnet50", "cbam_resnet50"}
  expected |= {f"plain{d}" for d in (20, 32, 44, 56, 110)}
  expected |= {f"resnet{d}_v1_5" for d in (50, 101, 152)}
  assert expected <= set(FAMILY) <= set(list_models())


@pytest.mark.parametrize(
  "depth,paper,tv", [(50, 3.86, 4.09), (101, 7.57, 7.80), (152, 11.28, 11.51)]
)
def test_bottleneck_layouts_by_name(depth, paper, tv):
  """resnet50/101/152: the paper's layout (stride in the first 1x1 conv, Table 1, 3.8 GFLOPs for
  ResNet-50); resnet*_v1_5: torchvision's (stride in the 3x3 conv, 4.1): same parameters."""
  assert create_model(f"resnet{depth}").stride_in == "paper"
  assert create_model(f"resnet{depth}_v1_5").stride_in == "v1.5"
  a, b = model_info(f"resnet{depth}"), model_info(f"resnet{depth}_v1_5")
  assert a.paper_params == b.paper_params and (a.paper_gmacs, b.paper_gmacs) == (paper, tv)
  assert "resnet18_v1_5" not in list_models()  # basic blocks have one layout


@pytest.mark.parametrize("name", FAMILY)
def test_exact_param_count(name):
  assert_exact_param_count(name)


def _se_extra(channels_per_block, r=16, bias=True, cbam=False):
  """SE adds 2*C*(C/r) (+ C/r + C biases) per block; CBAM adds also the 7x7 2->1 conv + 2 norm params."""
  total = 0
  for c in channels_per_block:
    h = max(c // r, 1)
    total += 2 * c * h + (h + c if bias else 0) + (7 * 7 * 2 + 2 if cbam else 0)
  return total


def _blocks(stages, widths):
  return [w for n, w in zip(stages, widths) for _ in range(n)]


R50 = _blocks((3, 4, 6, 3), (256, 512, 1024, 2048))


def test_derived_attention_counts_follow_the_formula():
  base = {
    n: model_info(n).paper_params
    for n in ("resnet18", "resnet34", "resnet20", "resnet56", "resnet50")
  }
  assert model_info("se_resnet50").paper_params == base["resnet50"] + _se_extra(R50)
  assert model_info("cbam_resnet50").paper_params == base["resnet50"] + _se_extra(R50, cbam=True)
  basic = (64, 128, 256, 512)
  assert model_info("se_resnet18").paper_params == base["resnet18"] + _se_extra(
    _blocks((2,) * 4, basic)
  )
  assert model_info("se_resnet34").paper_params == base["resnet34"] + _se_extra(
    _blocks((3, 4, 6, 3), basic)
  )
  for d in (20, 56):
    blocks = _blocks((((d - 2) // 6),) * 3, (16, 32, 64))
    assert model_info(f"se_resnet{d}").paper_params == base[f"resnet{d}"] + _se_extra(blocks)
    assert model_info(f"cbam_resnet{d}").paper_params == base[f"resnet{d}"] + _se_extra(
      blocks, cbam=True
    )


@pytest.mark.parametrize(
  "r,millions", [(2, 45.68), (4, 35.62), (8, 30.59), (16, 28.07), (32, 26.81)]
)
def test_se_table10_counts_without_fc_bias(r, millions):
  v = abstract_variables("resnet50", attn=AttnSpec("se", reduction=r, use_bias=False))
  assert round(count_params(v["params"]) / 1e6, 2) == millions


@pytest.mark.parametrize("norm", ["group", "layer", "instance"])
def test_norm_choice_keeps_the_count(norm):
  assert_exact_param_count("resnet50", norm=norm)


def test_shortcut_options_and_plain_nets():
  def n_params(name, **kw):
    return count_params(abstract_variables(name, **kw)["params"])

  assert (
    n_params("resnet34", shortcut="A")
    == n_params("plain34")
    < n_params("resnet34")
    < n_params("resnet34_c")
  )
  assert (
    n_params("resnet20", shortcut="A") == n_params("plain20") < n_params("resnet20", shortcut="B")
  )
  plain = abstract_variables("plain18")["params"]
  assert not any("shortcut" in k for blk in plain.values() for k in blk)
  opt_a = abstract_variables("resnet34_a")["params"]
  assert not any("shortcut" in k for blk in opt_a.values() for k in blk)
  opt_c = abstract_variables("resnet34_c")["params"]
  assert all("shortcut" in opt_c[k] for k in opt_c if k.startswith("layer"))
  with pytest.raises(ValueError):
    abstract_variables("resnet18", shortcut="D")
  with pytest.raises(ValueError):
    create_model("resnet18", not_a_field=1)


@pytest.mark.parametrize(
  "name", ["resnet18", "resnet50", "se_resnet50", "cbam_resnet50", "plain34"]
)
def test_imagenet_output_shape(name):
  assert abstract_output(name).shape == (2, 1000)


@pytest.mark.parametrize("name", ["resnet20", "plain20", "se_resnet20", "cbam_resnet20"])
def test_cifar_output_shape(name):
  assert abstract_output(name, input_size=32).shape == (2, 10)


def test_bfloat16_compute_float32_params():
  out = abstract_output("resnet20", dtype=jnp.bfloat16)
  assert out.dtype == jnp.bfloat16
  params = abstract_variables("resnet20", dtype=jnp.bfloat16)["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))


def _intermediates(name, size, **kw):
  model = create_model(name, **kw)
  x = jnp.zeros((1, size, size, 3))

  def run():
    v = model.init(KEY, x, train=False)
    return model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])[1]

  return jax.eval_shape(run)["intermediates"]


def test_stride_in_moves_the_stride_only():
  paper, v15 = (_intermediates("resnet50", 64, stride_in=s) for s in ("paper", "v1.5"))
  for stage, n in zip((1, 2, 3, 4), (3, 4, 6, 3)):  # every block's output has the same shape
    for j in range(n):
      k = f"layer{stage}_{j}"
      assert paper[k]["__call__"][0].shape == v15[k]["__call__"][0].shape
  # stage 2, first block: input 16x16 -> output 8x8; the stride sits in conv1 ("paper") or conv2 ("v1.5").
  shape = lambda t, conv: t["layer2_0"][conv]["__call__"][0].shape[1:3]
  assert shape(paper, "conv1") == (8, 8) and shape(paper, "conv2") == (8, 8)
  assert shape(v15, "conv1") == (16, 16) and shape(v15, "conv2") == (8, 8)
  p, v = (
    abstract_variables("resnet50", input_size=64, stride_in=s)["params"] for s in ("paper", "v1.5")
  )
  assert jax.tree.map(lambda a: a.shape, p) == jax.tree.map(lambda a: a.shape, v)


def test_forward_backward_finite_resnet20():
  forward_backward_is_finite("resnet20", 32)


@pytest.mark.parametrize("attn", ["se", "cbam"])
def test_forward_backward_finite_with_attention(attn):
  # resnet20's layout with one block per stage (resnet8) keeps the compile short.
  forward_backward_is_finite("resnet20", 32, attn=attn, stage_sizes=(1, 1, 1))


@pytest.mark.parametrize(
  "name,kw",
  [
    ("resnet20", {"stage_sizes": (1, 1, 1)}),
    ("resnet20", {"stage_sizes": (1, 1, 1), "shortcut": "B", "attn": "se"}),
  ],
)
def test_zero_init_last_norm_makes_blocks_identity(name, kw):
  model = create_model(name, zero_init_last_norm=True, **kw)
  x = jax.random.normal(KEY, (2, 16, 16, 3))
  v = init(model, KEY, x, train=False)
  _, state = model.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
  inter = state["intermediates"]
  blocks = [k for k in inter if k.startswith("layer")]
  assert blocks
  for k in blocks:
    assert float(jnp.max(jnp.abs(inter[k]["conv2"]["__call__"][0]))) == 0.0
  if kw.get("shortcut", "A") == "A":  # option A: block = relu(subsample + zero pad)
    prev = inter["stem"]["__call__"][0]
    for k in sorted(blocks, key=lambda s: (int(s[5]), int(s[7:]))):
      out = inter[k]["__call__"][0]
      s = prev.shape[1] // out.shape[1]
      ref = jnp.pad(prev[:, ::s, ::s], ((0, 0),) * 3 + ((0, out.shape[-1] - prev.shape[-1]),))
      np.testing.assert_allclose(out, ref, atol=1e-6)
      prev = out


@pytest.mark.parametrize("stride_in", ["paper", "v1.5"])
def test_zero_init_bottleneck_is_projection_plus_relu(stride_in):
  block = Bottleneck(32, strides=2, stride_in=stride_in, zero_init_last_norm=True)
  x = jax.random.normal(KEY, (2, 8, 8, 16))
  v = block.init(KEY, x, train=False)
  y, state = block.apply(v, x, train=False, capture_intermediates=True, mutable=["intermediates"])
  inter = state["intermediates"]
  assert float(jnp.max(jnp.abs(inter["conv3"]["__call__"][0]))) == 0.0
  np.testing.assert_allclose(y, jax.nn.relu(inter["shortcut"]["__call__"][0]), atol=1e-6)
  assert y.shape == (2, 4, 4, 32)


def test_batch_stats_change_only_in_train():
  model = create_model("resnet20", stage_sizes=(1, 1, 1))
  x = jax.random.normal(KEY, (4, 16, 16, 3))
  v = init(model, KEY, x, train=False)
  apply = jax.jit(model.apply, static_argnames=("train", "mutable"))  # eager: one compile per op
  out_eval, st_eval = apply(v, x, train=False, mutable=("batch_stats",))
  assert all(leaves_equal(st_eval["batch_stats"], v["batch_stats"]))
  out_train, st_train = apply(v, x, train=True, mutable=("batch_stats",))
  assert not any(leaves_equal(st_train["batch_stats"], v["batch_stats"]))
  assert not np.allclose(out_eval, out_train)


# --------------------------------------------------------------------------- scan_blocks
@pytest.mark.parametrize("name", FAMILY)
def test_scan_blocks_keeps_the_exact_param_count(name):
  assert_exact_param_count(name, scan_blocks=True)


# Short nets keep the compiles short: a stage of n > 2 blocks is scanned, n <= 2 stays unrolled.
@pytest.mark.parametrize(
  "name,side,kw",
  [
    ("resnet20", 16, {"stage_sizes": (3, 1, 2)}),  # basic, option A
    (
      "resnet50",
      32,
      {"stage_sizes": (3, 1), "widths": (8, 16), "attn": AttnSpec("se", reduction=4)},
    ),
  ],
)  # bottleneck + SE
def test_scan_blocks_is_the_same_network(name, side, kw):
  """The scanned model with the unrolled model's parameters (stack_blocks) gives the same logits,
  gradients and BatchNorm statistics: it is a compile-time layout, not a different net."""
  flat, scanned = create_model(name, **kw), create_model(name, scan_blocks=True, **kw)
  x = jax.random.normal(KEY, (4, side, side, 3))
  labels = jnp.arange(4) % flat.num_classes
  v_flat = init(flat, KEY, x, train=False)
  v_scan = stack_blocks(v_flat, flat.stage_sizes)
  # the layout stack_blocks produces is the one the scanned model initialises
  assert jax.tree.structure(v_scan) == jax.tree.structure(
    jax.eval_shape(lambda: scanned.init(KEY, x, train=False))
  )
  assert any(k.endswith("_rest") for k in v_scan["params"])

  def loss_and_grads(model, v):
    def loss(params):
      logits, new = model.apply({**v, "params": params}, x, train=True, mutable=["batch_stats"])
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels]), new

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(v["params"])

  (l_flat, new_flat), g_flat = loss_and_grads(flat, v_flat)
  (l_scan, new_scan), g_scan = loss_and_grads(scanned, v_scan)
  np.testing.assert_allclose(l_scan, l_flat, rtol=1e-6)
  for got, want in zip(
    jax.tree.leaves(g_scan), jax.tree.leaves(stack_blocks({"params": g_flat}, flat.stage_sizes))
  ):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(want))))
  for got, want in zip(
    jax.tree.leaves(new_scan), jax.tree.leaves(stack_blocks(new_flat, flat.stage_sizes))
  ):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  evaluate = lambda model, v: jax.jit(functools.partial(model.apply, train=False))(v, x)
  np.testing.assert_allclose(
    evaluate(scanned, v_scan), evaluate(flat, v_flat), rtol=1e-5, atol=1e-5
  )


def test_scan_blocks_initialises_each_block_with_its_own_key():
  v = abstract_variables("resnet20")  # shapes only; values below come from one real init
  model = create_model("resnet20", scan_blocks=True, stage_sizes=(1, 1, 3))
  x = jnp.zeros((1, 16, 16, 3))
  kernels = init(model, KEY, x, train=False)["params"]["layer3_rest"]["block"]["conv1"]["conv"][
    "kernel"
  ]
  assert kernels.shape[0] == 2 and not np.allclose(kernels[0], kernels[1])
  assert "layer3_rest" not in v["params"]  # the default stays the paper's one module per block


# --------------------------------------------------------------------------- kernels
def _grad_jaxpr(model, variables, size):
  """The jaxpr of the cross-entropy gradient w.r.t. params in train mode (traced, not compiled)."""
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  params, rest = variables["params"], {k: s for k, s in variables.items() if k != "params"}

  def loss(params, rest, x):
    logits, _ = model.apply({"params": params, **rest}, x, train=True, mutable=["batch_stats"])
    labels = jnp.arange(x.shape[0]) % logits.shape[-1]
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(x.shape[0]), labels])

  return jax.make_jaxpr(jax.grad(loss))(params, rest, x)


@pytest.mark.parametrize(
  "name,kw",
  [
    ("resnet20", {}),
    ("resnet20", {"scan_blocks": True}),
    ("resnet18", {"attn": "cbam", "stage_sizes": (3, 1), "scan_blocks": True}),
  ],
)
def test_portable_gradient_is_plain_autodiff(name, kw):
  """The default kernels: no custom VJPs, no foreign calls anywhere in the training gradient."""
  model = create_model(name, **kw)
  jaxpr = str(_grad_jaxpr(model, abstract_init(model, 32), 32))
  assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


def _n_convs_norms(variables, skip=lambda path: False):
  """Conv kernels and norms (scale params) in `variables`, outside the paths `skip` selects."""
  flat = {k: a for k, a in traverse_util.flatten_dict(variables["params"]).items() if not skip(k)}
  return (
    sum(k[-1] == "kernel" and a.ndim == 4 for k, a in flat.items()),
    sum(k[-1] == "scale" for k in flat),
  )


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_every_op_goes_through_the_kernels_field(norm):
  """Stem, max pool, blocks, projection shortcuts and CBAM: each conv / pool / norm calls `kernels`."""
  kernels, calls = recording_kernels()
  model = create_model(
    "resnet18",
    stage_sizes=(2, 1),
    widths=(8, 16),
    attn=AttnSpec("cbam", reduction=4),  # 8 // 4 = 2 hidden units (8 // 16 = 0 cannot be built)
    norm=norm,
    kernels=kernels,
  )
  v = abstract_init(model, 32)
  convs, norms = _n_convs_norms(v)
  calls.clear()  # count one training forward
  _grad_jaxpr(model, v, 32)
  norm_op = "batch_norm_train" if norm == "batch" else "group_norm"
  assert calls == {"conv": convs, "max_pool": 1, norm_op: norms}


def test_scanned_blocks_use_the_loop_conv():
  kernels, calls = recording_kernels()
  model = create_model(
    "resnet18",
    stage_sizes=(3, 1),
    widths=(8, 16),
    attn=AttnSpec("se", reduction=4),
    scan_blocks=True,
    kernels=kernels,
  )
  v = abstract_init(model, 32)
  convs, norms = _n_convs_norms(v, skip=lambda path: path[0].endswith("_rest"))
  calls.clear()
  _grad_jaxpr(model, v, 32)
  assert calls["conv"] == convs and calls["max_pool"] == 1  # the convs outside the scan only
  assert (
    calls["loop_conv"] >= 2 and calls["batch_norm_train"] >= norms + 2
  )  # + the scanned block's two
