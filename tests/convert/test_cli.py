"""python -m classic_cnns.convert end to end: a random torchvision resnet18 -> workdir; evaluate and
predict read it as a finished run; main fine-tunes from it (init_from) with another class count;
export back to .safetensors / .pth gives the same tensors. Bad input: one line, exit 2, nothing
written."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from classic_cnns import convert
from tests.convert.helpers import import_torchvision, randomize, torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "CLASSIC_CNNS_DEBUG": "0"}
  return subprocess.run(
    [sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )


def one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
  assert p.returncode == 2, p.stderr
  lines = [l for l in p.stderr.splitlines() if l.strip() and "warning" not in l.lower()]
  assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
  for w in words:
    assert w in lines[0], lines[0]


@pytest.fixture(scope="module")
def resnet18_weights(tmp_path_factory):
  tv = import_torchvision()
  d = tmp_path_factory.mktemp("weights")
  sd = randomize(tv.models.resnet18()).state_dict()
  torch.save(sd, d / "r18.pth")
  return d, {k: v.numpy() for k, v in sd.items()}


def test_convert_evaluate_predict_finetune_export(resnet18_weights, tmp_path):
  d, sd = resnet18_weights
  wd = str(tmp_path / "wd")
  p = run(
    "classic_cnns.convert", "--from=torchvision", "--model=resnet18", f"--weights={d}/r18.pth",
    f"--workdir={wd}",
  )  # fmt: skip
  assert p.returncode == 0, p.stderr
  assert "torchvision resnet18 -> resnet18" in p.stdout
  with open(os.path.join(wd, "config.json")) as f:
    saved = json.load(f)
  assert saved["model"]["name"] == "resnet18" and saved["data"]["eval_preset"] == "torchvision"
  rng = np.random.default_rng(0)
  data = str(tmp_path / "data.npz")
  np.savez(
    data,
    x_train=rng.integers(0, 255, (8, 40, 40, 3), dtype=np.uint8),
    y_train=np.arange(8) % 4,
    x_test=rng.integers(0, 255, (6, 40, 40, 3), dtype=np.uint8),
    y_test=np.arange(6) % 4,
  )
  tiny = [
    "--config.data.source=npz", f"--config.data.path={data}", "--config.data.augment.crop_size=32",
    "--config.data.eval_crop=32", "--config.data.eval_resize=0", "--config.eval_batch_size=8",
    "--config.kernels=portable",
  ]  # fmt: skip
  p = run("classic_cnns.evaluate", f"--config={wd}/config.py", f"--workdir={wd}", *tiny)
  assert p.returncode == 0, p.stderr
  assert "'resize': 37, 'crop': 32" in p.stdout  # the torchvision preset: 32 / 0.875
  assert "on 6 test images (checkpoint step 0)" in p.stdout
  from PIL import Image

  Image.fromarray(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8)).save(tmp_path / "x.png")
  p = run("classic_cnns.predict", f"--workdir={wd}", "--top=2", str(tmp_path / "x.png"))
  assert p.returncode == 0 and p.stdout.count("%") == 2, p.stderr
  ft = str(tmp_path / "ft")
  p = run(
    "classic_cnns.main", f"--config={wd}/config.py", f"--workdir={ft}", *tiny,
    f"--config.init_from={wd}", "--config.model.num_classes=4", "--config.num_steps=2",
    "--config.batch_size=4",
  )  # fmt: skip
  assert p.returncode == 0, p.stderr
  assert "1000 -> 4 classes: the classifier head (fc) is re-initialised" in p.stdout
  # the fine-tuned run exports; the untouched conv weights of step 0 export unchanged
  out = str(tmp_path / "back.safetensors")
  p = run("classic_cnns.convert", "--to=torchvision", f"--workdir={wd}", f"--out={out}")
  assert p.returncode == 0, p.stderr
  back = convert.load_state_dict(out)
  assert sorted(back) == sorted(sd)
  for k, v in sd.items():
    assert np.array_equal(back[k], v) or k.endswith("num_batches_tracked"), k
  p = run("classic_cnns.convert", "--to=torchvision", f"--workdir={ft}", f"--out={ft}.pth")
  assert p.returncode == 0, p.stderr
  assert torch.load(f"{ft}.pth", weights_only=True)["fc.weight"].shape == (4, 512)


def test_unknown_model_is_one_line(tmp_path):
  p = run(
    "classic_cnns.convert", "--from=torchvision", "--model=resnet51", "--weights=x.pth",
    f"--workdir={tmp_path / 'wd'}",
  )  # fmt: skip
  one_line_error(p, "'resnet51' is not supported")
  assert not os.path.exists(tmp_path / "wd")


@pytest.mark.parametrize(
  "change,words",
  [
    ("extra", ("weight 'fc.extra' has no counterpart in our resnet18",)),
    ("missing", ("missing weight 'layer1.0.conv1.weight'",)),
    ("shape", ("shape mismatch for 'layer1.0.conv2.weight'", "(64, 64, 3, 3)")),
  ],
)
def test_bad_weights_are_one_line_and_write_nothing(resnet18_weights, tmp_path, change, words):
  from safetensors.numpy import save_file

  _, sd = resnet18_weights
  sd = dict(sd)
  if change == "extra":
    sd["fc.extra"] = np.zeros(3, np.float32)
  elif change == "missing":
    del sd["layer1.0.conv1.weight"]
  else:
    sd["layer1.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
  save_file(sd, str(tmp_path / "w.safetensors"))
  wd = tmp_path / "wd"
  p = run(
    "classic_cnns.convert", "--from=torchvision", "--model=resnet18",
    f"--weights={tmp_path / 'w.safetensors'}", f"--workdir={wd}",
  )  # fmt: skip
  one_line_error(p, *words)
  assert not os.path.exists(wd)
