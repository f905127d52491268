"""benchmarks/torch_compare.py: the PyTorch twins match the Flax models' parameter counts and output
shapes, settings parse as documented, a tiny interleaved run gives finite numbers and a complete JSON
file, and without PyTorch the command ends with one line, exit 2."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "benchmarks", "torch_compare.py")
NO_TORCH = "PyTorch not installed (the comparison's optional extra: pip install -e '.[bench]')"


def _module():
  """benchmarks/torch_compare.py as a module (loaded once per process: its flags are process-wide)."""
  if "torch_compare" not in sys.modules:
    spec = importlib.util.spec_from_file_location("torch_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["torch_compare"] = module
    spec.loader.exec_module(module)
  return sys.modules["torch_compare"]


def _run(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, SCRIPT, *args], cwd=REPO, capture_output=True, text=True, timeout=600, env=env
  )


def _flax_params(name: str, side: int, channels: int, classes: int) -> int:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns.models import create_model

  model = create_model(name, num_classes=classes)
  shapes = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0)}, jnp.zeros((1, side, side, channels)), train=False
    )
  )["params"]
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))


def test_twins_match_the_flax_models():
  """Every twin at its default side (and LeNet-5 at another side): the parameter count equals the Flax
  model's and the registry's paper count, and a forward pass gives [batch, classes] logits."""
  torch = pytest.importorskip("torch", reason=NO_TORCH)
  from classic_cnns.models import registry

  tc = _module()
  settings = tc.parse_settings(list(tc.DEFAULTS)) + tc.parse_settings(["lenet5@36"])
  assert [s.label for s in settings] == [
    "lenet5@32",
    "resnet20@32",
    "resnet18@112",
    "vgg11@64",
    "densenet121@64",
    "lenet5@36",
  ]
  for s in settings:
    twin = tc.torch_model(s.model, s.side)
    flax_count, torch_count = (
      _flax_params(s.model, s.side, s.channels, s.classes),
      tc.n_torch_params(twin),
    )
    assert flax_count == torch_count, s.label
    if s.side == tc.DEFAULTS[s.model].side:
      assert torch_count == registry.model_info(s.model).paper_params, s.label
    with torch.no_grad():
      out = twin.eval()(torch.zeros(2, s.channels, s.side, s.side))
    assert tuple(out.shape) == (2, s.classes), s.label


def test_settings():
  tc = _module()
  labels = lambda *a, **k: [(s.label, s.batch) for s in tc.parse_settings(*a, **k)]
  assert labels(list(tc.DEFAULT_MODELS)) == [
    ("lenet5@32", 128),
    ("resnet20@32", 128),
    ("resnet18@112", 32),
    ("resnet18@64", 32),
    ("vgg11@64", 16),
    ("densenet121@64", 16),
  ]
  assert labels(["resnet18@64", "vgg11"], image_size=48, batch=8) == [
    ("resnet18@48", 8),
    ("vgg11@48", 8),
  ]
  (s,) = tc.parse_settings(["lenet5"], steps=7)
  assert (s.channels, s.classes, s.steps) == (1, 10, 7)
  for bad, message in (
    (["alexnet"], "unknown model 'alexnet'"),
    (["vgg11@x"], "integer side"),
    (["vgg11@0"], "must be positive"),
  ):
    with pytest.raises(ValueError, match=message):
      tc.parse_settings(bad)


def test_tiny_run(tmp_path):
  pytest.importorskip("torch", reason=NO_TORCH)
  from classic_cnns.backends.cpu import onednn

  ok, why = onednn.available()
  if not ok:
    pytest.skip(f"the cpu column needs oneDNN: {why}")
  path = tmp_path / "results" / "cmp.json"
  proc = _run(
    "--models=lenet5", "--batch=32", "--repeats=1", "--steps=2", "--warmup=1", f"--json={path}"
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(path.read_text())
  assert {"cpu_model", "cores"} <= set(out["machine"]) and out["machine"]["cores"] >= 1
  assert (
    {"jax", "flax", "torch"} <= set(out["versions"])
    and out["date"]
    and len(out["load_average"]) == 3
  )
  (row,) = out["results"]
  assert (row["model"], row["input"], row["batch"], row["params"]) == ("lenet5", 32, 32, 61_706)
  assert set(row["img_per_s"]) == {"torch", "torch_cl", "flax_cpu", "flax_portable"}
  assert set(row["ratio"]) == {"cpu", "portable"}
  assert row["torch_best"] == max(row["img_per_s"]["torch"], row["img_per_s"]["torch_cl"])
  for v in list(row["img_per_s"].values()) + list(row["ratio"].values()):
    assert math.isfinite(v) and v > 0
  assert row["ratio"]["cpu"] == pytest.approx(row["img_per_s"]["flax_cpu"] / row["torch_best"])
  assert row["flax_backends"]["cpu"].startswith("kernels cpu")
  assert row["flax_backends"]["portable"].startswith("kernels portable")
  assert "| lenet5 | 32x32 | 32 |" in proc.stdout and "cpu / best" in proc.stdout


def test_bad_model_one_line():
  pytest.importorskip("torch", reason=NO_TORCH)
  proc = _run("--models=alexnet")
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
    "error: unknown model 'alexnet'; choose from lenet5, resnet20, resnet18, vgg11, densenet121 (NAME or NAME@SIDE)"
  ]


def test_without_torch_one_line(tmp_path):
  # A directory shadowing `torch` with a package whose import fails stands in for a missing install.
  (tmp_path / "torch").mkdir()
  (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
  env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
  proc = _run("--models=lenet5", env=env)
  assert proc.returncode == 2
  assert proc.stderr.strip() == (
    "error: PyTorch is not installed: pip install -e '.[bench]' (or pip install torch) "
    "for the comparison"
  )
