"""kernels/autotune.py and the `measured` backend: every mix of libraries computes the same conv; a
geometry is measured once (memory, then the disk cache); a corrupt cache is re-measured over; init's
abstract batch-1 pass measures nothing; `measured` is refused where oneDNN cannot run."""
from __future__ import annotations

import itertools
import json
import os

import jax
import numpy as np
import pytest

from classic_cnns.kernels import autotune, onednn

OK, WHY = onednn.available()
needs_onednn = pytest.mark.skipif(not OK and os.environ.get("CLASSIC_CNNS_REQUIRE_ONEDNN") != "1",
                                  reason=f"oneDNN unavailable: {WHY}")


@pytest.fixture
def cache(tmp_path, monkeypatch):
  """A fresh, private choices cache (memory and disk) for the test."""
  monkeypatch.setenv("CLASSIC_CNNS_CACHE", str(tmp_path))
  monkeypatch.setattr(autotune, "_CHOICES", None)
  monkeypatch.setattr(autotune, "_spent", [0.0])
  return tmp_path / "conv_choices.json"


@needs_onednn
@pytest.mark.parametrize("strides,padding", [((1, 1), ((1, 1), (1, 1))), ((2, 2), ((1, 1), (1, 1))),
                                             ((2, 2), ((0, 0), (0, 0)))])
def test_every_library_mix_is_the_same_convolution(strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 9, 9, 5))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7)) * 0.3
  if padding == ((0, 0), (0, 0)):
    w = w[:1, :1]
  loss = lambda conv: lambda x, w: (conv(x, w) ** 2).sum()
  ref = jax.value_and_grad(loss(lambda x, w: onednn._xla_conv(x, w, strides, padding)), argnums=(0, 1))(x, w)
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
  fake = {"forward": {"onednn": 2.0, "xla": 1.0}, "backward_data": {"onednn": 1.0, "xla": 0.9},
          "backward_weights": {"onednn": 1.0, "xla": 2.0}}
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
  monkeypatch.setattr(autotune, "measure", lambda *a: {p: {"onednn": 1.0, "xla": 2.0} for p in onednn.PASSES})
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
  assert all(set(t) == {"onednn", "xla"} and all(0 < s < 5 for s in t.values()) for t in times.values())


@needs_onednn
def test_measured_model_matches_xla_and_init_measures_nothing(cache, monkeypatch):
  import optax
  from classic_cnns import parallel, train
  from classic_cnns.models import create_model, layers
  seen = []
  monkeypatch.setattr(autotune, "measure", lambda x, w, s, p: seen.append(x) or
                      {q: {"onednn": 1.0, "xla": 0.5 if q == "forward" else 2.0} for q in onednn.PASSES})
  model = create_model("resnet20")
  with layers.conv_backend("measured"):
    state = train.create_train_state(model, optax.sgd(0.1), (32, 32, 3), 0, parallel.make_mesh())
    assert seen == []  # the init's forward pass is abstract: nothing timed
    x = jax.random.normal(jax.random.PRNGKey(2), (4, 32, 32, 3))
    v = {"params": state.params, "batch_stats": state.batch_stats}
    f = lambda p: model.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[0].sum()
    got = jax.jit(jax.value_and_grad(f))(state.params)
  assert seen and all(s[0] == 4 for s in seen)
  with layers.conv_backend("xla"):
    want = jax.jit(jax.value_and_grad(f))(state.params)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-3)


def test_measured_is_selected_only_where_onednn_works():
  from classic_cnns import train
  from classic_cnns.config import base_config
  config = base_config()
  config.conv_backend = "measured"
  if OK:
    assert train.select_conv_backend(config, 1)[0] == "measured"
  from classic_cnns.config import ConfigError
  with pytest.raises(ConfigError, match="conv_backend=measured runs on one CPU device"):
    train.select_conv_backend(config, 2)
