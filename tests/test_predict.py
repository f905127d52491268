"""classic_cnns.predict on the tiny LeNet-5 run shared with tests/test_evaluate.py."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from classic_cnns import evaluate, predict
from classic_cnns.data import augment
from classic_cnns.data.sources import DatasetError
from tests.test_evaluate import REPO, _run_cli, trained_run  # noqa: F401  (the shared fixture)

SAMPLE = os.path.join(REPO, "classic_cnns", "data", "mnist_sample.npz")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
  """Five test digits as PNG files (lossless, 28x28 greyscale) and their arrays."""
  d = tmp_path_factory.mktemp("digits")
  with np.load(SAMPLE) as f:
    idx = np.linspace(0, len(f["y_test"]) - 1, 5).astype(int)
    x, y = f["x_test"][idx], f["y_test"][idx]
  paths = []
  for i, img in enumerate(x):
    paths.append(str(d / f"digit{i}.png"))
    Image.fromarray(img).save(paths[-1])
  return paths, x, y


def test_top5_names_and_probabilities_match_the_model(trained_run, digits):
  config, workdir, _ = trained_run
  paths, x, _ = digits
  results = predict.predict(workdir, paths)
  assert len(results) == 5
  for best in results:
    assert len(best) == 5 and {n for n, _ in best} <= {str(i) for i in range(10)}
    probs = [p for _, p in best]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
  # The same probabilities as the model on the arrays with the evaluation preprocessing.
  prep, _ = augment.load_preprocess(os.path.join(workdir, "preprocess.npz"))
  model, state, _ = evaluate.restore(config, workdir, (32, 32, 1))
  logits = model.apply(
    {"params": state.params, "batch_stats": state.batch_stats},
    augment.preprocess(jnp.asarray(x[..., None]), prep, train=False, rng=None),
    train=False,
  )
  probs = np.asarray(jax.nn.softmax(logits))
  for best, p in zip(results, probs):
    assert best[0][0] == str(int(np.argmax(p)))
    np.testing.assert_allclose([q for _, q in best], np.sort(p)[::-1][:5], rtol=1e-4, atol=1e-6)


def test_colour_images_of_any_size_and_runs_without_preprocess_file(trained_run, digits, tmp_path):
  _, workdir, _ = trained_run
  paths, x, _ = digits
  big = str(tmp_path / "big.jpg")
  Image.fromarray(np.stack([x[0]] * 3, -1)).resize((70, 56)).save(big)
  (best,) = predict.predict(workdir, [big], top=3)
  assert len(best) == 3
  copy = (
    tmp_path / "old_run"
  )  # a workdir from before preprocess.npz: statistics refitted from the data
  shutil.copytree(workdir, copy)
  os.remove(copy / "preprocess.npz")
  with open(copy / "config.json") as f:
    saved = json.load(f)
  del (
    saved["data"]["augment"]["crop"],
    saved["data"]["stats"],
  )  # fields a run of an older version lacks
  with open(copy / "config.json", "w") as f:
    json.dump(saved, f)
  again = predict.predict(str(copy), paths[:2])
  ref = predict.predict(workdir, paths[:2])
  for a, b in zip(again, ref):
    assert [n for n, _ in a] == [n for n, _ in b]
    np.testing.assert_allclose([p for _, p in a], [p for _, p in b], rtol=1e-4)
  with pytest.raises(DatasetError, match="cannot read image"):
    predict.read_images([str(tmp_path / "missing.png")], (28, 28, 1))


def test_cli_prints_top5_and_bad_paths_are_one_line_errors(trained_run, digits, tmp_path):
  _, workdir, _ = trained_run
  paths, _, _ = digits
  p = _run_cli("classic_cnns.predict", f"--workdir={workdir}", paths[0], paths[1])
  assert p.returncode == 0, p.stderr[-2000:]
  lines = p.stdout.strip().splitlines()
  assert len(lines) == 2 and lines[0].startswith(paths[0] + ": ") and lines[0].count("%") == 5
  bad = tmp_path / "not_an_image.png"
  bad.write_text("hello")
  p = _run_cli("classic_cnns.predict", f"--workdir={workdir}", paths[0], str(bad))
  assert (
    p.returncode == 2
    and p.stderr.strip() == f"error: cannot read image {bad}: cannot identify image file '{bad}'"
  ), p.stderr[-2000:]


def test_truncated_preprocess_file_is_one_line(trained_run, digits, tmp_path):
  _, workdir, _ = trained_run
  paths, _, _ = digits
  copy = tmp_path / "run"
  shutil.copytree(workdir, copy)
  prep = copy / "preprocess.npz"
  prep.write_bytes(prep.read_bytes()[: len(prep.read_bytes()) // 2])
  with pytest.raises(DatasetError, match="truncated or corrupt") as e:
    predict.predict(str(copy), paths[:1])
  assert "\n" not in str(e.value) and str(prep) in str(e.value)
  (copy / "config.json").write_text("[1, 2")
  from classic_cnns.config import ConfigError

  with pytest.raises(ConfigError, match="cannot read the run in"):
    predict.predict(str(copy), paths[:1])


def test_a_config_file_with_overrides_replaces_the_saved_config(trained_run, digits):
  """--config (the run's config file plus overrides) gives the same predictions as the saved
  config.json; a config of another model is one line, before anything is restored."""
  config, workdir, _ = trained_run
  paths, _, _ = digits
  ref = predict.predict(workdir, paths[:2])
  assert predict.predict(workdir, paths[:2], config=config) == ref
  other = config.copy_and_resolve_references()
  other.model.act = "tanh"
  from classic_cnns.config import ConfigError

  with pytest.raises(ConfigError, match="model.act") as e:
    predict.predict(workdir, paths[:1], config=other)
  assert "\n" not in str(e.value)
  p = _run_cli(
    "classic_cnns.predict",
    "--config=configs/lenet5_mnist.py",
    "--config.model.act=relu",
    "--config.kernels=portable",
    f"--workdir={workdir}",
    paths[0],
  )
  assert p.returncode == 0, p.stderr[-2000:]
  name, first = ref[0][0]
  assert p.stdout.startswith(f"{paths[0]}: {name} {100 * first:.1f}%"), p.stdout
  p = _run_cli(
    "classic_cnns.predict", "--config=configs/lenet5_mnist.py", f"--workdir={workdir}", paths[0]
  )
  assert p.returncode == 2 and p.stderr.count("\n") == 1 and "model.act" in p.stderr, p.stderr
