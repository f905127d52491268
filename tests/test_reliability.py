"""Interrupted runs lose nothing; bad input gets one clear line (issue: reliability)."""
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--config.num_steps=60", "--config.log_every_steps=10", "--config.checkpoint_every_steps=10",
          "--config.eval_every_steps=30", "--config.schedule.name=constant"]


def main_cmd(workdir, *args):
  return [sys.executable, "-m", "classic_cnns.main", "--config=configs/lenet5_mnist.py", f"--workdir={workdir}",
          *args]


def run(workdir, *args):
  return subprocess.run(main_cmd(workdir, *args), cwd=REPO, capture_output=True, text=True, timeout=600)


def start_and_signal_at(workdir, step, sig, *args):
  """Starts a run, sends `sig` once it has logged `step`, returns (returncode, stdout)."""
  p = subprocess.Popen(main_cmd(workdir, *args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                       text=True)
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
  mgr = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                              item_handlers={"state": ocp.StandardCheckpointHandler(),
                                             "meta": ocp.JsonCheckpointHandler()})
  step = mgr.latest_step()
  # Restore onto this process's first device, whatever topology saved it (e.g. 2 processes).
  meta = mgr.item_metadata(step)["state"].tree
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one), meta)
  state = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))["state"]
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
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0 and "resuming from checkpoint" in p.stdout, p.stderr[-2000:]
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


def test_corrupt_latest_checkpoint_falls_back_and_is_replaced(tmp_path, uninterrupted):
  p = run(tmp_path, *COMMON[1:], "--config.num_steps=30")
  assert p.returncode == 0
  for root, _, files in os.walk(tmp_path / "checkpoints" / "30" / "state"):
    for f in files:
      open(os.path.join(root, f), "wb").close()  # truncated mid-write
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "checkpoints/30 is unreadable" in p.stdout and "resuming from checkpoint at step 20" in p.stdout
  assert_same_params(tmp_path, uninterrupted)


def test_same_config_and_seed_give_identical_metrics(tmp_path, uninterrupted):
  p = run(tmp_path, *COMMON)
  assert p.returncode == 0
  assert open(tmp_path / "metrics.jsonl").read() == open(uninterrupted / "metrics.jsonl").read()


def test_bad_input_leaves_existing_checkpoints_untouched(tmp_path, uninterrupted):
  before = {f: os.path.getmtime(uninterrupted / "checkpoints" / f) for f in os.listdir(uninterrupted / "checkpoints")}
  for args in (["--config.model.name=lenet5_lecun"], ["--config.model.name=resnet_nope"],
               ["--config.batch_size=-1"], ["--config.model.act=swishy"]):
    p = run(uninterrupted, *COMMON, *args)
    err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
    assert p.returncode == 2 and len(err) == 1 and "Traceback" not in p.stderr, (args, p.stderr[-1500:])
  after = {f: os.path.getmtime(uninterrupted / "checkpoints" / f) for f in os.listdir(uninterrupted / "checkpoints")}
  assert before == after


def _one_error_line(p, match):
  err = [l for l in p.stderr.splitlines() if l.startswith("error:")]
  assert p.returncode == 2 and len(err) == 1 and match in err[0] and "Traceback" not in p.stderr, p.stderr[-2000:]


def test_npz_missing_keys(tmp_path):
  np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4))
  _one_error_line(run(tmp_path / "w", "--config.data.source=npz", f"--config.data.path={tmp_path}/d.npz"),
                  "lacks the keys x_test, y_test")


def test_folder_without_images(tmp_path):
  (tmp_path / "data" / "train" / "cat").mkdir(parents=True)
  _one_error_line(run(tmp_path / "w", "--config.data.source=folder", f"--config.data.path={tmp_path}/data"),
                  "no images")


def test_unwritable_workdir(tmp_path):
  (tmp_path / "file").write_text("x")
  _one_error_line(run(tmp_path / "file" / "w"), "is not writable")


def test_tfds_not_available_offline(tmp_path):
  _one_error_line(run(tmp_path / "w", "--config.data.source=tfds", "--config.data.name=mnist",
                      f"--config.data.data_dir={tmp_path}/tfds", "--config.data.download=False"),
                  "use local data instead")


def test_unknown_tfds_dataset(tmp_path):
  _one_error_line(run(tmp_path / "w", "--config.data.source=tfds", "--config.data.name=mnistt",
                      f"--config.data.data_dir={tmp_path}/tfds"), "unknown TFDS dataset 'mnistt'")


def test_nonfinite_updates_are_skipped_when_asked():
  """A batch whose loss is NaN leaves the state unchanged (step advances) with skip_nonfinite_steps."""
  import flax.linen as nn
  import optax
  from classic_cnns import parallel, train
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
  state = train.create_train_state(model, tx, (2, 2, 1), 0, mesh)
  step = jax.jit(train.make_train_step(model, c, Preprocess(), sched, jnp.float32))
  good = {"image": jnp.full((4, 2, 2, 1), 3, jnp.uint8), "label": jnp.array([0, 1, 2, 0])}
  bad = {"image": jnp.zeros((4, 2, 2, 1), jnp.uint8), "label": jnp.array([0, 1, 2, 0])}
  s1, m1 = step(state, good)
  assert float(m1["skipped"]) == 0 and not np.allclose(s1.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])
  before = jax.tree.map(np.asarray, s1.params)
  s2, m2 = step(s1, bad)
  assert float(m2["skipped"]) == 1 and int(s2.step) == 2
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(s2.params)):
    np.testing.assert_array_equal(a, b)
