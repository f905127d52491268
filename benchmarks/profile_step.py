"""Per-operation profile of one model's jitted train step on CPU (what limits the step).

    python benchmarks/profile_step.py --model=resnet20 --batch=128 --input=32 --steps=5

Traces `--steps` train steps of the real trainer step (classic_cnns.benchmark's setup) with
jax.profiler, reads the XSpace back with jax.profiler.ProfileData and sums the wall time of every
XLA:CPU thunk by kind (convolution forward / input-gradient / weight-gradient, fusions by their
root op, copies, ...). Prints a table (ms per step, share of the step's op time) and writes JSON.
"""

from __future__ import annotations

import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from absl import flags  # noqa: E402

from classic_cnns import cli  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

_MODEL = flags.DEFINE_string(
  "model", "resnet20", "Registered model name (see `python -m classic_cnns.summary --all`)."
)
_BATCH = flags.DEFINE_integer("batch", 128, "Batch size of the train step.")
_INPUT = flags.DEFINE_integer("input", 32, "Side of the square synthetic uint8 images.")
_STEPS = flags.DEFINE_integer("steps", 5, "Train steps traced (after 3 untimed ones).")
_JSON = flags.DEFINE_string("json", "", "Also write the numbers to this JSON file.")


def build_step(model_name: str, batch: int, side: int):
  from classic_cnns import optim, parallel
  from classic_cnns import build
  from classic_cnns import steps
  from classic_cnns.config import base_config
  from classic_cnns.data import augment
  from classic_cnns.models import registry

  info = registry.model_info(model_name)
  c = base_config()
  c.model.name, c.model.num_classes, c.batch_size = model_name, info.num_classes, batch
  c.data.augment.crop_padding, c.data.augment.flip = 4, True
  mesh = parallel.make_mesh()
  model = build.build_model(c, 1)
  shape = (side, side, info.in_channels)
  prep = augment.Preprocess(
    mean=(120.0,) * info.in_channels, std=(60.0,) * info.in_channels, crop_padding=4, flip=True
  )
  abstract = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1,) + shape),
      train=False,
    )
  )["params"]
  schedule = optim.make_schedule(c, 100, 1000)
  tx = optim.make_optimizer(c, schedule, abstract)
  state = build.create_train_state(model, tx, shape, c.seed, mesh)
  step = jax.jit(steps.make_train_step(model, c, prep, schedule, jnp.float32), donate_argnums=0)
  rng = np.random.default_rng(0)
  b = {
    "image": jnp.asarray(rng.integers(0, 256, (batch,) + shape, dtype=np.uint8)),
    "label": jnp.asarray(rng.integers(0, info.num_classes, (batch,), dtype=np.int32)),
  }
  return step, state, b


KINDS = [  # (kind, regex over the thunk / HLO name), first match wins
  ("convolution", r"convolution"),
  ("reduce-window (pooling / conv rewritten by XLA)", r"reduce-window"),
  ("transpose / copy", r"transpose|copy"),
  ("dot (matmul)", r"^dot|\bdot\b"),
  ("reduce fusion (BN stats, loss)", r"reduce"),
  (
    "other fusions (elementwise: BN apply, ReLU, adds, pads)",
    r"fusion|add|multiply|select|maximum",
  ),
]


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  for flag in (_BATCH, _INPUT, _STEPS):
    if flag.value <= 0:
      cli.fail(f"--{flag.name} must be positive, got {flag.value}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # no INFO lines from JAX's backend probing
  from classic_cnns.models import registry

  registry.list_models()
  if _MODEL.value not in registry._REGISTRY:  # pylint: disable=protected-access
    cli.fail(registry.unknown_model_message(_MODEL.value))
  model, batch, side, steps, out = (
    _MODEL.value,
    _BATCH.value,
    _INPUT.value,
    _STEPS.value,
    _JSON.value,
  )
  step, state, b = build_step(model, batch, side)
  for _ in range(3):
    state, m = step(state, b)
  jax.block_until_ready(m)
  logdir = tempfile.mkdtemp(prefix="cc_profile_")
  t0 = time.perf_counter()
  with jax.profiler.trace(logdir):
    for _ in range(steps):
      state, m = step(state, b)
    jax.block_until_ready(m)
  wall = (time.perf_counter() - t0) / steps
  path = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0]
  from jax.profiler import ProfileData

  data = ProfileData.from_file(path)
  per_name = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        per_name[(plane.name, line.name, ev.name)] += ev.duration_ns
  # XLA:CPU op events: the thunks run on the Eigen pool ("tf_XLAEigen/...") and the client's threads
  # ("tf_XLAPjRtCpuClient/..."); "ThunkExecutor::Execute" events are the enclosing spans, not ops.
  ops = collections.Counter()
  for (plane, line, name), ns in per_name.items():
    if line.startswith("tf_XLA") and not name.startswith("ThunkExecutor"):
      ops[name] += ns
  if not ops:  # print what exists so the filters can be adapted
    print(
      "no XLA op events found; lines:",
      collections.Counter((k[0], k[1]) for k in per_name).most_common(20),
    )
    return
  kinds = collections.Counter()
  for name, ns in ops.items():
    kind = next((k for k, rx in KINDS if re.search(rx, name, re.I)), "other")
    kinds[kind] += ns
  total = sum(kinds.values())
  print(
    f"{model} batch {batch} input {side}: {wall * 1e3:.0f} ms wall per step, "
    f"{total / 1e6 / steps:.0f} ms of op time per step (summed over threads)"
  )
  for k, v in kinds.most_common():
    print(f"  {k:50s} {v / 1e6 / steps:8.1f} ms  {100 * v / total:5.1f}%")
  print("top ops:")
  by_prefix = collections.Counter()
  for name, ns in ops.items():
    by_prefix[re.sub(r"\.\d+$", "", name)] += ns
  print("by op name (numbering stripped):")
  for name, ns in by_prefix.most_common(20):
    print(f"  {ns / 1e6 / steps:8.1f} ms  {100 * ns / total:5.1f}%  {name}")
  print("top ops:")
  for name, ns in sorted(ops.items(), key=lambda kv: -kv[1])[:25]:
    print(f"  {ns / 1e6 / steps:8.2f} ms  {name}")
  if out:
    with open(out, "w") as f:
      json.dump(
        {
          "model": model,
          "batch": batch,
          "input": side,
          "wall_ms": wall * 1e3,
          "kinds_ms": {k: v / 1e6 / steps for k, v in kinds.items()},
          "ops_ms": {n: v / 1e6 / steps for n, v in ops.items()},
        },
        f,
        indent=1,
      )


if __name__ == "__main__":
  cli.run(main)
