"""Parameter init compiled at XLA's default backend level vs level 1 (what `build.create_train_state`
uses): compile seconds of each, and whether every initial parameter is bit-identical.

    PYTHONPATH=. python benchmarks/init_opt_level.py            # every registered model, native input
    PYTHONPATH=. python benchmarks/init_opt_level.py resnet20 resnet152

Each model is lowered once and compiled twice in one process, the default level first (a kernel
compiled for the first can only make the second faster, so the level-1 column is the optimistic one
if anything). Exit status 1 if any model's parameters differ.
"""
import sys
import time

from classic_cnns import cli  # noqa: F401  (the CLI's default XLA_FLAGS, as the trainer runs)
import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns import train
from classic_cnns import build
from classic_cnns.models import registry


def check(name: str) -> tuple[float, float, bool, int]:
  info = registry.model_info(name)
  model = registry.create_model(name)
  x = jnp.zeros((1, info.input_size, info.input_size, info.in_channels), jnp.float32)

  def init():  # the variables part of build.create_train_state's init
    params_key, dropout_key, _ = jax.random.split(jax.random.PRNGKey(0), 3)
    return model.init({"params": params_key, "dropout": dropout_key}, x, train=False)

  lowered = jax.jit(init).lower()
  t0 = time.perf_counter()
  reference = jax.block_until_ready(lowered.compile()())
  t1 = time.perf_counter()
  fast = jax.block_until_ready(lowered.compile(compiler_options=train.INIT_COMPILER_OPTIONS)())
  t2 = time.perf_counter()
  a, b = jax.tree.leaves(reference), jax.tree.leaves(fast)
  same = jax.tree.structure(reference) == jax.tree.structure(fast) and all(
      np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b))
  return t1 - t0, t2 - t1, same, len(a)


def main(names: list[str]) -> int:
  names = names or registry.list_models()
  print(f"jax {jax.__version__}, backend {jax.default_backend()}, XLA_FLAGS from classic_cnns.cli")
  print("| model | leaves | default: compile + run s | level 1: compile + run s | speed-up | bit-identical |")
  print("|---|---|---|---|---|---|")
  bad = []
  for name in names:
    t_ref, t_fast, same, leaves = check(name)
    print(f"| {name} | {leaves} | {t_ref:.2f} | {t_fast:.2f} | {t_ref / t_fast:.1f}x | {'yes' if same else 'NO'} |",
          flush=True)
    if not same:
      bad.append(name)
  print(f"{len(names)} models, {len(names) - len(bad)} bit-identical" + (f"; differ: {bad}" if bad else ""))
  return 1 if bad else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
