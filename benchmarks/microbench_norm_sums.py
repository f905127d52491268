"""Micro-benchmark: per-channel sums of a [128,32,32,16] activation as jnp.sum (XLA:CPU rewrites it into
reduce-windows) vs a dot with a ones vector, and layers._sum_rows. Run: PYTHONPATH=. python benchmarks/microbench_norm_sums.py"""
from classic_cnns import cli
import jax, jax.numpy as jnp, numpy as np, time
x = jnp.asarray(np.random.default_rng(0).normal(size=(128,32,32,16)).astype(np.float32))
def t(f, n=30):
  f = jax.jit(f); r = f(x); jax.block_until_ready(r)
  ts=[]
  for _ in range(n):
    t0=time.perf_counter(); r=f(x); jax.block_until_ready(r); ts.append(time.perf_counter()-t0)
  return np.median(ts)*1e3, r
fs = {
 "sum": lambda x: jnp.sum(x, axis=(0,1,2)),
 "sum+sumsq": lambda x: (jnp.sum(x, axis=(0,1,2)), jnp.sum(x*x, axis=(0,1,2))),
 "dot ones": lambda x: jnp.dot(jnp.ones((x.shape[0]*x.shape[1]*x.shape[2],), x.dtype), x.reshape(-1, x.shape[-1])),
 "dot ones x,x2": lambda x: (jnp.dot(jnp.ones((131072,)), x.reshape(-1,16)), jnp.dot(jnp.ones((131072,)), (x*x).reshape(-1,16))),
 "gram": lambda x: jnp.dot(x.reshape(-1,16).T, jnp.concatenate([x.reshape(-1,16), jnp.ones((131072,1))], 1)),
 "2-level sum": lambda x: jnp.sum(jnp.sum(x.reshape(512, 256, 16), axis=1), axis=0),
 "dot 2-level": lambda x: jnp.dot(jnp.ones((512,)), jnp.einsum('abc,b->ac', x.reshape(512,256,16), jnp.ones((256,)))),
}
ref = None
for k, f in fs.items():
  ms, r = t(f)
  r0 = r[0] if isinstance(r, tuple) else r
  if k == "gram": r0 = r[:, -1]
  if ref is None: ref = np.asarray(r0)
  print(f"{k:15s} {ms:7.2f} ms  maxdiff {np.abs(np.asarray(r0)-ref).max():.2e}")
from classic_cnns.models.layers import _sum_rows
for g in (1, 4, 64):
  ms, r = t(lambda x: _sum_rows(x.reshape(g, -1, 16)))
  print("two-level _sum_rows g=%d" % g, f"{ms:.2f} ms")
