"""Interrupted runs lose nothing (kill -9, SIGTERM, a corrupt checkpoint, a full disk, a torn metrics
line); a diverging run never saves a NaN/Inf checkpoint; bad input gets one clear line."""

import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = [
  "--config.num_steps=60",
  "--config.log_every_steps=10",
  "--config.checkpoint_every_steps=10",
  "--config.eval_every_steps=30",
  "--config.schedule.name=constant",
]


def main_cmd(workdir, *args):
  return [
    sys.executable,
    "-m",
    "classic_cnns.main",
    "--config=configs/lenet5_mnist.py",
    f"--workdir={workdir}",
    *args,
  ]


def run(workdir, *args):
  return subprocess.run(
    main_cmd(workdir, *args), cwd=REPO, capture_output=True, text=True, timeout=600
  )


def start_and_signal_at(workdir, step, sig, *args):
  """Starts a run, sends `sig` once it has logged `step`, returns (returncode, stdout)."""
  p = subprocess.Popen(
    main_cmd(workdir, *args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
  )
  out = []
  for line in p.stdout:
    out.append(line)
    if line.startswith(f"step {step}/"):
      p.send_signal(sig)
      break
  rest, _ = p.communicate(timeout=300)
  return p.returncode, "".join(out) + (rest or "")


def final_params(workdir):
  import orbax.checkpoint as ocp

  mgr = ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")),
    item_handlers={"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()},
  )
  step = mgr.latest_step()
  # Restore onto this process's first device, whatever topology saved it (e.g. 2 processes).
  meta = mgr.item_metadata(step)["state"].tree
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
  state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))[
    "state"
  ]
  mgr.close()
  return step, jax.tree.map(np.asarray, state["params"])


def assert_same_params(a, b):
  sa, pa = final_params(a)
  sb, pb = final_params(b)
  assert sa == sb
  for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  d = tmp_path_factory.mktemp("uninterrupted")
  p = run(d, *COMMON)
  assert p.returncode == 0, p.stderr[-2000:]
  return d


def test_kill_9_then_rerun_is_bit_identical(tmp_path, uninterrupted):
  rc, _ = start_and_signal_at(tmp_path, 40, signal.SIGKILL, *COMMON)
  assert rc == -signal.SIGKILL
  with open(tmp_path / "metrics.jsonl", "a") as f:  # as if killed in the middle of writing a record
    f.write('{"step": 50, "split": "train", "loss": 0.')
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0 and "resuming from checkpoint" in p.stdout, p.stderr[-2000:]
  assert "metrics.jsonl: dropped its last line, cut short by an interrupted write" in p.stdout
  assert_same_params(tmp_path, uninterrupted)
  assert open(tmp_path / "metrics.jsonl").read() == open(uninterrupted / "metrics.jsonl").read()


def test_sigterm_saves_and_exits_cleanly_then_resumes(tmp_path, uninterrupted):
  rc, out = start_and_signal_at(tmp_path, 20, signal.SIGTERM, *COMMON)
  assert rc == 128 + signal.SIGTERM and "stopped by signal 15" in out
  steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert steps and steps[-1] >= 20
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0, p.stderr[-2000:]
  assert_same_params(tmp_path, uninterrupted)
  # Saved mid-window (a step after 20): the checkpoint carries the window, the averages are the same.
  assert open(tmp_path / "metrics.jsonl").read() == open(uninterrupted / "metrics.jsonl").read()


def test_corrupt_latest_checkpoint_falls_back_and_is_replaced(tmp_path, uninterrupted):
  p = run(tmp_path, *COMMON[1:], "--config.num_steps=30")
  assert p.returncode == 0
  for root, _, files in os.walk(tmp_path / "checkpoints" / "30" / "state"):
    for f in files:
      open(os.path.join(root, f), "wb").close()  # truncated mid-write
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0, p.stderr[-2000:]
  assert (
    "checkpoints/30 is unreadable" in p.stdout and "resuming from checkpoint at step 20" in p.stdout
  )
  assert_same_params(tmp_path, uninterrupted)


def test_flipped_byte_in_latest_checkpoint_fails_its_checksum_and_the_previous_is_used(
  tmp_path, uninterrupted
):
  """Silent corruption (the arrays still decode): the checksums recorded at save catch it."""
  p = run(tmp_path, *COMMON[1:], "--config.num_steps=30")
  assert p.returncode == 0
  ocdbt = tmp_path / "checkpoints" / "30" / "state" / "ocdbt.process_0"
  arrays = [os.path.join(root, f) for root, _, files in os.walk(ocdbt) for f in files]
  path = max(arrays, key=os.path.getsize)  # the array data
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x10]))
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0, p.stderr[-2000:]
  warnings = [l for l in p.stdout.splitlines() if l.startswith("warning:")]
  assert (
    len(warnings) == 1
    and "checkpoints/30 is unreadable (the arrays do not match their checksums" in warnings[0]
  )
  assert "resuming from checkpoint at step 20" in p.stdout
  assert_same_params(tmp_path, uninterrupted)
  assert open(tmp_path / "metrics.jsonl").read() == open(uninterrupted / "metrics.jsonl").read()


DISK_FULL_AT_STEP_20 = """
import errno, sys
import orbax.checkpoint as ocp
save = ocp.CheckpointManager.save
def full(self, step, *args, **kwargs):
  if step >= 20:
    raise OSError(errno.ENOSPC, "No space left on device")
  return save(self, step, *args, **kwargs)
ocp.CheckpointManager.save = full
from classic_cnns import cli, main
sys.argv[0] = "main"
cli.run(main.main)
"""


def test_disk_full_while_checkpointing_ends_in_one_line_and_keeps_the_last_checkpoint(tmp_path):
  p = subprocess.run(
    [
      sys.executable,
      "-c",
      DISK_FULL_AT_STEP_20,
      "--config=configs/lenet5_mnist.py",
      f"--workdir={tmp_path}",
      *COMMON,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=600,
  )
  err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 1 and len(err) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
  assert (
    f"in workdir {tmp_path}: No space left on device" in err[0]
    and "checkpoint of step 20" in err[0]
  ), err
  assert "(step 10) is kept" in err[0], err
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10"]


def _divergence_config(**overrides):
  from tests.helpers import lenet_config

  return lenet_config(
    **{
      "num_steps": 20,
      "log_every_steps": 10,
      "checkpoint_every_steps": 3,
      "keep_checkpoints": 10,
      "eval_every_steps": 100,
      "optimizer.name": "sgd",
      "optimizer.lr": 1e4,
      "model.act": "relu",
      "schedule.name": "constant",
      **overrides,
    }
  )


def test_a_diverging_run_never_saves_a_nonfinite_checkpoint_and_stops_at_the_same_step_again(
  tmp_path, capsys
):
  """Checkpoints more often than train records: every save is checked; the rerun resumes from the last
  finite checkpoint and stops with the same message."""
  from classic_cnns import train
  from classic_cnns import steps

  with pytest.raises(steps.TrainingDivergedError) as first:
    train.train_and_evaluate(_divergence_config(), str(tmp_path))
  msg = str(first.value)
  assert "\n" not in msg and "training diverged" in msg and "a lower config.optimizer.lr" in msg
  bad = int(msg.split(" at step ")[1].split()[0])
  saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit())
  assert saved and saved[-1] < bad and bad < 10, (
    saved,
    msg,
  )  # diverged before the first train record
  last, params = final_params(tmp_path)
  assert last == saved[-1] and all(np.isfinite(x).all() for x in jax.tree.leaves(params))
  capsys.readouterr()
  with pytest.raises(steps.TrainingDivergedError) as again:
    train.train_and_evaluate(_divergence_config(), str(tmp_path))
  assert str(again.value) == msg
  assert f"resuming from checkpoint at step {saved[-1]}" in capsys.readouterr().out
  assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints") if s.isdigit()) == saved


def test_resume_mid_window_logs_the_same_and_a_shorter_window_is_marked(tmp_path, capsys):
  """A checkpoint between train records carries the steps since the last one: a run resumed from it
  writes the metrics of an uninterrupted run; a window it cannot fill (here: a larger log_every_steps
  than when saved) is marked partial_window."""
  import json
  import shutil
  from classic_cnns import train
  from tests.helpers import lenet_config

  common = {
    "num_steps": 20,
    "log_every_steps": 10,
    "checkpoint_every_steps": 4,
    "keep_checkpoints": 10,
    "eval_every_steps": 10,
    "schedule.name": "constant",
  }
  train.train_and_evaluate(lenet_config(**common), str(tmp_path))
  reference = open(tmp_path / "metrics.jsonl").read()

  def crash_after_step_12():
    for step in (16, 20):
      shutil.rmtree(tmp_path / "checkpoints" / str(step))
    capsys.readouterr()

  crash_after_step_12()
  train.train_and_evaluate(lenet_config(**common), str(tmp_path))
  assert "resuming from checkpoint at step 12" in capsys.readouterr().out
  assert open(tmp_path / "metrics.jsonl").read() == reference
  crash_after_step_12()
  train.train_and_evaluate(lenet_config(**{**common, "log_every_steps": 20}), str(tmp_path))
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  assert [(r["step"], r.get("partial_window")) for r in records if r["split"] == "train"] == [
    (10, None),
    (20, True),
  ]


def test_same_config_and_seed_give_identical_metrics(tmp_path, uninterrupted):
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0
  assert open(tmp_path / "metrics.jsonl").read() == open(uninterrupted / "metrics.jsonl").read()


def test_bad_input_leaves_existing_checkpoints_untouched(tmp_path, uninterrupted):
  before = {
    f: os.path.getmtime(uninterrupted / "checkpoints" / f)
    for f in os.listdir(uninterrupted / "checkpoints")
  }
  for args in (
    ["--config.model.name=lenet5_lecun"],
    ["--config.model.name=resnet_nope"],
    ["--config.batch_size=-1"],
    ["--config.model.act=swishy"],
  ):
    p = run(uninterrupted, *COMMON, *args)
    err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr, (
      args,
      p.stderr[-1500:],
    )
  after = {
    f: os.path.getmtime(uninterrupted / "checkpoints" / f)
    for f in os.listdir(uninterrupted / "checkpoints")
  }
  assert before == after


def _one_error_line(p, match):
  err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(err) == 1 and match in err[0] and "Traceback" not in p.stderr, (
    p.stderr[-2000:]
  )


def test_npz_missing_keys(tmp_path):
  np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4))
  _one_error_line(
    run(tmp_path / "w", "--config.data.source=npz", f"--config.data.path={tmp_path}/d.npz"),
    "lacks the keys x_test, y_test",
  )


def test_folder_without_images(tmp_path):
  (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
  _one_error_line(
    run(tmp_path / "w", "--config.data.source=folder", f"--config.data.path={tmp_path}/data"),
    "no images",
  )


def test_unwritable_workdir(tmp_path):
  (tmp_path / "file").write_text("x")
  _one_error_line(run(tmp_path / "file" / "w"), "is not writable")


def test_tfds_not_available_offline(tmp_path):
  _one_error_line(
    run(
      tmp_path / "w",
      "--config.data.source=tfds",
      "--config.data.name=mnist",
      f"--config.data.data_dir={tmp_path}/tfds",
      "--config.data.download=False",
    ),
    "use local data instead",
  )


def test_unknown_tfds_dataset(tmp_path):
  _one_error_line(
    run(
      tmp_path / "w",
      "--config.data.source=tfds",
      "--config.data.name=mnistt",
      f"--config.data.data_dir={tmp_path}/tfds",
    ),
    "unknown TFDS dataset 'mnistt'",
  )


def test_nonfinite_updates_are_skipped_when_asked():
  """A batch whose loss is NaN leaves the state unchanged (step advances) with skip_nonfinite_steps."""
  import flax.linen as nn
  import optax
  from classic_cnns import parallel
  from classic_cnns import build
  from classic_cnns import steps
  from classic_cnns.config import base_config
  from classic_cnns.data.augment import Preprocess

  class LogModel(nn.Module):  # log(0) = -inf on an all-zero image
    @nn.compact
    def __call__(self, x, train=False):
      return nn.Dense(3)(jnp.log(x.reshape(x.shape[0], -1)))

  c = base_config()
  c.skip_nonfinite_steps = True
  model, mesh = LogModel(), parallel.make_mesh()
  sched = optax.constant_schedule(0.1)
  tx = optax.sgd(sched)
  state = build.create_train_state(model, tx, (2, 2, 1), 0, mesh)
  step = jax.jit(steps.make_train_step(model, c, Preprocess(), sched, jnp.float32))
  good = {"image": jnp.full((4, 2, 2, 1), 3, jnp.uint8), "label": jnp.array([0, 1, 2, 0])}
  bad = {"image": jnp.zeros((4, 2, 2, 1), jnp.uint8), "label": jnp.array([0, 1, 2, 0])}
  s1, m1 = step(state, good)
  assert float(m1["skipped"]) == 0 and not np.allclose(
    s1.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"]
  )
  before = jax.tree.map(np.asarray, s1.params)
  s2, m2 = step(s1, bad)
  assert float(m2["skipped"]) == 1 and int(s2.step) == 2
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(s2.params)):
    np.testing.assert_array_equal(a, b)
