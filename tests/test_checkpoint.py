"""Checkpointer on a small state: checksums caught on restore, NaN/Inf checkpoints skipped, failed
writes (at once or in Orbax's background writer) end in one CheckpointWriteError line."""

import errno
import os
import resource
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns import checkpoint


def _state(seed: int, n: int = 100_000):
  """Random floats (incompressible: the arrays are stored as they are) and an integer counter."""
  return {
    "params": {"w": jax.random.normal(jax.random.PRNGKey(seed), (n,)), "b": jnp.zeros((3,))},
    "step": jnp.array(seed, jnp.int32),
  }


def _save(workdir, states: dict):
  ck = checkpoint.Checkpointer(str(workdir), 1, 10)
  for step, state in states.items():
    ck.save(step, state, {"step": step})
  ck.close()


def _restore(workdir, like):
  ck = checkpoint.Checkpointer(str(workdir), 1, 10)
  try:
    state, meta = ck.restore_latest(checkpoint.abstract_like(like))
    return state, meta, ck
  finally:
    ck.close()


def _flip_one_byte_of_the_arrays(step_dir):
  """One byte in the middle of the largest array file (the raw values of `w`)."""
  files = [
    os.path.join(root, f) for root, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs
  ]
  path = max(files, key=os.path.getsize)
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x01]))


def _assert_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checksums_name_each_array_and_see_one_flipped_bit():
  s = _state(1)
  sums = checkpoint.array_checksums(s)
  assert set(sums) == {"params/w", "params/b", "step"} and all(
    v.startswith("crc32:") for v in sums.values()
  )
  w = np.array(s["params"]["w"])
  w.view(np.uint8)[1234] ^= 1
  assert (
    checkpoint.array_checksums({**s, "params": {**s["params"], "w": w}})["params/w"]
    != sums["params/w"]
  )


def test_a_flipped_byte_is_caught_and_the_previous_checkpoint_used(tmp_path, capsys):
  s1, s2 = _state(1), _state(2)
  _save(tmp_path, {1: s1, 2: s2})
  _flip_one_byte_of_the_arrays(tmp_path / "checkpoints" / "2")
  state, meta, ck = _restore(tmp_path, s1)
  assert meta["step"] == 1 and ck.unreadable == {2} and ck.due(2)
  _assert_equal(state, s1)
  warnings = [l for l in capsys.readouterr().out.splitlines() if l.startswith("warning:")]
  assert len(warnings) == 1 and "checkpoints/2 is unreadable" in warnings[0], warnings
  assert "do not match their checksums: params/w" in warnings[0], warnings


def test_an_intact_checkpoint_restores_bit_for_bit(tmp_path):
  s = _state(3)
  _save(tmp_path, {5: s})
  state, meta, _ = _restore(tmp_path, s)
  assert meta["step"] == 5 and set(meta["checksums"]) == {"params/w", "params/b", "step"}
  _assert_equal(state, s)


def test_a_checkpoint_holding_nan_is_skipped(tmp_path, capsys):
  """Written by a version that saved diverged states: never resumed from."""
  s1 = _state(1)
  s2 = {**s1, "params": {**s1["params"], "b": jnp.array([0.0, jnp.nan, 0.0])}}
  _save(tmp_path, {1: s1, 2: s2})
  _, meta, _ = _restore(tmp_path, s1)
  assert meta["step"] == 1 and "NaN/Inf values in params/b" in capsys.readouterr().out


def test_disk_full_at_save_is_one_write_error_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  ck = checkpoint.Checkpointer(str(tmp_path), 1, 10)
  ck.save(1, _state(1), {"step": 1})
  ck.wait()

  def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(ck.manager, "save", full)
  with pytest.raises(checkpoint.CheckpointWriteError) as e:
    ck.save(2, _state(2), {"step": 2})
  ck.close()
  msg = str(e.value)
  assert "\n" not in msg and str(tmp_path) in msg and "No space left on device" in msg
  assert "checkpoint of step 2" in msg and "last good checkpoint (step 1) is kept" in msg
  assert checkpoint.CheckpointWriteError.exit_status == 1
  assert isinstance(e.value, checkpoint.CheckpointError)
  _, meta, _ = _restore(tmp_path, _state(1))
  assert meta["step"] == 1


# Orbax's writer thread leaves an asyncio callback on a closed loop after the failure.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_failed_background_write_surfaces_as_a_write_error(tmp_path):
  """A real write failure inside Orbax's asynchronous writer (files limited to 100 kB, the array is
  400 kB): TensorStore's error becomes one line with the OS's reason; the partial directory goes."""
  ck = checkpoint.Checkpointer(str(tmp_path), 1, 10)
  ck.save(1, _state(1, n=10), {"step": 1})
  ck.wait()
  limits = resource.getrlimit(resource.RLIMIT_FSIZE)
  handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
  try:
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, limits[1]))
    with pytest.raises(checkpoint.CheckpointWriteError) as e:
      ck.save(2, _state(2), {"step": 2})
      ck.wait()
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limits)
    signal.signal(signal.SIGXFSZ, handler)
  ck.close()
  msg = str(e.value)
  assert "File too large" in msg and "checkpoint of step 2" in msg and "(step 1) is kept" in msg, (
    msg
  )
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["1"]


def test_write_failure_cause_reads_tensorstore_errors():
  cause = checkpoint.write_failure_cause
  assert cause(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
  assert cause(
    ValueError("Error writing ...: Failed to write 10 bytes [os_error_code='28']")
  ) == os.strerror(28)
  assert cause(ValueError("shape mismatch")) is None
