"""Micro-benchmark: a conv weight gradient (jax.vjp of lax.conv_general_dilated wrt the kernel) computed over
the whole batch (g1) vs as a sum over g batch chunks, for the ResNet-20 conv shapes; best of 3 x 20, ms.
Run: PYTHONPATH=. python benchmarks/microbench_dw_batch_chunks.py"""
import time
from classic_cnns import cli
import jax, jax.numpy as jnp
def bench(f, *a, n=20):
  f = jax.jit(f); r = f(*a); jax.block_until_ready(r)
  best = 1e9
  for _ in range(3):
    t = time.perf_counter()
    for _ in range(n): r = f(*a)
    jax.block_until_ready(r); best = min(best, (time.perf_counter() - t) / n * 1e3)
  return best
conv = lambda x, w, s: jax.lax.conv_general_dilated(x, w, (s,s), ((1,1),(1,1)), dimension_numbers=("NHWC","HWIO","NHWC"))
for shape, cout, s in [((128,32,32,16),16,1), ((128,32,32,16),32,2), ((128,16,16,32),32,1), ((128,16,16,32),64,2), ((128,8,8,64),64,1), ((128,32,32,3),16,1)]:
  x = jax.random.normal(jax.random.PRNGKey(0), shape); w = jnp.ones((3,3,shape[-1],cout))
  dy = jax.random.normal(jax.random.PRNGKey(1), conv(x, w, s).shape)
  res = []
  for g in (1, 4, 8, 16, 32):
    f = lambda x, dy: sum(jax.vjp(lambda w_: conv(xc, w_, s), w)[1](dc)[0] for xc, dc in zip(jnp.split(x, g), jnp.split(dy, g)))
    res.append(f"g{g} {bench(f, x, dy):.1f}")
  print(shape, cout, s, " ".join(res), flush=True)
