"""classic_cnns.benchmark: a tiny real run gives positive finite numbers and a complete JSON; bad input
ends with one line and exit status 2."""

import json
import math
import os
import subprocess
import sys

from classic_cnns import benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "classic_cnns.benchmark", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )


def test_tiny_run_numbers_and_json(tmp_path):
  path = tmp_path / "bench.json"
  proc = _run(
    "--model=lenet5",
    "--batch=8",
    "--steps=2",
    "--repeats=1",
    "--warmup=1",
    "--matmul_size=512",
    "--matmul_repeats=1",
    f"--json={path}",
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(path.read_text())
  env = out["environment"]
  for key in ("device", "jax", "jaxlib", "xla_flags", "load_average", "cpu_count"):
    assert key in env
  assert "XLA_FLAGS=" in proc.stdout and "jax " in proc.stdout and "| lenet5 |" in proc.stdout
  (row,) = out["results"]
  assert set(benchmark.RESULT_KEYS) <= set(row)
  assert row["model"] == "lenet5" and row["batch"] == 8 and row["params"] == 61_706
  for key in (
    "train_img_per_s",
    "eval_img_per_s",
    "train_step_ms",
    "train_cpu_cores",
    "init_s",
    "train_lower_s",
    "train_compile_s",
    "eval_lower_s",
    "eval_compile_s",
    "train_gflop_per_step",
    "train_gflops",
    "matmul_gflops",
    "roofline_pct",
    "peak_rss_mb",
    "xla_temp_mb",
  ):
    assert isinstance(row[key], float) and math.isfinite(row[key]) and row[key] > 0, (key, row[key])
  # LeNet-5 forward is ~0.42 MMAC per 32x32 image; a train step is ~3x the forward, ~2 FLOP per MAC.
  assert 0.5 * 8 * 2.5e-3 < row["train_gflop_per_step"] < 2 * 8 * 2.5e-3
  if row["device_peak_mb"] is not None:
    assert row["device_peak_mb"] > 0


def test_compile_only_reports_the_first_step_wait(tmp_path):
  path = tmp_path / "bench.json"
  proc = _run("--model=lenet5", "--batch=4", "--compile_only", f"--json={path}")
  assert proc.returncode == 0, proc.stderr[-2000:]
  (row,) = json.loads(path.read_text())["results"]
  for key in ("init_s", "train_lower_s", "train_compile_s", "eval_compile_s"):
    assert isinstance(row[key], float) and row[key] > 0, (key, row[key])
  assert "train_img_per_s" not in row and row["params"] == 61_706


def test_unknown_model_exits_2_with_one_line():
  proc = _run("--model=resnet_does_not_exist")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: unknown model"), proc.stderr


def test_model_and_all_are_exclusive():
  proc = _run("--model=lenet5", "--all")
  assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_format_table():
  row = dict.fromkeys(benchmark.RESULT_KEYS)
  row.update(
    model="lenet5", input=28, pad_to=32, batch=128, kernels="cpu:onednn", train_img_per_s=1234.5
  )
  table = benchmark.format_table([row])
  assert "| lenet5 | 28->32 | 128 | cpu:onednn | 1,234.5 |" in table


def test_model_options_parse_and_reject_what_the_model_lacks():
  assert benchmark.parse_model_options(["scan_blocks=True", "norm=group", "norm_groups=8"]) == {
    "scan_blocks": True,
    "norm": "group",
    "norm_groups": 8,
  }
  for bad in ("scan_blocks", "=1"):
    try:
      benchmark.parse_model_options([bad])
    except benchmark.BenchmarkError:
      pass
    else:
      raise AssertionError(bad)
  proc = _run("--model=vgg11", "--compile_only", "--model_option=scan_blocks=True")
  assert proc.returncode == 2
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1 and "scan_blocks" in lines[0], proc.stderr
