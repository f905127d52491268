"""Per-convolution time of a train step's conv shapes (CIFAR ResNet-20 or ResNet-18): XLA:CPU vs oneDNN.

    PYTHONPATH=. python benchmarks/onednn_conv_profile.py [--model=resnet20|resnet18] [--batch=128] [--repeats=20]

For each (input, Cin, Cout, kernel, stride) of the model (SAME padding; ResNet-18 at 112x112, default
batch 32 there), the forward, input-gradient (dx) and
kernel-gradient (dw) passes, each jitted alone, best of 3 rounds of `repeats` calls, in ms; and
the step's sum weighted by how often each shape occurs (the stem's dx is never computed). Values
are checked against XLA first. Needs oneDNN (classic_cnns/kernels/onednn.py)."""
from __future__ import annotations

import argparse
import time

from classic_cnns import cli  # noqa: F401  (the CLI's default XLA_FLAGS)
import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.kernels import onednn

# (H=W, Cin, Cout, kernel, stride, occurrences in the step)
SHAPES = {
    "resnet20": ((32, 3, 16, 3, 1, 1), (32, 16, 16, 3, 1, 6), (32, 16, 32, 3, 2, 1), (16, 32, 32, 3, 1, 5),
                 (16, 32, 64, 3, 2, 1), (8, 64, 64, 3, 1, 5)),
    # ResNet-18 at 112x112: stem, then per stage the strided 3x3, the 1x1 projection, the 3x3s.
    "resnet18": ((112, 3, 64, 7, 2, 1), (28, 64, 64, 3, 1, 4),
                 (28, 64, 128, 3, 2, 1), (28, 64, 128, 1, 2, 1), (14, 128, 128, 3, 1, 3),
                 (14, 128, 256, 3, 2, 1), (14, 128, 256, 1, 2, 1), (7, 256, 256, 3, 1, 3),
                 (7, 256, 512, 3, 2, 1), (7, 256, 512, 1, 2, 1), (4, 512, 512, 3, 1, 3)),
}


def best_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  best = float("inf")
  for _ in range(3):
    t = time.perf_counter()
    for _ in range(repeats):
      out = fn(*args)
    jax.block_until_ready(out)
    best = min(best, (time.perf_counter() - t) / repeats)
  return 1e3 * best


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--model", choices=sorted(SHAPES), default="resnet20")
  parser.add_argument("--batch", type=int, default=None, help="default: 128 (ResNet-20), 32 (ResNet-18)")
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  batch = args.batch or (128 if args.model == "resnet20" else 32)
  onednn.require()
  xla = lambda x, w, s: jax.lax.conv_general_dilated(x, w, (s, s), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  one = lambda x, w, s: onednn.conv2d(x, w, (s, s), "SAME")
  print("| conv (B,H,W,Cin->Cout, kxk/stride) x count | XLA fwd | oneDNN fwd | XLA dx | oneDNN dx | XLA dw | oneDNN dw |")
  print("|---|---|---|---|---|---|---|")
  totals = {"xla": 0.0, "onednn": 0.0}
  for side, cin, cout, k, s, count in SHAPES[args.model]:
    x = jax.random.normal(jax.random.PRNGKey(0), (batch, side, side, cin))
    w = jax.random.normal(jax.random.PRNGKey(1), (k, k, cin, cout)) * 0.1
    times = {}
    for name, conv in (("xla", xla), ("onednn", one)):
      y, vjp = jax.vjp(lambda x, w: conv(x, w, s), x, w)
      dy = jnp.ones_like(y)
      fwd = jax.jit(lambda x, w: conv(x, w, s))
      dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: conv(x, w, s), x)[1](dy)[0])
      dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: conv(x, w, s), w)[1](dy)[0])
      times[name] = [best_ms(fwd, x, w, repeats=args.repeats), best_ms(dx, x, w, dy, repeats=args.repeats),
                     best_ms(dw, x, w, dy, repeats=args.repeats)]
      times[name + "_values"] = (fwd(x, w), dx(x, w, dy), dw(x, w, dy))
      used = times[name] if cin != 3 else [times[name][0], 0.0, times[name][2]]
      totals[name] += count * sum(used)
    for a, b in zip(times["xla_values"], times["onednn_values"]):
      np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3)
    cells = [f"{times['xla'][i]:.1f} | {times['onednn'][i]:.1f}" for i in range(3)]
    print(f"| {batch},{side},{side},{cin}->{cout}, {k}x{k}/{s} x{count} | " + " | ".join(cells) + " |", flush=True)
  print(f"step total (weighted, no stem dx): XLA {totals['xla']:.0f} ms, oneDNN {totals['onednn']:.0f} ms "
        f"({totals['xla'] / totals['onednn']:.2f}x)")


if __name__ == "__main__":
  main()
