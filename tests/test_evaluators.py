"""The test-time protocols of classic_cnns/evaluators.py behind one interface, on a LeNet-5 with
random weights and a few embedded MNIST images; the trainer's final evaluation through them."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import evaluate, evaluators, parallel, steps, train
from classic_cnns.config import EVAL_PROTOCOLS, ConfigError
from classic_cnns.data import augment, pipeline
from classic_cnns.data.sources import EMBEDDED_PATH
from classic_cnns.models import create_model
from tests.helpers import REPO, lenet_config

PREP = augment.Preprocess(pad_to=32, mean=(33.0,), std=(78.0,))


@pytest.fixture(scope="module")
def lenet():
  """(model, variables, config, split): LeNet-5 (random weights), 40 padded-to-32 MNIST images."""
  config = lenet_config(eval_batch_size=16)
  model = create_model("lenet5", num_classes=10)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  with np.load(EMBEDDED_PATH) as f:
    x, y = f["x_test"][:40, ..., None], f["y_test"][:40].astype(np.int32)
  return model, variables, config, pipeline.ArraySplit(x, y, 10)


def test_registry_names_are_the_configs():
  assert set(evaluators.NAMES) == set(EVAL_PROTOCOLS)
  assert set(evaluators.EVALUATORS) >= {"centre", "ten_crop", "dense_multiscale", "multi_crop_144"}
  assert evaluators.get("single") is evaluators.Centre
  assert evaluators.get("dense") is evaluators.DenseMultiscale
  with pytest.raises(ConfigError, match="unknown evaluation protocol 'nope'"):
    evaluators.get("nope")


def test_centre_is_the_trainers_evaluation(lenet):
  model, variables, config, split = lenet
  mesh = parallel.make_mesh()
  got = evaluators.make("centre", model, PREP, config, mesh).evaluate(variables, split)
  step = jax.jit(steps.make_eval_step(model, PREP, jnp.float32))
  want = steps.evaluate(step, variables, pipeline.eval_batches(split, 16, mesh))
  assert got == want and got["count"] == 40 and set(got) == {"top1", "top5", "loss", "count"}


def test_every_protocol_runs_on_the_same_interface(lenet):
  model, variables, config, split = lenet
  results = {}
  for name in ("centre", "center_crop", "full", "ten_crop", "multi_crop_144"):
    ev = evaluators.make(name, model, PREP, config)
    info = ev.prepare(split)
    results[name] = ev.evaluate(variables, split)
    assert results[name]["count"] == 40 and 0 <= results[name]["top5"] <= 1, name
    assert np.isfinite(results[name]["loss"]), name
  assert info == {"scales": [37, 41, 46, 50], "crop": 32}  # 256..352 x 32/224
  assert results["full"] == results["centre"]  # no evaluation view set: the whole image


def test_ten_crop_is_ten_views(lenet):
  """With resize = crop = the image side the 5 crops coincide: ten_crop = the mean logits of the
  image and its mirror image."""
  model, variables, config, split = lenet
  assert len(augment.ten_crop_windows(32, 32, 36, 32)) * 2 == 10
  ev = evaluators.make("ten_crop", model, PREP, config, resize=32, crop=32)
  got = ev.evaluate(variables, split)
  x = augment.normalize(jnp.asarray(split.images), PREP)
  logits = (model.apply(variables, x) + model.apply(variables, x[:, :, ::-1])) / 2
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), split.labels[:, None], 1)
  np.testing.assert_allclose(got["loss"], float(nll.mean()), rtol=1e-5)


def test_multi_crop_144_views_and_geometry():
  """GoogLeNet Sec. 10 at 224: 4 scales x 3 squares x (4 corners + centre + the whole square) x 2
  mirrors = 144 views; on a landscape image the squares run left / centre / right."""
  w = evaluators.multi_crop_windows(256, 384, (256, 288, 320, 352), 224)
  assert w.shape == (72, 4) and 2 * len(w) == 144
  first = w[:18]  # scale 256 = the image's own size: 256 x 384, squares at x = 0, 64, 128
  np.testing.assert_allclose(first[5], (0, 0, 256, 256))  # the whole left square
  np.testing.assert_allclose(first[11], (0, 64, 256, 256))
  np.testing.assert_allclose(first[17], (0, 128, 256, 256))
  np.testing.assert_allclose(first[:5, :2], [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)])
  np.testing.assert_allclose(first[:5, 2:], 224)
  f = 352 / 256  # the last scale: windows in input pixels, the whole square 352 -> 256 pixels
  np.testing.assert_allclose(w[-1], (0, (352 * 1.5 - 352) / f, 256, 256), rtol=1e-6)
  portrait = evaluators.multi_crop_windows(384, 256, (256,) * 4, 224)
  np.testing.assert_allclose(portrait[17], (128, 0, 256, 256))  # top / centre / bottom
  with pytest.raises(ValueError, match="larger than the scale"):
    evaluators.multi_crop_windows(32, 32, (30, 40, 50, 60), 32)


def test_multi_crop_144_averages_the_softmax_of_every_view(lenet):
  model, variables, config, split = lenet
  ev = evaluators.make("multi_crop_144", model, PREP, config, scales=(32, 36, 40, 44), crop=32)
  got = ev.evaluate(variables, split)
  x = augment.normalize(jnp.asarray(split.images), PREP)
  probs = 0.0
  windows = evaluators.multi_crop_windows(32, 32, (32, 36, 40, 44), 32)
  for window in windows:
    v = augment.crop_resize(x, (32, 32), tuple(window))
    probs += jax.nn.softmax(model.apply(variables, v)) + jax.nn.softmax(
      model.apply(variables, v[:, :, ::-1])
    )
  log_probs = jnp.log(probs / 144)
  nll = -jnp.take_along_axis(log_probs, split.labels[:, None], 1)
  np.testing.assert_allclose(got["loss"], float(nll.mean()), rtol=1e-4)
  top1 = float(jnp.mean(jnp.argmax(log_probs, -1) == split.labels))
  assert got["top1"] == pytest.approx(top1)


def test_dense_refuses_a_model_that_is_not_fully_convolutional(lenet):
  model, _, config, split = lenet
  with pytest.raises(ConfigError, match="has no dense evaluation mode") as e:
    evaluators.make("dense_multiscale", model, PREP, config).prepare(split)
  assert "\n" not in str(e.value)
  resnet = create_model("resnet20", widths=(4, 8, 8))
  assert evaluators.supports_dense(resnet) and not evaluators.supports_dense(model)


def test_dense_multiscale_on_a_fully_convolutional_model():
  """ResNet's multi-scale testing (Table 4): the net itself at each scale, posteriors averaged."""
  model = create_model("resnet20", widths=(4, 8, 8), num_classes=10)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  rng = np.random.default_rng(0)
  split = pipeline.ArraySplit(
    rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), np.arange(5, dtype=np.int32), 10
  )
  config = lenet_config(eval_batch_size=8)
  prep = augment.Preprocess(mean=(120.0,) * 3, std=(60.0,) * 3)
  ev = evaluators.make("dense", model, prep, config, scales=[32, 48])
  assert ev.prepare(split) == {"scales": [32, 48]}
  r = ev.evaluate(variables, split)
  assert r["count"] == 5 and np.isfinite(r["loss"])


def test_the_trainers_final_evaluation_uses_config_eval_protocol(tmp_path):
  """config.eval_protocol=ten_crop: the run's final numbers are evaluate's ten_crop on its
  checkpoint; a protocol the model cannot run is refused before the workdir is written, and by the
  command line in one line."""
  config = lenet_config(
    num_steps=3, log_every_steps=3, eval_every_steps=1000, eval_protocol="ten_crop"
  )
  workdir = str(tmp_path / "run")
  result = train.train_and_evaluate(config, workdir)
  again = evaluate.run_protocol(config, workdir, "ten_crop")
  assert result.test["count"] == again["count"] == 2000
  assert result.test["top1"] == pytest.approx(again["top1"])
  assert result.test["loss"] == pytest.approx(again["loss"], rel=1e-5)

  bad = lenet_config(num_steps=3, eval_protocol="dense_multiscale")
  with pytest.raises(ConfigError, match="no dense evaluation mode"):
    train.train_and_evaluate(bad, str(tmp_path / "refused"))
  assert not os.path.exists(tmp_path / "refused")  # nothing written
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.evaluate",
      "--config=configs/lenet5_mnist.py",
      f"--workdir={workdir}",
      "--protocol=dense_multiscale",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode == 2 and p.stderr.strip().startswith("error: "), p.stderr[-2000:]
  assert "no dense evaluation mode" in p.stderr and len(p.stderr.strip().splitlines()) == 1
