"""backends/cpu/autotune.py and the `measured` conv policy: every mix of libraries computes the same
conv; a geometry is measured once (memory, then the disk cache); a corrupt cache is re-measured over;
the measuring is a pre-pass (`conv_geometries` + `measure_table`, by `cpu.prepare_kernels`): nothing
is timed while a step is traced or the parameters initialised; `measured` is refused where oneDNN
cannot run."""

from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import backends
from classic_cnns.backends import cpu
from classic_cnns.backends.cpu import autotune, onednn, ops
from classic_cnns.models import layers

OK, WHY = onednn.available()
needs_onednn = pytest.mark.skipif(
  not OK and os.environ.get("CLASSIC_CNNS_REQUIRE_ONEDNN") != "1",
  reason=f"oneDNN unavailable: {WHY}",
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """A fresh, private choices cache (memory and disk) for the test."""
  monkeypatch.setenv("CLASSIC_CNNS_CACHE", str(tmp_path))
  monkeypatch.setattr(autotune, "_CHOICES", None)
  monkeypatch.setattr(autotune, "_spent", [0.0])
  return tmp_path / "conv_choices.json"


@needs_onednn
@pytest.mark.parametrize(
  "strides,padding",
  [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((1, 1), (1, 1))), ((2, 2), ((0, 0), (0, 0)))],
)
def test_every_library_mix_is_the_same_convolution(strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 9, 5))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7)) * 0.3
  if padding == ((0, 0), (0, 0)):
    w = w[:1, :1]
  loss = lambda conv: lambda x, w: (conv(x, w) ** 2).sum()
  ref = jax.value_and_grad(
    loss(lambda x, w: onednn._xla_conv(x, w, strides, padding)), argnums=(0, 1)
  )(x, w)
  for r in range(len(onednn.PASSES) + 1):
    for on_xla in itertools.combinations(onednn.PASSES, r):
      conv = lambda x, w: onednn.conv2d(x, w, strides, padding, on_xla=on_xla)
      got = jax.jit(jax.value_and_grad(loss(conv), argnums=(0, 1)))(x, w)
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4, err_msg=str(on_xla))
  with pytest.raises(ValueError, match="on_xla"):
    onednn.conv2d(x, w, strides, padding, on_xla=("backward",))


@needs_onednn
def test_a_geometry_is_measured_once_and_cached_on_disk(cache, monkeypatch):
  calls = []
  fake = {
    "forward": {"onednn": 2.0, "xla": 1.0},
    "backward_data": {"onednn": 1.0, "xla": 0.9},
    "backward_weights": {"onednn": 1.0, "xla": 2.0},
  }
  monkeypatch.setattr(autotune, "measure", lambda *a: calls.append(a) or fake)
  geometry = ((8, 6, 6, 4), (3, 3, 4, 4), (1, 1), ((1, 1), (1, 1)))
  # forward: XLA 2x faster -> XLA; backward_data: only 1.1x -> stays on oneDNN (XLA_MARGIN); dw: oneDNN.
  assert autotune.xla_passes(*geometry) == {"forward"}
  assert autotune.xla_passes(*geometry) == {"forward"} and len(calls) == 1
  assert list(json.loads(cache.read_text()).values()) == [["forward"]]
  monkeypatch.setattr(autotune, "_CHOICES", None)  # a new process: read back from disk
  assert autotune.xla_passes(*geometry) == {"forward"} and len(calls) == 1


@needs_onednn
def test_corrupt_cache_is_measured_over(cache, monkeypatch):
  cache.write_text("{not json")
  monkeypatch.setattr(
    autotune, "measure", lambda *a: {p: {"onednn": 1.0, "xla": 2.0} for p in onednn.PASSES}
  )
  assert autotune.xla_passes((2, 4, 4, 3), (1, 1, 3, 3), (1, 1), ((0, 0), (0, 0))) == frozenset()
  assert len(json.loads(cache.read_text())) == 1


@needs_onednn
def test_budget_spent_means_onednn_without_measuring(cache, monkeypatch):
  monkeypatch.setattr(autotune, "_spent", [autotune.BUDGET_SECONDS])
  monkeypatch.setattr(autotune, "measure", lambda *a: pytest.fail("measured after the budget"))
  assert autotune.xla_passes((2, 4, 4, 3), (1, 1, 3, 3), (1, 1), ((0, 0), (0, 0))) == frozenset()
  assert not cache.exists()


@needs_onednn
def test_real_measurement_times_every_pass_on_both_libraries(cache):
  times = autotune.measure((2, 6, 6, 3), (3, 3, 3, 4), (1, 1), ((1, 1), (1, 1)))
  assert set(times) == set(onednn.PASSES)
  assert all(
    set(t) == {"onednn", "xla"} and all(0 < s < 5 for s in t.values()) for t in times.values()
  )


def _fake_measure(seen):
  """autotune.measure stand-in: records each geometry; XLA 2x faster on the forward pass only."""

  def measure(x_shape, w_shape, strides, padding):
    seen.append((x_shape, w_shape, strides, padding))
    return {p: {"onednn": 1.0, "xla": 0.5 if p == "forward" else 2.0} for p in onednn.PASSES}

  return measure


def _resnet20(kernels):
  from classic_cnns.models import create_model

  return create_model("resnet20", kernels=kernels)


def test_conv_geometries_records_a_forward_pass_without_compiling():
  def forward(conv, x):
    model = _resnet20(layers.Kernels(conv=conv))
    variables = model.init(jax.random.PRNGKey(0), x, train=False)
    return model.apply(variables, x, train=True, mutable=["batch_stats"])

  geometries = autotune.conv_geometries(forward, jax.ShapeDtypeStruct((4, 32, 32, 3), jnp.float32))
  same = ((1, 1), (1, 1))
  assert ((4, 32, 32, 3), (3, 3, 3, 16), (1, 1), same) in geometries  # the stem
  assert ((4, 32, 32, 16), (3, 3, 16, 32), (2, 2), same) in geometries  # stage 2's first conv
  assert ((4, 8, 8, 64), (3, 3, 64, 64), (1, 1), same) in geometries  # stage 3
  assert all(x[0] == 4 for x, *_ in geometries) and len(set(geometries)) == len(geometries)
  # ResNet-20 (option A shortcuts): stem, 3x3 16->16, 16->32/2, 32->32, 32->64/2, 64->64.
  assert len(geometries) == 6, geometries


@needs_onednn
def test_measured_kernels_use_the_table_and_nothing_is_timed_while_tracing(cache, monkeypatch):
  import optax
  from classic_cnns import parallel
  from classic_cnns import build

  seen = []
  monkeypatch.setattr(autotune, "measure", _fake_measure(seen))
  batch = (4, 32, 32, 3)
  backend = backends.select("cpu", "measured", platform="cpu", num_devices=1)
  assert backend.cpu_convs == "measured" and seen == []  # selecting times nothing
  backend = backend.prepare(_resnet20, batch)  # the pre-pass: every geometry of the step timed here
  assert len(seen) == 6 and all(x[0] == 4 for x, *_ in seen)
  measured = len(seen)

  model = _resnet20(backend.kernels)
  state = build.create_train_state(
    model, optax.sgd(0.1), batch[1:], 0, parallel.make_mesh(), backend
  )
  x = jax.random.normal(jax.random.PRNGKey(2), batch)
  v = {"params": state.params, "batch_stats": state.batch_stats}

  def loss(model):
    return lambda p: model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[
      0
    ].sum()

  step = jax.jit(jax.value_and_grad(loss(model)))
  hlo = step.lower(state.params).as_text()
  assert len(seen) == measured  # init and the step's trace time nothing
  # The table says: forward passes on XLA, both gradients on oneDNN.
  assert "ClassicCnnsConvForward" not in hlo
  assert "ClassicCnnsConvBackwardData" in hlo and "ClassicCnnsConvBackwardWeights" in hlo
  got = step(state.params)
  assert len(seen) == measured
  # A second prepare reads the in-memory choices: nothing timed again.
  cpu.prepare_kernels(cpu.make_kernels("measured"), "measured", _resnet20, batch)
  assert len(seen) == measured
  want = jax.jit(jax.value_and_grad(loss(model.clone(kernels=cpu.make_kernels("xla")))))(
    state.params
  )
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


@needs_onednn
def test_measured_conv_runs_the_passes_its_table_names_on_xla():
  """make_conv("measured", table): a geometry's passes named in the table (keyed by ops.geometry_key,
  as measure_table stores them) run on XLA, the others on oneDNN; a geometry not in the table runs
  on oneDNN. Same values either way."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
  table = {
    ops.geometry_key(x.shape, w.shape, (1, 1), ((1, 1), (1, 1))): frozenset(
      {"forward", "backward_data"}
    )
  }
  dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))

  def grad_hlo(conv, padding):
    f = jax.jit(
      jax.value_and_grad(
        lambda x, w: (conv(x, w, (1, 1), padding, dimension_numbers=dn) ** 2).sum(), (0, 1)
      )
    )
    return f.lower(x, w).as_text(), f(x, w)

  measured = ops.make_conv("measured", table)
  hlo, got = grad_hlo(measured, "SAME")  # "SAME" is resolved to the table's explicit pads
  assert "ClassicCnnsConvForward" not in hlo and "ClassicCnnsConvBackwardData" not in hlo
  assert "ClassicCnnsConvBackwardWeights" in hlo
  hlo_other, _ = grad_hlo(measured, "VALID")  # another geometry: all on oneDNN
  assert all(
    f"ClassicCnnsConv{p}" in hlo_other for p in ("Forward", "BackwardData", "BackwardWeights")
  )
  _, want = grad_hlo(jax.lax.conv_general_dilated, "SAME")
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_measured_is_selected_only_where_onednn_works(monkeypatch):
  if OK:
    assert backends.select("cpu", "measured", platform="cpu", num_devices=1).cpu_convs == "measured"
  with pytest.raises(backends.BackendError, match="cpu_convs=measured runs on one CPU device"):
    backends.select("cpu", "measured", platform="cpu", num_devices=2)
  monkeypatch.setattr(onednn, "available", lambda: (False, "no oneDNN here"))
  with pytest.raises(backends.BackendError, match="no oneDNN here"):
    backends.select("auto", "measured", platform="cpu", num_devices=1)
