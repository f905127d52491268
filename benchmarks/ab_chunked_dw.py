"""Whole train step A/B in one process: every conv's weight gradient over the whole batch (base) vs summed
over batch chunks of TARGET // (H*W) examples (lax.conv_general_dilated monkeypatched with a custom_vjp).
TARGETS: pixels per chunk, 0 = base. Run: PYTHONPATH=. python benchmarks/ab_chunked_dw.py MODEL BATCH SIDE TARGETS REPEATS
     e.g. PYTHONPATH=. python benchmarks/ab_chunked_dw.py resnet20 128 32 0,8192,16384,32768 3"""
import functools, sys, time, math
from classic_cnns import cli
import jax, jax.numpy as jnp
from jax import lax
ORIG = lax.conv_general_dilated
TARGET = 0  # set per run below; read when a conv is traced

def chunked(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, dimension_numbers=None,
            feature_group_count=1, batch_group_count=1, precision=None, preferred_element_type=None):
  conv = functools.partial(ORIG, window_strides=window_strides, padding=padding, lhs_dilation=lhs_dilation,
                           rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                           feature_group_count=feature_group_count, batch_group_count=batch_group_count,
                           precision=precision, preferred_element_type=preferred_element_type)
  n = lhs.shape[0]; pix = math.prod(lhs.shape[1:-1])
  per = max(1, TARGET // pix)
  g = n // per if per < n and n % per == 0 else 1
  if g <= 1 or batch_group_count != 1:
    return conv(lhs, rhs)
  @jax.custom_vjp
  def f(x, w):
    return conv(x, w)
  def fwd(x, w):
    return conv(x, w), (x, w)
  def bwd(res, dy):
    x, w = res
    dx = jax.vjp(lambda x_: conv(x_, w), x)[1](dy)[0]
    xs, ds = jnp.split(x, g), jnp.split(dy, g)
    dws = [jax.vjp(lambda w_: conv(a, w_), w)[1](b)[0] for a, b in zip(xs, ds)]
    while len(dws) > 1:
      dws = [dws[i] + dws[i + 1] if i + 1 < len(dws) else dws[i] for i in range(0, len(dws), 2)]
    return dx, dws[0]
  f.defvjp(fwd, bwd)
  return f(lhs, rhs)

from classic_cnns import benchmark
model, batch, side = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
targets = [int(t) for t in sys.argv[4].split(",")] if len(sys.argv) > 4 else [0, 8192]
for rep in range(int(sys.argv[5]) if len(sys.argv) > 5 else 2):
  for TARGET in targets:
    mode = "chunked" if TARGET else "base"
    lax.conv_general_dilated = chunked if TARGET else ORIG
    r = benchmark.benchmark_model(model, batch=batch, input_size=side, steps=5, repeats=3, warmup=1, matmul_size=0)
    print(f"{model} {mode} target {TARGET}: train {r['train_img_per_s']:.1f} img/s, compile {r['train_compile_s']:.1f} s, cores {r['train_cpu_cores']:.2f}", flush=True)
