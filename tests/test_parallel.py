"""Data parallelism on 8 simulated CPU devices (run in a subprocess: the device count is fixed at start).

Checked: 8 devices == 1 device for the same global batch (global BN); per-device BN on 8 devices ==
ghost BN with the per-device batch on 1 device, and != global BN; gradient accumulation == the large
batch for a model without BN; bfloat16 compute keeps float32 parameters.
"""

import os
import subprocess
import sys

import pytest

from tests.helpers import with_devices

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tolerance: the same maths summed in a different order over 8 shards; float32.
RTOL, ATOL = 2e-4, 2e-5


@pytest.mark.parametrize("check", ["global_bn", "per_device_bn", "accumulation", "bfloat16"])
def test_on_8_devices(check):
  env = with_devices(8)
  p = subprocess.run(
    [sys.executable, "-m", "tests.test_parallel", check],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
  assert "OK" in p.stdout


def _run(config, model_overrides, mesh, n_steps=3, batch=32, side=16):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import optim, parallel
  from classic_cnns import build
  from classic_cnns import steps
  from classic_cnns.data import augment

  for k, v in model_overrides.items():
    config.model[k] = v
  config.batch_size = batch
  model = build.build_model(config, mesh.devices.size)
  sched = optim.make_schedule(config, 10, 100)
  shape = (side, side, 1)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape), train=False)
  )
  tx = optim.make_optimizer(config, sched, abstract["params"])
  state = build.create_train_state(model, tx, shape, 0, mesh)
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  prep = augment.Preprocess(mean=(127.5,), std=(64.0,))
  step = jax.jit(
    steps.make_train_step(model, config, prep, sched, jnp.dtype(config.dtype)),
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
  )
  rng = np.random.default_rng(0)
  for _ in range(n_steps):
    b = {
      "image": jax.device_put(rng.integers(0, 255, (batch,) + shape, dtype=np.uint8), data),
      "label": jax.device_put(rng.integers(0, 10, batch).astype(np.int32), data),
    }
    state, metrics = step(state, b)
  return jax.tree.map(np.asarray, {"params": state.params, "batch_stats": state.batch_stats})


def _close(a, b):
  import jax
  import numpy as np

  return all(
    np.allclose(x, y, rtol=RTOL, atol=ATOL) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )


def _main(check):
  import jax
  from classic_cnns import parallel
  from classic_cnns.config import base_config

  assert jax.device_count() == 8
  mesh8, mesh1 = parallel.make_mesh(), parallel.make_mesh(jax.devices()[:1])
  resnet = {"name": "resnet20", "num_classes": 10, "stage_sizes": (1, 1, 1), "norm": "batch"}

  def cfg(**kw):
    c = base_config()
    c.model = resnet.copy() if kw.pop("resnet", True) else {"name": "lenet5", "num_classes": 10}
    c.optimizer.lr = 0.05
    for k, v in kw.items():
      *path, leaf = k.split("__")
      node = c
      for p in path:
        node = node[p]
      node[leaf] = v
    return c

  if check == "global_bn":
    a = _run(cfg(), {}, mesh8)
    b = _run(cfg(), {}, mesh1)
    assert _close(a, b), "8 devices and 1 device differ"
  elif check == "per_device_bn":
    per_dev = _run(cfg(bn__stats="per_device"), {}, mesh8)  # 32 / 8 = 4 per device
    ghost = _run(cfg(bn__stats="ghost", bn__ghost_batch_size=4), {}, mesh1)
    glob = _run(cfg(), {}, mesh8)
    assert _close(per_dev, ghost), "per-device BN on 8 devices != ghost BN of 4 on 1 device"
    assert not _close(per_dev, glob), "per-device BN should differ from global BN"
  elif check == "accumulation":
    big = _run(cfg(resnet=False), {}, mesh8, side=32)
    acc = _run(cfg(resnet=False, accum_steps=4), {}, mesh8, side=32)
    assert _close(big, acc), "accumulated gradients differ from the large batch"
  elif check == "bfloat16":
    import numpy as np

    out = _run(cfg(dtype="bfloat16"), {}, mesh8, n_steps=2)
    leaves = jax.tree.leaves(out)
    assert all(x.dtype == np.float32 for x in leaves) and all(
      np.all(np.isfinite(x)) for x in leaves
    )
  print("OK", check)


if __name__ == "__main__":
  _main(sys.argv[1])
