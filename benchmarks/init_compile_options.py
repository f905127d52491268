"""Compile time of a model's jitted init under per-compile XLA options, and whether the initial
parameters stay bit-identical to the default compile (benchmarks/torch_comparison.md, section 4).

    PYTHONPATH=. python benchmarks/init_compile_options.py MODEL SIDE "VARIANTS" [OVERRIDES] [CHANNELS]
    PYTHONPATH=. python benchmarks/init_compile_options.py resnet152 224 ";xla_backend_optimization_level=1"
    PYTHONPATH=. python benchmarks/init_compile_options.py resnet20 32 ";xla_backend_optimization_level=1" \
        "dict(num_classes=10, widths=(4, 8, 16), stage_sizes=(1, 1, 1))" 1     # the smoke-test ResNet-8

VARIANTS: `;`-separated, each a `,`-separated list of option=value ("" = XLA's defaults); the first
variant is the reference for the bit comparison. OVERRIDES: a Python dict of model fields.
"""
import sys
import time

from classic_cnns import cli  # noqa: F401  (the CLI's default XLA_FLAGS)
import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.models import registry


def _options(variant: str) -> dict:
  opts = {}
  for item in filter(None, variant.split(",")):
    key, value = item.split("=")
    opts[key] = {"true": True, "false": False}.get(value, int(value) if value.lstrip("-").isdigit() else value)
  return opts


def main(argv: list[str]) -> None:
  name, side, variants = argv[0], int(argv[1]), argv[2].split(";")
  model = registry.create_model(name, **(eval(argv[3]) if len(argv) > 3 else {}))  # noqa: S307 (a dev script)
  x = jnp.zeros((1, side, side, int(argv[4]) if len(argv) > 4 else 3))

  def init():
    params_key, dropout_key, _ = jax.random.split(jax.random.PRNGKey(0), 3)
    return model.init({"params": params_key, "dropout": dropout_key}, x, train=False)

  t = time.perf_counter()
  lowered = jax.jit(init).lower()
  lower_s = time.perf_counter() - t
  reference = None
  for variant in variants:
    t = time.perf_counter()
    compiled = lowered.compile(compiler_options=_options(variant))
    compile_s = time.perf_counter() - t
    t = time.perf_counter()
    leaves = [np.asarray(v) for v in jax.tree.leaves(jax.block_until_ready(compiled()))]
    run_s = time.perf_counter() - t
    reference = reference or leaves
    same = all(np.array_equal(a, b) for a, b in zip(reference, leaves))
    diff = max((float(np.max(np.abs(a - b))) for a, b in zip(reference, leaves) if a.size), default=0.0)
    print(f"{name} {side} lower {lower_s:.1f}s | {variant or 'default':45s} compile {compile_s:6.1f}s "
          f"run {run_s:5.2f}s same_bits={same} maxdiff={diff:.1e}", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:])
