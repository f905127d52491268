"""The workdir's lock and its guard against bad input: every refused command ends with one line on
stderr, a non-zero exit, and the workdir's files as they were (bytes and mtimes)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from classic_cnns import cli, train, workdir
from classic_cnns import steps
from classic_cnns.config import ConfigError, validate_config
from tests.helpers import load_config_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny run: LeNet-5 on 96 random 28x28 digits, 4 steps of 32.
RUN = {
  "data.source": "npz",
  "num_steps": 4,
  "batch_size": 32,
  "log_every_steps": 2,
  "eval_every_steps": 100,
  "eval_batch_size": 40,
  "checkpoint_every_steps": 4,
}


def write_npz(path, n_train=96, n_test=40, classes=10, seed=0, **replace):
  rng = np.random.default_rng(seed)
  arrays = {
    "x_train": rng.integers(0, 255, (n_train, 28, 28), dtype=np.uint8),
    "y_train": np.arange(n_train) % classes,
    "x_test": rng.integers(0, 255, (n_test, 28, 28), dtype=np.uint8),
    "y_test": np.arange(n_test) % classes,
  }
  arrays.update(replace)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return arrays


def run_config(data_path, **overrides):
  config = load_config_module("lenet5_mnist.py").get_config()
  config.update_from_flattened_dict({**RUN, "data.path": str(data_path), **overrides})
  return config


def run_main_in_process(config, workdir_path, capfd):
  """classic_cnns.main's path after flag parsing: (exit status, stderr lines)."""
  import jax

  capfd.readouterr()
  try:
    with cli.user_errors():
      validate_config(config, jax.device_count())
      train.train_and_evaluate(config, str(workdir_path))
    code = 0
  except SystemExit as e:
    code = e.code
  return code, capfd.readouterr().err.strip().splitlines()


def main_cmd(workdir_path, data_path, *args, config="configs/lenet5_mnist.py"):
  return [
    sys.executable,
    "-m",
    "classic_cnns.main",
    f"--config={config}",
    f"--workdir={workdir_path}",
    *(f"--config.{k}={v}" for k, v in {**RUN, "data.path": data_path}.items()),
    *args,
  ]


def run_main(workdir_path, data_path, *args, **kw):
  return subprocess.run(
    main_cmd(workdir_path, data_path, *args, **kw),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )


def snapshot(path) -> dict:
  """{relative path: (size, sha256)} of every file under `path` but the lock file: what "the
  workdir's files are unchanged" means (a file rewritten with the same bytes is unchanged)."""
  out = {}
  for root, _, files in os.walk(path):
    for f in files:
      full = os.path.join(root, f)
      rel = os.path.relpath(full, path)
      if rel == workdir.LOCK_FILE:
        continue
      with open(full, "rb") as fh:
        out[rel] = (os.path.getsize(full), hashlib.sha256(fh.read()).hexdigest())
  return out


def assert_one_error_line(code, lines, match, status=None):
  assert code != 0 and (status is None or code == status), (code, lines)
  assert len(lines) == 1 and lines[0].startswith("error: ") and match in lines[0], lines
  assert not any("Traceback" in l for l in lines)


@pytest.fixture
def finished_run(tmp_path_factory):
  """(workdir, data path, snapshot) of a finished tiny run, one per test: a test that reruns it
  (successfully or not) can never change what another test compares against."""
  root = tmp_path_factory.mktemp("finished")
  data = root / "data.npz"
  write_npz(data)
  wd = root / "run"
  result = train.train_and_evaluate(run_config(data), str(wd))
  assert result.final_step == 4
  return wd, data, snapshot(wd)


@pytest.fixture
def data_file(finished_run):
  """The finished run's data file; whatever a test writes there is undone afterwards."""
  _, data, _ = finished_run
  original = data.read_bytes()
  yield data
  data.write_bytes(original)


def _hold_lock(path, shared=False):
  """A subprocess holding `path`'s lock until killed; returns it once the lock is held."""
  code = (
    f"import sys, time\nfrom classic_cnns import workdir\nwith workdir.lock({str(path)!r}, shared={shared}):\n"
    f"  print('held', flush=True)\n  time.sleep(300)\n"
  )
  p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert p.stdout.readline().strip() == "held"
  return p


# ----------------------------------------------------------------------------- the lock
def test_exclusive_lock_names_its_holder_and_dies_with_it(tmp_path):
  holder = _hold_lock(tmp_path)
  try:
    with pytest.raises(
      workdir.WorkdirBusyError, match=f"in use by another training run \\(pid {holder.pid}\\)"
    ):
      with workdir.lock(str(tmp_path)):
        pass
    with pytest.raises(
      workdir.WorkdirBusyError,
      match=f"training run \\(pid {holder.pid}\\), which holds it exclusively",
    ):
      with workdir.lock(str(tmp_path), shared=True):
        pass
    assert (tmp_path / ".lock").read_text().split()[0] == str(holder.pid)
  finally:
    holder.send_signal(
      signal.SIGKILL
    )  # kill -9: the kernel releases the lock, nothing stale is left
    holder.wait()
  with workdir.lock(str(tmp_path)):
    assert workdir.holds_lock(str(tmp_path))
    with workdir.lock(str(tmp_path), shared=True):  # re-entrant within a process
      pass
  assert not workdir.holds_lock(str(tmp_path))


def test_shared_locks_share_and_keep_training_out(tmp_path):
  reader = _hold_lock(tmp_path, shared=True)
  try:
    with workdir.lock(str(tmp_path), shared=True):  # another reader: fine
      pass
    with pytest.raises(workdir.WorkdirBusyError, match=f"being read by pid {reader.pid}"):
      with workdir.lock(str(tmp_path)):
        pass
  finally:
    reader.kill()
    reader.wait()


def test_a_refused_run_leaves_no_new_workdir_behind(tmp_path):
  new = tmp_path / "a" / "b"
  with pytest.raises(ValueError):
    with workdir.lock(str(new)):
      assert (new / ".lock").exists()
      raise ValueError("refused")
  assert not (tmp_path / "a").exists()
  (tmp_path / "kept").mkdir()
  with pytest.raises(ValueError):
    with workdir.lock(str(tmp_path / "kept")):
      raise ValueError("refused")
  assert (tmp_path / "kept").is_dir()
  with workdir.lock(str(tmp_path / "missing"), shared=True):  # readers create nothing
    pass
  assert not (tmp_path / "missing").exists()


# ----------------------------------------------------------------------------- continuing a run
def _json_config(**overrides):
  c = run_config("/data/a.npz", **overrides)
  return c, workdir.config_fields(c)


def test_compatible_changes_and_refusals(tmp_path):
  base, fields = _json_config()
  (tmp_path / "config.json").write_text(json.dumps(json.loads(base.to_json_best_effort())))
  for ok in (
    {"log_every_steps": 1},
    {"num_steps": 10},
    {"kernels": "portable"},
    {"compilation_cache_dir": ""},
    {"eval_every_steps": 2, "checkpoint_every_steps": 1, "eval_batch_size": 8},
  ):
    workdir.check_compatible(str(tmp_path), run_config("/data/a.npz", **ok))
  for bad, match in (
    ({"num_steps": 3}, "num_steps=4; it continues only to a num_steps at least as large"),
    ({"seed": 1}, "seed=0, this config has seed=1"),
    ({"data.path": "/data/b.npz"}, "data.path='/data/a.npz'"),
    ({"data.val_size": 8}, "data.val_size=0"),
    ({"data.normalize": "none"}, "data.normalize='channel'"),
    ({"data.augment.flip": True}, "data.augment.flip=False"),
    ({"optimizer.lr": 0.02}, "optimizer.lr=0.01"),
    ({"schedule.name": "constant"}, "schedule.name='cosine'"),
    ({"batch_size": 16}, "batch_size=32"),
    ({"dtype": "bfloat16"}, "dtype='float32'"),
    ({"model.act": "relu"}, "model.act='sigmoid'"),
    ({"model.name": "lenet5_lecun"}, "holds a run of model 'lenet5', not 'lenet5_lecun'"),
  ):
    with pytest.raises(ConfigError, match=match.replace("(", "\\(")):
      workdir.check_compatible(str(tmp_path), run_config("/data/a.npz", **bad))
  # Evaluation restores the model only: other data is fine, another model option is not.
  workdir.check_compatible(str(tmp_path), run_config("/data/b.npz"), prefixes=("model.",))
  with pytest.raises(ConfigError, match="model.act"):
    workdir.check_compatible(
      str(tmp_path), run_config("/data/a.npz", **{"model.act": "relu"}), prefixes=("model.",)
    )
  (tmp_path / "config.json").write_text('{"model": ')
  with pytest.raises(ConfigError, match="cannot read .*config.json"):
    workdir.check_compatible(str(tmp_path), base)


# ----------------------------------------------------------------------------- refused runs, workdir unchanged
@pytest.mark.parametrize(
  "case",
  [
    "truncated_npz",
    "negative_label",
    "empty_test_split",
    "batch_over_examples",
    "other_classes",
    "other_data_path",
    "lr_inf",
    "shorter_run",
  ],
)
def test_refused_rerun_of_a_finished_run_changes_nothing(
  finished_run, data_file, tmp_path, capfd, case
):
  wd, data, before = finished_run
  overrides, match = {}, None
  if case == "truncated_npz":
    data.write_bytes(data.read_bytes()[: len(data.read_bytes()) // 2])
    match = "(truncated or corrupt?)"
  elif case == "negative_label":
    y = np.arange(96) % 10
    y[7] = -1
    write_npz(data, y_train=y)
    match = "labels must be in [0, num_classes), got -1 at index 7"
  elif case == "empty_test_split":
    write_npz(data, x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros((0,), np.int64))
    match = "the split is empty"
  elif case == "batch_over_examples":  # the same file, rewritten with fewer examples than one batch
    write_npz(data, n_train=20)
    match = "config.batch_size=32 exceeds the 20 training examples"
  elif case == "other_classes":  # the same path and config, but data of 5 classes
    write_npz(data, classes=5)
    match = "holds a run on the classes"
  elif case == "other_data_path":
    other = tmp_path / "other.npz"
    write_npz(other, seed=1)
    overrides, match = {"data.path": str(other)}, "holds a run with data.path="
  elif case == "lr_inf":
    overrides, match = {"optimizer.lr": float("inf")}, "config.optimizer.lr must be a finite number"
  elif case == "shorter_run":
    overrides, match = {"num_steps": 2}, "it continues only to a num_steps at least as large"
  # A fresh process, as a user's rerun: nothing of this test process's state (compiled steps,
  # loaded modules) can stand in for what the command itself checks.
  args = [f"--config.{k}={v}" for k, v in overrides.items() if k != "data.path"]
  p = subprocess.run(
    main_cmd(wd, overrides.get("data.path", data), *args),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert_one_error_line(p.returncode, p.stderr.strip().splitlines(), match, status=2)
  assert snapshot(wd) == before


def test_a_longer_run_continues_the_finished_one(finished_run, tmp_path, capfd):
  wd, data, _ = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(wd, copy)
  result = train.train_and_evaluate(run_config(data, num_steps=6, log_every_steps=3), str(copy))
  assert result.final_step == 6 and "resuming from checkpoint at step 4" in capfd.readouterr().out
  assert json.load(open(copy / "config.json"))["num_steps"] == 6


def test_corrupt_jpeg_in_an_image_folder_names_the_file(tmp_path, capfd):
  from PIL import Image

  rng = np.random.default_rng(0)
  for split, n in (("train", 4), ("test", 2)):
    for cls in ("a", "b"):
      (tmp_path / "img" / split / cls).mkdir(parents=True)
      for i in range(n):
        Image.fromarray(rng.integers(0, 255, (28, 28, 3), dtype=np.uint8)).save(
          tmp_path / "img" / split / cls / f"{i}.jpg"
        )
  bad = tmp_path / "img" / "train" / "b" / "1.jpg"
  bad.write_bytes(bad.read_bytes()[:200])
  config = run_config(
    tmp_path / "img", **{"data.source": "folder", "batch_size": 4, "model.num_classes": 2}
  )
  code, lines = run_main_in_process(config, tmp_path / "w", capfd)
  assert_one_error_line(code, lines, f"cannot decode image {bad}", status=2)
  assert not (tmp_path / "w").exists()  # nothing written, not even the workdir


# ----------------------------------------------------------------------------- the command line, end to end
def test_cli_busy_workdir_lr_nan_and_config_syntax_error(finished_run):
  wd, data, before = finished_run
  holder = _hold_lock(wd)
  try:
    p = run_main(wd, data)
    assert_one_error_line(
      p.returncode, p.stderr.strip().splitlines(), f"pid {holder.pid}", status=1
    )
  finally:
    holder.kill()
    holder.wait()
  p = run_main(wd, data, "--config.optimizer.lr=nan")
  assert_one_error_line(
    p.returncode,
    p.stderr.strip().splitlines(),
    "config.optimizer.lr must be a finite number",
    status=2,
  )
  broken = os.path.join(os.path.dirname(data), "broken_config.py")
  with open(broken, "w") as f:
    f.write(
      "from classic_cnns.config import base_config\n\ndef get_config():\n  c = base_config(\n  return c\n"
    )
  p = run_main(wd, data, config=broken)
  assert_one_error_line(p.returncode, p.stderr.strip().splitlines(), f"{broken}:4: ", status=2)
  p = subprocess.run(
    main_cmd(wd, data, "--debug", config=broken),
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode != 0 and "Traceback" in p.stderr and "SyntaxError" in p.stderr
  assert snapshot(wd) == before


def test_cli_predict_with_a_truncated_preprocess_file(finished_run, tmp_path):
  wd, _, _ = finished_run
  copy = tmp_path / "copy"
  shutil.copytree(wd, copy)
  prep = copy / "preprocess.npz"
  prep.write_bytes(prep.read_bytes()[:100])
  from PIL import Image

  Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
  before = snapshot(copy)
  p = subprocess.run(
    [sys.executable, "-m", "classic_cnns.predict", f"--workdir={copy}", str(tmp_path / "x.png")],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert_one_error_line(
    p.returncode,
    p.stderr.strip().splitlines(),
    f"cannot read {prep} (truncated or corrupt",
    status=2,
  )
  assert snapshot(copy) == before


def test_one_line_helper_exit_statuses(capsys, monkeypatch):
  """cli.user_errors: usage errors 2, runtime errors 1, unknown exceptions keep their traceback,
  --debug / CLASSIC_CNNS_DEBUG=1 re-raise known ones."""
  import errno
  from classic_cnns.data.common import DatasetError
  from classic_cnns.data.streaming import DataReadError

  monkeypatch.delenv("CLASSIC_CNNS_DEBUG", raising=False)
  cases = [
    (ConfigError("bad value\nsecond line"), 2, "error: bad value"),
    (DatasetError("bad data"), 2, "error: bad data"),
    (
      DataReadError("cannot read image x.jpg (training step 3): bad"),
      1,
      "error: cannot read image x.jpg",
    ),
    (workdir.WorkdirBusyError("busy"), 1, "error: busy"),
    (steps.TrainingDivergedError("diverged at step 5"), 1, "error: diverged at step 5"),
    (
      OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl"),
      1,
      "error: no space left on device: /w/metrics.jsonl; free some space",
    ),
  ]
  for exc, status, line in cases:
    with pytest.raises(SystemExit) as e:
      with cli.user_errors():
        raise exc
    assert e.value.code == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line), err
  with pytest.raises(KeyError):  # a bug: its traceback stays
    with cli.user_errors():
      raise KeyError("x")
  monkeypatch.setenv("CLASSIC_CNNS_DEBUG", "1")
  with pytest.raises(ConfigError):
    with cli.user_errors():
      raise ConfigError("shown with its traceback")
