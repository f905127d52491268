"""The whole training loop on the embedded MNIST sample, in-process."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import train
from classic_cnns import backends
from classic_cnns import build
from classic_cnns import steps
from classic_cnns import workdir
from tests.helpers import lenet_config


def _read_jsonl(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(l) for l in f]


def test_lenet5_learns_the_embedded_sample(tmp_path):
  """3 epochs of the main job's recipe: a real accuracy threshold on 2,000 held-out MNIST digits."""
  c = lenet_config(num_epochs=3.0, eval_every_epochs=1.0)
  result = train.train_and_evaluate(c, str(tmp_path))
  assert result.test["count"] == 2000
  assert result.test["top1"] >= 0.95, result.test
  records = _read_jsonl(tmp_path)
  assert [r["split"] for r in records if r["split"] != "train"] == ["test", "test", "test_final"]
  assert os.listdir(tmp_path / "tensorboard")
  assert json.load(open(tmp_path / "classes.json")) == [str(i) for i in range(10)]


def _params(workdir, config):
  """Final parameters as restored from the last checkpoint."""
  from classic_cnns import checkpoint

  ck = checkpoint.Checkpointer(str(workdir), 1, 3)
  step = ck.steps()[-1]
  import orbax.checkpoint as ocp

  restored = ck.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  ck.close()
  return restored["state"]["params"], step


def test_resume_continues_exactly(tmp_path):
  """A run stopped at step 30 and rerun to 50 equals an uninterrupted 50-step run, bit for bit."""
  common = dict(
    num_steps=50,
    log_every_steps=10,
    eval_every_steps=20,
    checkpoint_every_steps=10,
    **{"schedule.name": "constant", "data.val_size": 500},
  )
  full = tmp_path / "full"
  train.train_and_evaluate(lenet_config(**common), str(full))
  part = tmp_path / "part"
  train.train_and_evaluate(lenet_config(**{**common, "num_steps": 30}), str(part))
  r = train.train_and_evaluate(lenet_config(**common), str(part))
  assert r.final_step == 50
  p_full, s1 = _params(full, None)
  p_part, s2 = _params(part, None)
  assert s1 == s2 == 50
  for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(p_part)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  full_records = [r for r in _read_jsonl(full) if r["split"] != "test_final"]
  part_records = [r for r in _read_jsonl(part) if r["split"] != "test_final"]
  # The 30-step run's own final eval/test lines are replaced by the resumed run's.
  assert [r for r in full_records if r["split"] == "train"] == [
    r for r in part_records if r["split"] == "train"
  ]


def test_rerun_of_a_finished_run_does_not_train_again(tmp_path):
  c = lenet_config(num_steps=20, log_every_steps=10, checkpoint_every_steps=10)
  train.train_and_evaluate(c, str(tmp_path))
  mtime = os.path.getmtime(tmp_path / "checkpoints" / "20")
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r.final_step == 20 and os.path.getmtime(tmp_path / "checkpoints" / "20") == mtime


def test_workdir_of_another_model_is_refused(tmp_path):
  from classic_cnns.config import ConfigError

  train.train_and_evaluate(lenet_config(num_steps=10, log_every_steps=5), str(tmp_path))
  with pytest.raises(ConfigError, match="holds a run of model 'lenet5'"):
    train.train_and_evaluate(
      lenet_config(num_steps=10, **{"model.name": "lenet5_lecun"}), str(tmp_path)
    )


def test_divergence_stops_with_a_clear_message(tmp_path):
  c = lenet_config(
    num_steps=20,
    log_every_steps=5,
    **{"optimizer.name": "sgd", "optimizer.lr": 1e12, "model.act": "relu"},
  )
  with pytest.raises(steps.TrainingDivergedError, match="a lower config.optimizer.lr"):
    train.train_and_evaluate(c, str(tmp_path))


def test_lecun_variant_trains(tmp_path):
  c = lenet_config(
    num_steps=150,
    log_every_steps=50,
    **{"model.name": "lenet5_lecun", "model.act": "scaled_tanh", "optimizer.lr": 0.002},
  )
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r.test["top1"] > 0.8, r.test


def test_workdir_of_the_other_resnet_layout_is_refused(tmp_path):
  """scan_blocks stacks a ResNet's parameters, so a workdir's checkpoints only fit the same layout."""
  from classic_cnns.config import ConfigError

  (tmp_path / "checkpoints").mkdir()
  (tmp_path / "config.json").write_text(
    json.dumps({"model": {"name": "resnet20", "scan_blocks": True}})
  )
  c = lenet_config(**{"model.name": "resnet20"})
  c.model.scan_blocks = False
  with pytest.raises(ConfigError, match="model.scan_blocks=True"):
    workdir.prepare_workdir(str(tmp_path), c)
  c.model.scan_blocks = True
  workdir.prepare_workdir(str(tmp_path), c)  # the same layout is accepted


def test_all_finite_finds_one_bad_element_in_any_leaf():
  """The step's single concatenated finiteness check (skip_nonfinite_steps, the divergence stop)."""
  import jax.numpy as jnp

  tree = {
    "a": jnp.ones((3, 3, 4, 2)),
    "b": {"c": jnp.zeros((5,)), "d": jnp.arange(6.0).reshape(2, 3)},
  }
  assert bool(jax.jit(steps.all_finite)(tree))
  for bad in (np.nan, np.inf, -np.inf):
    for path in (("a",), ("b", "c"), ("b", "d")):
      t = jax.tree.map(np.array, tree)
      leaf = t[path[0]] if len(path) == 1 else t[path[0]][path[1]]
      leaf.reshape(-1)[leaf.size - 1] = bad
      assert not bool(jax.jit(steps.all_finite)(t)), (bad, path)
  assert bool(steps.all_finite({}))


def test_compilation_cache_setting_resolves_the_directory(monkeypatch, tmp_path):
  """config.compilation_cache_dir: auto = $JAX_COMPILATION_CACHE_DIR, else <project cache>/xla with a
  size cap; a path as given; "" = JAX's cache off."""
  names = (
    "jax_compilation_cache_dir",
    "jax_enable_compilation_cache",
    "jax_compilation_cache_max_size",
  )
  before = {name: getattr(jax.config, name) for name in names}
  try:
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("CLASSIC_CNNS_CACHE", str(tmp_path / "root"))
    assert backends.use_compilation_cache("auto") == str(tmp_path / "root" / "xla")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "root" / "xla")
    assert jax.config.jax_compilation_cache_max_size == backends.COMPILATION_CACHE_MAX_BYTES
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "env"))
    assert backends.use_compilation_cache("auto") == str(tmp_path / "env")
    assert backends.use_compilation_cache("~/xla_cache") == os.path.expanduser("~/xla_cache")
    assert jax.config.jax_enable_compilation_cache
    assert (
      backends.use_compilation_cache("") is None and not jax.config.jax_enable_compilation_cache
    )
  finally:
    for name, value in before.items():
      jax.config.update(name, value)


def test_ema_of_parameters_is_tracked_and_used_for_evaluation():
  """config.ema_decay: each step ema <- d * ema + (1 - d) * params (Inception-v3 Sec. 8); evaluation
  (steps.eval_variables, the eval step, evaluate, predict) reads the average."""
  import flax.linen as nn
  import optax
  from classic_cnns import parallel
  from classic_cnns.config import base_config
  from classic_cnns.data.augment import Preprocess

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(3)(x.reshape(x.shape[0], -1))

  c = base_config()
  c.ema_decay = 0.5
  model, mesh, sched = Tiny(), parallel.make_mesh(), optax.constant_schedule(0.1)
  state = build.create_train_state(model, optax.sgd(sched), (2, 2, 1), 0, mesh, ema=True)
  step = jax.jit(steps.make_train_step(model, c, Preprocess(), sched, jnp.float32))
  batch = {
    "image": jnp.arange(16, dtype=jnp.uint8).reshape(4, 2, 2, 1),
    "label": jnp.array([0, 1, 2, 0]),
  }
  expected = jax.tree.map(np.asarray, state.params)
  for _ in range(3):
    state, _ = step(state, batch)
    expected = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * np.asarray(p), expected, state.params)
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(state.ema_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert steps.eval_variables(state)["params"] is state.ema_params
  assert not np.allclose(jax.tree.leaves(state.ema_params)[0], jax.tree.leaves(state.params)[0])
  plain = build.create_train_state(model, optax.sgd(sched), (2, 2, 1), 0, mesh)
  assert plain.ema_params is None and steps.eval_variables(plain)["params"] is plain.params
