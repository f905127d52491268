"""The command line end to end, in subprocesses, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import with_devices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(workdir, *overrides, env=None):
  cmd = [
    sys.executable,
    "-m",
    "classic_cnns.main",
    "--config=configs/lenet5_mnist.py",
    f"--workdir={workdir}",
    *overrides,
  ]
  return subprocess.run(
    cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})}
  )


def test_main_trains_writes_outputs_and_reports(tmp_path):
  p = run_main(
    tmp_path, "--config.num_steps=60", "--config.log_every_steps=20", "--config.eval_every_steps=30"
  )
  assert p.returncode == 0, p.stderr[-2000:]
  assert "step 60/60" in p.stdout and "img/s" in p.stdout and "ETA" in p.stdout
  final = [l for l in p.stdout.splitlines() if l.startswith("final test accuracy")]
  assert final and "2000 test images" in final[0]
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["60"]
  assert any(f.startswith("events") for f in os.listdir(tmp_path / "tensorboard"))
  recs = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert {"train", "test", "test_final"} == {r["split"] for r in recs}
  cfg = json.load(open(tmp_path / "config.json"))
  assert cfg["num_steps"] == 60 and cfg["model"]["name"] == "lenet5"


@pytest.mark.parametrize(
  "args,match",
  [
    (
      ["--config.optimizer.learning_rate=0.1"],
      "unknown config key 'config.optimizer.learning_rate'",
    ),
    (["--config.batch_size=abc"], "invalid literal"),
    (["--config.model.name=lenet6"], "unknown model 'lenet6'; did you mean lenet5"),
    (["--config.data.source=npz", "--config.data.path=/nonexistent.npz"], "npz file not found"),
    (
      ["--config.data.source=folder", "--config.data.path=/nonexistent_dir"],
      "image folder not found",
    ),
    (["--config.optimizer.name=lbfgs"], "optimizer.name"),
    (["--config.model.num_classes=5"], "num_classes=5 is smaller than the 10 classes of dataset"),
  ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, match):
  p = run_main(tmp_path / "w", *args)
  assert p.returncode == 2, (p.stdout[-500:], p.stderr[-2000:])
  err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert len(err) == 1 and match in err[0], p.stderr[-2000:]
  assert "Traceback" not in p.stderr
  assert not (tmp_path / "w" / "checkpoints").exists()


def test_missing_config_file(tmp_path):
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.main",
      "--config=configs/nope.py",
      f"--workdir={tmp_path}",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert (
    p.returncode == 2
    and "cannot load --config=configs/nope.py" in p.stderr
    and "Traceback" not in p.stderr
  )


@pytest.mark.parametrize(
  "body,match",
  [
    ("  c = base_config(\n  return c\n", "broken.py:5: '(' was never closed"),
    ("  c = base_config()\n   return c\n", "broken.py:6: unexpected indent"),
    (
      "  c = base_config()\n  c.optimizer.lr = undefined_lr\n  return c\n",
      "broken.py:6: NameError: name 'undefined_lr'",
    ),
    (
      "  c = base_config()\n  c.optimizr.lr = 0.1\n  return c\n",
      "broken.py:6: no config field 'optimizr'",
    ),
    (
      "  c = base_config()\n  c.optimizer.learning_rate = 0.1\n  return c\n",
      "config.optimizer.learning_rate is not a config field (a typo in the config file?",
    ),
  ],
)
def test_broken_config_file_is_file_line_message(tmp_path, body, match):
  """A config file that does not load: one line `file:line: message`, exit 2; --debug: the traceback."""
  path = tmp_path / "broken.py"
  path.write_text("from classic_cnns.config import base_config\n\n\ndef get_config():\n" + body)
  cmd = [
    sys.executable,
    "-m",
    "classic_cnns.main",
    f"--config={path}",
    f"--workdir={tmp_path / 'w'}",
  ]
  p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
  err = p.stderr.strip().splitlines()
  assert p.returncode == 2 and len(err) == 1 and err[0].startswith("error: ") and match in err[0], (
    p.stderr[-2000:]
  )
  assert "Traceback" not in p.stderr
  assert not (tmp_path / "w").exists()
  p = subprocess.run(
    cmd,
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "CLASSIC_CNNS_DEBUG": "1"},
  )
  assert p.returncode != 0 and "Traceback" in p.stderr


def test_batch_not_divisible_by_devices(tmp_path):
  p = run_main(tmp_path, "--config.batch_size=63", env=with_devices(2))
  assert p.returncode == 2 and "not divisible by the 2 devices" in p.stderr


def test_two_devices_data_parallel(tmp_path):
  """The same command on 2 (simulated) devices trains with the batch split over them."""
  p = run_main(
    tmp_path, "--config.num_steps=40", "--config.log_every_steps=20", env=with_devices(2)
  )
  assert p.returncode == 0, p.stderr[-2000:]
  assert "2 device(s)" in p.stdout and "final test accuracy" in p.stdout


def _final_top1(workdir):
  return [json.loads(l)["top1"] for l in open(workdir / "metrics.jsonl") if '"test_final"' in l]


def test_compilation_cache_makes_a_rerun_load_the_compiled_steps(tmp_path):
  """config.compilation_cache_dir: the first run stores its compiled programs; a second run of the
  same config (a new workdir) finds every one of them (no new entries) and ends with the same numbers."""
  cache = tmp_path / "xla_cache"
  env = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}  # LeNet-5's steps compile in < 1 s
  args = (
    "--config.num_steps=6",
    "--config.eval_every_steps=6",
    f"--config.compilation_cache_dir={cache}",
  )
  first = run_main(tmp_path / "a", *args, env=env)
  assert first.returncode == 0, first.stderr[-2000:]
  stored = sorted(f for f in os.listdir(cache) if f.endswith("-cache"))
  assert stored
  second = run_main(tmp_path / "b", *args, env=env)
  assert second.returncode == 0, second.stderr[-2000:]
  assert sorted(f for f in os.listdir(cache) if f.endswith("-cache")) == stored
  assert _final_top1(tmp_path / "a") == _final_top1(tmp_path / "b") != []


def test_empty_compilation_cache_dir_turns_the_cache_off(tmp_path):
  """`--config.compilation_cache_dir=` wins over JAX_COMPILATION_CACHE_DIR: nothing is stored."""
  cache = tmp_path / "env_cache"
  p = run_main(
    tmp_path / "w",
    "--config.num_steps=2",
    "--config.eval_every_steps=2",
    "--config.compilation_cache_dir=",
    env={
      "JAX_COMPILATION_CACHE_DIR": str(cache),
      "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    },
  )
  assert p.returncode == 0, p.stderr[-2000:]
  assert not cache.exists() or not os.listdir(cache)
