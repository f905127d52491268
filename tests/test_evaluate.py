"""Test-time protocols (classic_cnns.evaluate) on a LeNet-5 trained 20 steps on the embedded sample,
the VGG dense evaluation on a narrow VGG, and the one-line errors."""

import json
import os
import shutil
import subprocess
import sys
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import evaluate, evaluators, train
from classic_cnns import steps
from classic_cnns.checkpoint import CheckpointError
from classic_cnns.config import ConfigError
from classic_cnns.data import augment
from tests.helpers import lenet_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OVERRIDES = {
  "num_steps": 20,
  "model.act": "relu",
  "log_every_steps": 10,
  "eval_every_steps": 1000,
  "checkpoint_every_steps": 10,
}


def tiny_config(**overrides):
  return lenet_config(**{**OVERRIDES, **overrides})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
  """(config, workdir, RunResult) of one tiny LeNet-5 run, shared by the evaluate and predict tests."""
  workdir = str(tmp_path_factory.mktemp("lenet_run"))
  config = tiny_config()
  result = train.train_and_evaluate(config, workdir)
  return config, workdir, result


def _run_cli(module, *args):
  return subprocess.run(
    [sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=300
  )


def test_full_and_center_crop_reproduce_the_trainers_evaluation(trained_run):
  config, workdir, result = trained_run
  full = evaluate.run_protocol(config, workdir, "full")
  assert full["count"] == result.test["count"] == 2000 and full["step"] == 20
  assert full["top1"] == pytest.approx(result.test["top1"]) and full["top5"] == pytest.approx(
    result.test["top5"]
  )
  assert full["top1_error"] == pytest.approx(1 - result.test["top1"])
  assert full["top1"] > 0.5  # 20 steps already learn something
  with open(os.path.join(workdir, "eval_full.json")) as f:
    assert json.load(f)["top1_error"] == pytest.approx(full["top1_error"])
  same = evaluate.run_protocol(
    config, workdir, "center_crop", resize=32, crop=32
  )  # the identity view
  assert same["top1"] == pytest.approx(full["top1"]) and (same["resize"], same["crop"]) == (32, 32)


def test_ten_crop(trained_run):
  config, workdir, _ = trained_run
  r = evaluate.run_protocol(config, workdir, "ten_crop", resize=36, crop=32)
  assert r["count"] == 2000 and (r["resize"], r["crop"]) == (36, 32)
  assert 0 <= r["top5_error"] <= r["top1_error"] < 0.8
  assert os.path.isfile(os.path.join(workdir, "eval_ten_crop.json"))

  # One batch by hand: with resize = crop = the image side the five crops coincide, so ten-crop
  # is the mean of the logits of the image and of its mirror image.
  ds_images = np.load(os.path.join(REPO, "classic_cnns", "data", "mnist_sample.npz"))["x_test"][
    :16, ..., None
  ]
  labels = np.arange(16, dtype=np.int32) % 10
  prep, _ = augment.load_preprocess(os.path.join(workdir, "preprocess.npz"))
  model, state, _ = evaluate.restore(config, workdir, (32, 32, 1))
  step = jax.jit(evaluators.make_ten_crop_step(model, prep, 32, 32, jnp.float32))
  got = step(state, {"image": ds_images, "label": labels, "mask": np.ones(16, np.float32)})
  x = augment.preprocess(jnp.asarray(ds_images), prep, train=False, rng=None)
  apply = lambda v: model.apply(
    {"params": state.params, "batch_stats": state.batch_stats}, v, train=False
  )
  logits = (apply(x) + apply(x[:, :, ::-1])) / 2
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1).sum()
  np.testing.assert_allclose(got["loss"], nll, rtol=1e-5)
  assert float(got["top1"]) == float(steps.topk_correct(logits, labels, 1).sum())


def test_dense_needs_a_model_with_a_dense_mode(trained_run):
  config, workdir, _ = trained_run
  with pytest.raises(ConfigError, match="no dense evaluation mode"):
    evaluate.run_protocol(config, workdir, "dense", scales=[32])


def test_vgg_dense_evaluation_matches_the_fc_net_at_224():
  """At Q = 224 the dense net's 1x1 score map is the FC net's output: the dense step must equal the
  soft-max posteriors of the image and its flip, averaged."""
  from classic_cnns.models import create_model

  model = create_model("vgg11", num_classes=5, widths=(4, 4, 4, 4, 4), fc_features=8, dropout=0.0)
  assert evaluators.has_dense_mode(model) and not evaluators.has_dense_mode(create_model("lenet5"))
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), shapes)

  class State(NamedTuple):
    params: Any
    batch_stats: Any

  state = State(params, {})
  images = rng.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
  labels = np.array([1, 3], np.int32)
  prep = augment.Preprocess(mean=(120.0,) * 3, std=(60.0,) * 3)

  @jax.jit
  def both(state, images):
    dense = evaluators.make_dense_step(model, prep, [224], jnp.float32)(
      state, {"image": images, "label": labels, "mask": jnp.ones(2)}
    )
    x = augment.normalize(images, prep)
    probs = sum(
      jax.nn.softmax(model.apply({"params": state.params}, v, train=False))
      for v in (x, x[:, :, ::-1])
    )
    return dense, jnp.log(probs / 2)

  dense, ref = both(state, images)
  np.testing.assert_allclose(
    dense["loss"], -jnp.take_along_axis(ref, labels[:, None], 1).sum(), rtol=1e-4
  )
  assert float(dense["count"]) == 2.0


def test_no_or_unreadable_checkpoint_is_one_line_error(trained_run, tmp_path):
  config, workdir, _ = trained_run
  p = _run_cli(
    "classic_cnns.evaluate",
    "--config=configs/lenet5_mnist.py",
    f"--workdir={tmp_path / 'none'}",
    "--protocol=full",
  )
  assert p.returncode == 2 and p.stderr.strip().startswith("error: no checkpoint in"), p.stderr[
    -2000:
  ]
  assert len(p.stderr.strip().splitlines()) == 1
  copy = tmp_path / "copy"
  shutil.copytree(workdir, copy)

  def corrupt(step):
    for root, _, files in os.walk(copy / "checkpoints" / str(step) / "state"):
      for f in files:
        open(os.path.join(root, f), "wb").close()

  corrupt(20)  # the newest is unreadable: falls back to the older one
  assert evaluate.run_protocol(config, str(copy), "full")["step"] == 10
  corrupt(10)
  with pytest.raises(CheckpointError, match="can be read"):
    evaluate.run_protocol(config, str(copy), "full")


def test_restore_refuses_the_other_resnet_layout_before_reading(tmp_path):
  """A ResNet workdir trained with scan_blocks=True restored without it: one clear line, not an
  'unreadable checkpoint' warning."""
  (tmp_path / "checkpoints" / "10").mkdir(parents=True)
  (tmp_path / "config.json").write_text(
    json.dumps({"model": {"name": "resnet20", "scan_blocks": True}})
  )
  from classic_cnns.config import base_config

  c = base_config()
  c.model.name, c.model.scan_blocks = "resnet20", False
  with pytest.raises(ConfigError, match="model.scan_blocks=True"):
    evaluate.restore(c, str(tmp_path), (32, 32, 3))


def test_evaluation_waits_for_no_one_but_refuses_a_workdir_being_trained(trained_run):
  """evaluate holds the workdir's lock shared: beside other readers, but not beside a training run."""
  from classic_cnns import workdir

  config, workdir_path, _ = trained_run
  code = (
    f"import time\nfrom classic_cnns import workdir\nwith workdir.lock({workdir_path!r}):\n"
    f"  print('held', flush=True)\n  time.sleep(300)\n"
  )
  holder = subprocess.Popen(
    [sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(
      workdir.WorkdirBusyError, match=f"in use by a training run \\(pid {holder.pid}\\)"
    ):
      evaluate.run_protocol(config, workdir_path, "full")
  finally:
    holder.kill()
    holder.wait()
  with workdir.lock(workdir_path, shared=True):  # another reader holds it: evaluation runs
    assert evaluate.run_protocol(config, workdir_path, "single")["count"] == 2000


def test_resnet_multiscale_dense_evaluation_runs_at_any_scale():
  """ResNet / DenseNet heads pool globally: the dense protocol runs the net itself on the whole image
  at each scale (He et al. 2016 Sec. 3.4 / Table 4) and averages posteriors over scales and flips."""
  from classic_cnns.models import create_model

  model = create_model("resnet20", widths=(4, 8, 8))
  assert evaluators.supports_dense(model) and evaluators.supports_dense(create_model("densenet121"))
  assert (
    not evaluators.supports_dense(create_model("lenet5")) and evaluators.dense_kwargs(model) == {}
  )
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))

  class State(NamedTuple):
    params: Any
    batch_stats: Any

  state = State(variables["params"], variables["batch_stats"])
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
  labels = np.array([1, 3], np.int32)
  prep = augment.Preprocess(mean=(120.0,) * 3, std=(60.0,) * 3)
  batch = {"image": images, "label": labels, "mask": jnp.ones(2)}
  one = jax.jit(evaluators.make_dense_step(model, prep, [32], jnp.float32))(state, batch)
  x = augment.normalize(images, prep)
  probs = sum(jax.nn.softmax(model.apply(variables, v, train=False)) for v in (x, x[:, :, ::-1]))
  want = -jnp.take_along_axis(jnp.log(probs / 2), labels[:, None], 1).sum()
  np.testing.assert_allclose(one["loss"], want, rtol=1e-4)
  multi = jax.jit(evaluators.make_dense_step(model, prep, [32, 48, 64], jnp.float32))(state, batch)
  assert np.isfinite(float(multi["loss"])) and float(multi["count"]) == 2.0
