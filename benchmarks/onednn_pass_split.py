"""Where a model's oneDNN time goes: forward / backward-data / backward-weights / reorders, per step.

    DNNL_VERBOSE=1 PYTHONPATH=. python benchmarks/onednn_pass_split.py --model=resnet18 --input=112 --batch=32

Runs jax.grad of the model's training-mode loss (the convolutions of a train step) with the oneDNN
backend, then 3 timed steps, and sums oneDNN's own per-primitive execution times (its verbose log,
which DNNL_VERBOSE=1 turns on; this script reads its own stdout through a pipe) by pass and
implementation. GFLOP/s = the model's forward FLOPs (2 x MACs from classic_cnns.summary) / the pass's
time (each backward pass has about the forward's FLOPs; the first layer's backward-data is skipped)."""
from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys

CHILD = r'''
import sys
from classic_cnns import cli
import jax, jax.numpy as jnp
from classic_cnns.models import create_model, layers
name, side, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = create_model(name)
x = jnp.ones((batch, side, side, 3))
v = m.init(jax.random.PRNGKey(0), x, train=False)
with layers.conv_backend("onednn"):
  f = jax.jit(jax.grad(lambda p: m.apply({**v, "params": p}, x, train=True, mutable=["batch_stats"])[0].sum()))
  jax.block_until_ready(f(v["params"]))
  print("TIMED", flush=True)
  for _ in range(3):
    jax.block_until_ready(f(v["params"]))
'''


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", default="resnet18")
  parser.add_argument("--input", type=int, default=112)
  parser.add_argument("--batch", type=int, default=32)
  a = parser.parse_args()
  env = {**os.environ, "DNNL_VERBOSE": "1"}
  out = subprocess.run([sys.executable, "-c", CHILD, a.model, str(a.input), str(a.batch)], env=env,
                       capture_output=True, text=True, check=True).stdout.splitlines()
  timed = out[out.index("TIMED") + 1:]
  ms, calls, impls = collections.Counter(), collections.Counter(), collections.defaultdict(set)
  for line in timed:
    f = line.split(",")
    if len(f) < 6 or f[0] not in ("dnnl_verbose", "onednn_verbose") or f[1] != "exec" or f[2] != "cpu":
      continue  # also skips jaxlib's own (statically linked) oneDNN, which logs "v1,primitive,exec"
    key = "reorder" if f[3] == "reorder" else f[5]  # the pass: forward_training, backward_data, ...
    impls[key].add(f[4])
    ms[key] += float(f[-1]) / 3
    calls[key] += 1 / 3
  from classic_cnns import summary
  flop = 2 * summary.build(a.model, a.input, flops=False).macs * a.batch  # macs: per image
  print(f"{a.model} {a.input}x{a.input} batch {a.batch}: forward {flop / 1e9:.1f} GFLOP per pass")
  for key, t in sorted(ms.items(), key=lambda kv: -kv[1]):
    rate = "" if key == "reorder" else f"{flop / t / 1e6:4.0f} GFLOP/s"
    print(f"  {key:18s} {t:7.1f} ms/step {calls[key]:4.0f} calls {rate:>12s}  {', '.join(sorted(impls[key]))}")
  print(f"  total {sum(ms.values()):.1f} ms/step")


if __name__ == "__main__":
  main()
