"""The XLA:CPU implementations of `models.layers.Kernels`: the same functions as the portable
kernels, with hand-written gradients where JAX's own lower to slow XLA:CPU code.

- `batch_norm_train` / `group_norm`: channel sums as matrix-vector products (XLA:CPU runs a plain
  reduce over a large axis as a tree of reduce-windows, 4-6x slower) and closed-form backward passes
  (Ioffe & Szegedy 2015, Sec. 3; Wu & He 2018, Eq. 1-3).
- `max_pool`: a gradient without select-and-scatter, which XLA:CPU expands into an index-heavy scatter
  (ResNet-18's stem pool at 112 px, batch 32: 137 -> 17 ms; BENCHMARKS.md).
- `conv_for_loops`: stride-1 convolutions for `scan` bodies whose backward convolutions keep the
  forward NHWC/HWIO layout (XLA:CPU runs the transposed gradient convolutions JAX emits on a naive
  loop emitter inside while loops).
- `make_conv(policy)`: the convolution `nn.Conv` calls, on oneDNN (`onednn.py`) or XLA per conv.
Values equal the portable kernels' to float32 rounding (tests/backends/test_cpu_backend.py).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.backends.cpu import onednn


# --------------------------------------------------------------------------- normalisation
def _sum_rows(a: jax.Array) -> jax.Array:
  """[G, M, C] -> [G, C], the sum over M as a matrix-vector product. On XLA:CPU a plain reduce over
  M is rewritten into a tree of reduce-windows that runs at a few GB/s, while a dot runs on Eigen's
  vectorised kernels: 4-6x faster for BatchNorm-sized tensors, the largest single cost of a CIFAR
  ResNet step (BENCHMARKS.md, CPU section)."""
  g, m, c = a.shape
  # Two levels for float32 accuracy: a dot over m / k rows of k * c values, then a small sum over k
  # (one long dot accumulates ~m * eps of rounding error: 7e-6 relative at m = 131072, vs 3e-7).
  k = max(d for d in range(1, 65) if m % d == 0)
  a = a.reshape(g, m // k, k * c)
  if g == 1:
    partial = jnp.dot(jnp.ones((m // k,), a.dtype), a[0])[None]
  else:
    partial = jnp.einsum("gmc,gm->gc", a, jnp.ones((g, m // k), a.dtype))
  return jnp.sum(partial.reshape(g, k, c), axis=1)


@jax.custom_vjp
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5):
  """Training-mode BatchNorm of x [G, M, C] (G groups of M values per channel, each normalised by
  its own statistics): returns (y, mean [G, C], biased var [G, C]). The backward pass is the
  closed-form BN gradient (Ioffe & Szegedy 2015, Sec. 3), its four channel sums done by `_sum_rows`.
  `mean`/`var` are for the running statistics only: their cotangents are ignored (use them under
  stop_gradient)."""
  return _bn_fwd(x, scale, bias, epsilon)[0]


def _bn_fwd(x, scale, bias, epsilon):
  m = x.shape[1]
  mean = _sum_rows(x) / m
  var = jnp.maximum(_sum_rows(jnp.square(x)) / m - jnp.square(mean), 0.0)
  inv = jax.lax.rsqrt(var + epsilon)
  y = (x - mean[:, None]) * (inv * scale)[:, None] + bias
  return (y, mean, var), (x, mean, inv, scale)


def _bn_bwd(res, cotangents):
  x, mean, inv, scale = res
  dy = cotangents[0]
  m = x.shape[1]
  xhat = (x - mean[:, None]) * inv[:, None]
  s1, s2 = _sum_rows(dy), _sum_rows(dy * xhat)
  dx = (scale * inv / m)[:, None] * (m * dy - s1[:, None] - xhat * s2[:, None])
  return dx, jnp.sum(s2, 0), jnp.sum(s1, 0), None


batch_norm_train.defvjp(_bn_fwd, _bn_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def group_norm(
  x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float = 1e-5
) -> jax.Array:
  """GroupNorm of x [B, M, C] (M positions; statistics per example over M and C // groups channels),
  channel sums by `_sum_rows` and a closed-form backward as `batch_norm_train` (Wu & He 2018, Eq. 1-3)."""
  return _gn_fwd(x, scale, bias, groups, epsilon)[0]


def _group_sums(a: jax.Array, groups: int) -> jax.Array:
  """[B, M, C] -> [B, groups, 1]: sums over M and each group's channels (broadcastable over C // G)."""
  s = _sum_rows(a)
  return jnp.sum(s.reshape(s.shape[0], groups, -1), axis=2, keepdims=True)


def _gn_split(a: jax.Array, groups: int) -> jax.Array:
  return a.reshape(a.shape[0], a.shape[1], groups, -1)


def _gn_fwd(x, scale, bias, groups, epsilon):
  n = x.shape[1] * (x.shape[2] // groups)
  mean = _group_sums(x, groups) / n
  var = jnp.maximum(_group_sums(jnp.square(x), groups) / n - jnp.square(mean), 0.0)
  inv = jax.lax.rsqrt(var + epsilon)  # [B, G, 1]
  xhat = ((_gn_split(x, groups) - mean[:, None]) * inv[:, None]).reshape(x.shape)
  return xhat * scale + bias, (x, mean, inv, scale)


def _gn_bwd(groups, epsilon, res, dy):
  del epsilon
  x, mean, inv, scale = res
  n = x.shape[1] * (x.shape[2] // groups)
  xhat = ((_gn_split(x, groups) - mean[:, None]) * inv[:, None]).reshape(x.shape)
  dxhat = dy * scale
  s1, s2 = _group_sums(dxhat, groups), _group_sums(dxhat * xhat, groups)
  dx = (inv[:, None] / n) * (
    n * _gn_split(dxhat, groups) - s1[:, None] - _gn_split(xhat, groups) * s2[:, None]
  )
  dscale = jnp.sum(_sum_rows(dy * xhat), 0)
  dbias = jnp.sum(_sum_rows(dy), 0)
  return dx.reshape(x.shape), dscale, dbias


group_norm.defvjp(_gn_fwd, _gn_bwd)


# --------------------------------------------------------------------------- max pooling
@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  return nn.max_pool(x, window, strides, padding)


def _max_pool_fwd(x, window, strides, padding):
  y = _max_pool(x, window, strides, padding)
  return y, (x, y)


def _max_pool_bwd(window, strides, padding, residuals, dy):
  """Each output's gradient goes to the first maximum of its window in row-major order -- the
  element XLA's select-and-scatter picks. Window offset (a, b) sends its masked cotangent to the
  stride phase (a % sh, b % sw) of the padded input, shifted by (a // sh, b // sw): small pads and
  adds on output-sized arrays, then one interleave of the phases (no scatter, no interior padding)."""
  x, y = residuals
  n, h, w, c = x.shape
  (kh, kw), (sh, sw), ((pt, pb), (pl, pr)) = window, strides, padding
  oh, ow = y.shape[1:3]
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=-jnp.inf)
  hp, wp = xp.shape[1:3]
  hq, wq = -(-hp // sh), -(-wp // sw)  # rows / columns of one stride phase
  taken = jnp.zeros(y.shape, bool)
  phases: dict[tuple[int, int], jax.Array] = {}
  for a in range(kh):
    for b in range(kw):
      candidate = jax.lax.slice(
        xp, (0, a, b, 0), (n, a + sh * (oh - 1) + 1, b + sw * (ow - 1) + 1, c), (1, sh, sw, 1)
      )
      chosen = (candidate == y) & ~taken
      taken = taken | chosen
      g = jnp.pad(
        jnp.where(chosen, dy, 0).astype(dy.dtype),
        ((0, 0), (a // sh, hq - a // sh - oh), (b // sw, wq - b // sw - ow), (0, 0)),
      )
      key = (a % sh, b % sw)
      phases[key] = phases[key] + g if key in phases else g
  zero = jnp.zeros((n, hq, wq, c), dy.dtype)
  grid = jnp.stack(
    [jnp.stack([phases.get((r, q), zero) for q in range(sw)], axis=3) for r in range(sh)], axis=2
  )
  dxp = grid.reshape(n, hq * sh, wq * sw, c)[:, :hp, :wp]
  return (dxp[:, pt : pt + h, pl : pl + w, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(
  x: jax.Array,
  window: tuple[int, int],
  strides: tuple[int, int],
  padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """`nn.max_pool` values with the gradient of `_max_pool_bwd` (`Kernels.max_pool`'s signature)."""
  return _max_pool(x, tuple(window), tuple(strides), tuple(tuple(p) for p in padding))


# --------------------------------------------------------------------------- convolution in loops
def _conv(x, k, padding):
  return jax.lax.conv_general_dilated(
    x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_loop(x, k, padding):
  return _conv(x, k, padding)


def _conv_loop_fwd(x, k, padding):
  return _conv(x, k, padding), (x, k)


def _conv_loop_bwd(padding, res, dy):
  x, k = res
  (kh, kw) = k.shape[:2]
  # dx: the full correlation of dy with the flipped kernel, in/out channels swapped.
  back = [
    (kh - 1 - padding[0][0], kh - 1 - padding[0][1]),
    (kw - 1 - padding[1][0], kw - 1 - padding[1][1]),
  ]
  dx = _conv(dy, jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2), back)
  # dk[a, b, i, o] = sum_{n,h,w} x_pad[n, h + a, w + b, i] dy[n, h, w, o]: a convolution whose
  # "batch" is the input channel and whose contracted "feature" is the example axis.
  dk = _conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), padding).transpose(1, 2, 0, 3)
  return dx, dk


_conv_loop.defvjp(_conv_loop_fwd, _conv_loop_bwd)


def make_loop_conv(use_onednn: bool) -> Callable:
  """`lax.conv_general_dilated` (as `nn.Conv` calls it) for stride-1 NHWC convolutions inside `scan`
  bodies: on oneDNN (every pass: XLA's are slow inside loops) when `use_onednn`, else with a backward
  pass written as forward-layout convolutions (`_conv_loop`). Same values."""

  def conv_for_loops(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
  ):
    del (
      dimension_numbers,
      precision,
      preferred_element_type,
    )  # NHWC / HWIO as nn.Conv, default precision
    dilated = any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ()))
    if (
      tuple(window_strides) != (1, 1)
      or dilated
      or feature_group_count != 1
      or batch_group_count != 1
    ):
      raise ValueError("conv_for_loops takes stride-1, undilated, ungrouped 2-D convolutions only")
    if use_onednn and onednn.supports(lhs, rhs, window_strides, padding):
      return onednn.conv2d(lhs, rhs, window_strides, padding)
    if isinstance(padding, str):
      padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
    return _conv_loop(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))

  return conv_for_loops


# --------------------------------------------------------------------------- convolution policy
CONV_POLICIES = ("onednn", "mixed", "measured", "xla")
# "mixed": spatial convs with at least this many input and output channels run on XLA when the CPU
# has no AVX-512 (oneDNN 2.6's jit:avx2 kernels are slower than XLA's on them; the `measured` policy
# times each conv on the machine instead, autotune.py).
MIXED_XLA_MIN_CHANNELS = 128
_NHWC = ("NHWC", "HWIO", "NHWC")


def _mixed_on_xla(kernel_shape: Sequence[int]) -> bool:
  """Policy "mixed": a conv with this HWIO kernel runs on XLA: a spatial kernel (not 1x1) with many
  input and output channels on a CPU without AVX-512."""
  return (
    len(kernel_shape) == 4
    and tuple(kernel_shape[:2]) != (1, 1)
    and min(kernel_shape[2], kernel_shape[3]) >= MIXED_XLA_MIN_CHANNELS
    and not onednn.cpu_has_avx512()
  )


def geometry_key(x_shape, w_shape, strides, padding) -> str:
  """The key of one conv geometry in a measured table (`autotune.measure_table`)."""
  return f"x{tuple(x_shape)}|w{tuple(w_shape)}|s{tuple(strides)}|p{tuple(map(tuple, padding))}"


# (x shape, w shape, strides, explicit (lo, hi) padding per spatial dim) of one convolution.
Geometry = tuple[
  tuple[int, ...], tuple[int, ...], tuple[int, int], tuple[tuple[int, int], tuple[int, int]]
]


def onednn_geometry(
  lhs,
  rhs,
  window_strides,
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  dimension_numbers=None,
  feature_group_count=1,
  batch_group_count=1,
  precision=None,
  preferred_element_type=None,
) -> Geometry | None:
  """The geometry of a `lax.conv_general_dilated` call (same arguments) that oneDNN computes: a
  float32 2-D ungrouped NHWC x HWIO conv without a preferred element type (`onednn.supports`),
  padding made explicit. None for any other conv, which stays on `lax`. The one eligibility check of
  `make_conv` and of the autotune pre-pass (`autotune.conv_geometries`)."""
  if (
    preferred_element_type is not None
    or not onednn.supports(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      feature_group_count,
      batch_group_count,
    )
    or dimension_numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  ):
    return None
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  return (
    tuple(lhs.shape),
    tuple(rhs.shape),
    tuple(int(s) for s in window_strides),
    tuple((int(lo), int(hi)) for lo, hi in padding),
  )


def make_conv(policy: str, table: Mapping[str, frozenset[str]] | None = None) -> Callable:
  """`lax.conv_general_dilated`'s signature, on oneDNN for the float32 2-D ungrouped convs it computes:
  all of them ("onednn"), all but the wide spatial ones without AVX-512 ("mixed"), each pass on the
  library `table` names as faster on this machine ("measured": {geometry_key: passes on XLA}; a
  geometry not in the table runs on oneDNN), or none ("xla")."""
  if policy not in CONV_POLICIES:
    raise ValueError(
      f"unknown CPU conv policy {policy!r}; choose one of {', '.join(CONV_POLICIES)}"
    )
  table = dict(table or {})

  def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
  ):
    args = (
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      precision,
      preferred_element_type,
    )
    if policy != "xla" and not (policy == "mixed" and _mixed_on_xla(rhs.shape)):
      geometry = onednn_geometry(*args)
      if geometry is not None:
        on_xla = frozenset()
        if policy == "measured":
          on_xla = table.get(geometry_key(*geometry), frozenset())
        return onednn.conv2d(lhs, rhs, window_strides, padding, on_xla=on_xla)
    return jax.lax.conv_general_dilated(*args)

  return conv_general_dilated
