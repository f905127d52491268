import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_input_pipeline_benchmark_runs(shared_datasets, tmp_path):
  subprocess.run(
    ["tar", "xzf", os.path.join(shared_datasets, "cifar10_jpeg_train.tar.gz"), "-C", str(tmp_path)],
    check=True,
  )
  out = tmp_path / "b.json"
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.benchmark_data",
      f"--cifar_folder={tmp_path}/cifar10_jpeg",
      f"--jpeg_cache={tmp_path}/jpeg256",
      "--images=1000",
      "--steps=2",
      "--repeats=1",
      f"--json={out}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=900,
  )
  assert p.returncode == 0, p.stderr[-3000:]
  r = json.load(open(out))
  for k in (
    "cifar_trainer_device_resident_img_per_s",
    "imagenet_style_streaming_img_per_s",
    "resnet20_data_wait_share",
  ):
    assert r[k] >= 0


def test_missing_folder_is_one_line(tmp_path):
  p = subprocess.run(
    [sys.executable, "-m", "classic_cnns.benchmark_data", f"--cifar_folder={tmp_path}/none"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("error:")
