"""Init compile time: `model.init` as is vs `batched_init.batch_random_bits` (same variables, checked).

    PYTHONPATH=. python benchmarks/batched_init_compile.py densenet_bc_100_12 32
    PYTHONPATH=. python benchmarks/batched_init_compile.py densenet264 224 scan_layers=True

Lowers and compiles each (XLA backend level 1, as the trainer's init) and prints lower / compile /
run seconds and the number of fusion kernels XLA compiled; then asserts every variable is equal."""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from classic_cnns import cli  # noqa: E402,F401  (default CPU XLA flags)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from classic_cnns import train  # noqa: E402
from classic_cnns.batched_init import batch_random_bits  # noqa: E402
from classic_cnns.models import create_model, layers, model_info  # noqa: E402


def main() -> None:
  name, side = sys.argv[1], int(sys.argv[2])
  options = {k: v == "True" if v in ("True", "False") else int(v) for k, v in (a.split("=") for a in sys.argv[3:])}
  model = create_model(name, **options)
  x = jnp.zeros((1, side, side, model_info(name).in_channels))

  def init():
    key = jax.random.PRNGKey(0)
    return model.init({"params": key, "dropout": key}, x, train=False)

  results = {}
  with layers.conv_backend("xla"):
    for label, fn in (("batched", batch_random_bits(init)), ("model.init", init)):
      t0 = time.perf_counter()
      lowered = jax.jit(fn).lower()
      t1 = time.perf_counter()
      compiled = lowered.compile(compiler_options=train.INIT_COMPILER_OPTIONS)
      t2 = time.perf_counter()
      results[label] = jax.device_get(compiled())
      t3 = time.perf_counter()
      print(f"{name} {label:10s}: lower {t1 - t0:5.1f} s, compile {t2 - t1:5.1f} s, run {t3 - t2:4.1f} s, "
            f"{compiled.as_text().count(' fusion(')} fusions", flush=True)
  a, b = jax.tree.leaves(results["batched"]), jax.tree.leaves(results["model.init"])
  assert len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b)), "variables differ"
  print(f"{len(a)} variables, all equal")


if __name__ == "__main__":
  main()
