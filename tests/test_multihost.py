"""Two processes on localhost (JAX CPU collectives over gloo), 2 simulated devices each: they train,
checkpoint, resume, and end with the parameters of a 1-process run with the same 4-device global batch."""

import os
import socket
import subprocess
import sys

import numpy as np

from tests.helpers import with_devices
from tests.test_reliability import final_params

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
  "--config=configs/lenet5_mnist.py",
  "--config.log_every_steps=10",
  "--config.checkpoint_every_steps=10",
  "--config.schedule.name=constant",
  "--config.eval_every_steps=20",
]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _two_processes(workdir, steps):
  port = _free_port()
  env = with_devices(2)
  cmd = [
    sys.executable,
    "-m",
    "classic_cnns.main",
    f"--workdir={workdir}",
    *ARGS,
    f"--config.num_steps={steps}",
    f"--coordinator_address=localhost:{port}",
    "--num_processes=2",
  ]
  procs = [
    subprocess.Popen(
      cmd + [f"--process_id={i}"],
      cwd=REPO,
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
    )
    for i in range(2)
  ]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  return outs


def test_two_processes_train_checkpoint_resume_match_one_process(tmp_path):
  outs = _two_processes(tmp_path / "mh", 20)
  assert "4 device(s)" in outs[0][0] and "final test accuracy" in outs[0][0]
  assert "step 20/20" not in outs[1][0]  # only process 0 logs
  outs = _two_processes(tmp_path / "mh", 40)
  assert "resuming from checkpoint at step 20" in outs[0][0]
  env = with_devices(4)
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.main",
      f"--workdir={tmp_path / 'one'}",
      *ARGS,
      "--config.num_steps=40",
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert p.returncode == 0, p.stderr[-3000:]
  s1, p1 = final_params(tmp_path / "mh")
  s2, p2 = final_params(tmp_path / "one")
  assert s1 == s2 == 40
  import jax

  # Tolerance: both runs sum the same gradients in different orders (gloo's all-reduce across the
  # processes vs the in-process one; each process's own Eigen thread split), float32 round-off that 40
  # momentum-SGD steps amplify, most in LeNet-5's 400-input C5 kernel. Measured: relative L2 difference
  # per leaf <= 7e-6, largest element difference 3e-5 to 8e-5 (one element in 48,000).
  for path, a, b in zip(
    jax.tree_util.tree_leaves_with_path(p1), jax.tree.leaves(p1), jax.tree.leaves(p2)
  ):
    name = jax.tree_util.keystr(path[0])
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b), name
    np.testing.assert_allclose(a, b, rtol=0, atol=3e-4, err_msg=name)
