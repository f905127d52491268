"""classic_cnns.benchmark_torch: the PyTorch twins match the Flax models' parameter counts, and a
tiny alternating run gives finite numbers; without torch the command ends with one line, exit 2."""
import json
import math
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str, env=None) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "classic_cnns.benchmark_torch", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=300, env=env)


def test_twin_parameter_counts():
  pytest.importorskip("torch")
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import benchmark_torch
  from classic_cnns.models import create_model, registry
  for name, (side, ch, _, classes, _) in benchmark_torch.SETTINGS.items():
    model = create_model(name, num_classes=classes)
    shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, side, side, ch)),
                                               train=False))["params"]
    flax_count = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes))
    torch_count = sum(p.numel() for p in benchmark_torch.torch_model(name).parameters())
    assert flax_count == torch_count == registry.model_info(name).paper_params, name


def test_twin_shapes():
  torch = pytest.importorskip("torch")
  from classic_cnns import benchmark_torch
  for name, (side, ch, _, classes, _) in benchmark_torch.SETTINGS.items():
    side = 32 if name == "resnet18" else side
    out = benchmark_torch.torch_model(name)(torch.zeros(2, ch, side, side))
    assert tuple(out.shape) == (2, classes)


def test_tiny_run(tmp_path):
  pytest.importorskip("torch")
  path = tmp_path / "cmp.json"
  proc = _run("--models=lenet5", "--repeats=1", "--steps=2", "--warmup=1", f"--json={path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(path.read_text())
  assert {"jax", "torch", "xla_flags", "load_average"} <= set(out["environment"])
  (row,) = out["results"]
  assert row["model"] == "lenet5" and row["params"] == 61_706 and row["batch"] == 128
  assert set(row["img_per_s"]) == {"torch", "torch_cl", "flax"}
  for v in list(row["img_per_s"].values()) + list(row["ratio_flax_over_torch"].values()):
    assert math.isfinite(v) and v > 0
  assert "| lenet5 |" in proc.stdout and "flax/torch" in proc.stdout


def test_bad_model_one_line():
  pytest.importorskip("torch")
  proc = _run("--models=alexnet")
  assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
      "error: unknown model(s) alexnet; choose from lenet5, resnet20, resnet18"]


def test_without_torch_one_line(tmp_path):
  # A directory shadowing `torch` with a package whose import fails stands in for a missing install.
  (tmp_path / "torch").mkdir()
  (tmp_path / "torch" / "__init__.py").write_text("raise ImportError('no torch here')\n")
  env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
  proc = _run("--models=lenet5", env=env)
  assert proc.returncode == 2
  assert proc.stderr.strip() == "error: pip install torch==2.13.0 for the comparison"
