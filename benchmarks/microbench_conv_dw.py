"""Micro-benchmark: conv weight gradient, XLA (jax.vjp of conv_general_dilated) vs shifted-patches matmuls, for
the ResNet-20 conv shapes. Run: PYTHONPATH=. python benchmarks/microbench_conv_dw.py"""
from classic_cnns import cli
import jax, jax.numpy as jnp, numpy as np, time
rng = np.random.default_rng(0)
def t(f, *a, n=20):
  f = jax.jit(f); r = f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(n):
    t0=time.perf_counter(); r=f(*a); jax.block_until_ready(r); ts.append(time.perf_counter()-t0)
  return np.median(ts)*1e3, r
for (B,H,ci,co,s) in [(128,32,16,16,1),(128,16,32,32,1),(128,8,64,64,1),(128,32,16,32,2)]:
  x = jnp.asarray(rng.normal(size=(B,H,H,ci)).astype(np.float32))
  Ho = H//s
  dy = jnp.asarray(rng.normal(size=(B,Ho,Ho,co)).astype(np.float32))
  w = jnp.asarray(rng.normal(size=(3,3,ci,co)).astype(np.float32))
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (s,s), ((1,1),(1,1)), dimension_numbers=("NHWC","HWIO","NHWC"))
  def dw_xla(x, dy):
    return jax.vjp(lambda w: conv(x, w), w)[1](dy)[0]
  def dw_patches(x, dy):
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    cols = jnp.concatenate([xp[:, i:i+s*(Ho-1)+1:s, j:j+s*(Ho-1)+1:s, :] for i in range(3) for j in range(3)], -1)
    return jax.lax.dot_general(cols.reshape(-1, 9*ci), dy.reshape(-1, co), (((0,),(0,)),((),()))).reshape(3,3,ci,co)
  def dw_taps(x, dy):
    xp = jnp.pad(x, ((0,0),(1,1),(1,1),(0,0)))
    d = dy.reshape(-1, co)
    return jnp.stack([jax.lax.dot_general(xp[:, i:i+s*(Ho-1)+1:s, j:j+s*(Ho-1)+1:s, :].reshape(-1, ci), d, (((0,),(0,)),((),()))) for i in range(3) for j in range(3)]).reshape(3,3,ci,co)
  def fwd(x, w): return conv(x, w)
  m0, r0 = t(dw_xla, x, dy); m1, r1 = t(dw_patches, x, dy); m2, r2 = t(dw_taps, x, dy); m3, _ = t(fwd, x, w)
  print(f"{B},{H},{ci}->{co}/s{s}: fwd {m3:.2f}  dW xla {m0:.2f} ms | patches {m1:.2f} ms (err {float(jnp.abs(r1-r0).max()/jnp.abs(r0).max()):.1e}) | taps {m2:.2f} ms")
