"""Shared building blocks, written once and passed into every family (timm's `norm_layer` /
`attn_layer` idea): the norm factory, conv-norm-act, activations, LRN, and the SE / CBAM
attention plug-ins.

Norm factory -- `norm` is a string or a `NormSpec`:
  "batch"     BatchNorm (Ioffe & Szegedy 2015). `virtual_batch_size` selects whose statistics a
              training step uses: None = the whole (global) batch, what global `jit` gives;
              per-device BN (the papers' multi-GPU runs, GN paper's "images per GPU") is
              virtual_batch_size = per-device batch; any other value is ghost BN.
  "group"     GroupNorm (Wu & He 2018), `groups` groups (32 in the paper).
  "layer"     LayerNorm as in the GN paper: statistics over (H, W, C), per-channel scale and bias.
  "instance"  InstanceNorm: statistics over (H, W) per channel, per-channel scale and bias.
  "none"      identity (convs then get a bias; see `conv_bias`).
All four norms have the same parameters (scale + bias per channel), so a model's parameter count
does not depend on the choice (GN paper Sec. 3.1). `batch_norm` is BatchNorm as a function, for
code that holds its variables itself (DenseNet's scanned blocks).

Convolution backend -- every conv in the zoo is `Conv` (= `nn.Conv` with `conv_general_dilated`
below), which reads the process's backend when a step is traced: "xla" (`lax.conv_general_dilated`)
or "onednn" (float32 2-D ungrouped convs through `classic_cnns.kernels.onednn`, forward and both
gradients; any other conv, e.g. AlexNet's grouped ones or bfloat16, stays on XLA) or "mixed" (the
CPU default: as "onednn", except that on a CPU without AVX-512 convs with a kernel larger than 1x1
and >= 128 input and output channels run on XLA, which beats oneDNN's `jit:avx2` kernels there: BENCHMARKS.md,
per-conv tables of the AMD EPYC host) or "measured" (as "onednn", but each pass of each geometry on whichever of oneDNN and
XLA `kernels.autotune` measured faster on this machine). Inside scans "mixed" and "measured" run all
on oneDNN. Set it with
`set_conv_backend` / `conv_backend(...)` before the step is traced (the trainer does, from
`config.conv_backend`). Parameters and their names do not depend on it.

`conv_for_loops`: the stride-1 convolution to use inside `scan` bodies on CPU (its backward pass in
the forward layout; XLA:CPU runs JAX's own gradient convolutions inside loops on a slow path).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.kernels import autotune, onednn

NORM_KINDS = ("batch", "group", "layer", "instance", "none")
ATTN_KINDS = ("se", "cbam")

# He et al. 2015 init, fan-out (as torchvision ResNets/VGG/DenseNet).
he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


# --------------------------------------------------------------------------- normalisation
@dataclasses.dataclass(frozen=True)
class NormSpec:
  kind: str = "batch"
  groups: int = 32  # GroupNorm groups
  virtual_batch_size: int | None = None  # BatchNorm statistics per slice of this many examples
  momentum: float = 0.9  # running-average decay (PyTorch momentum 0.1)
  epsilon: float = 1e-5

  def __post_init__(self):
    if self.kind not in NORM_KINDS:
      raise ValueError(f"unknown norm {self.kind!r}; choose one of {', '.join(NORM_KINDS)}")


def as_norm_spec(norm: str | NormSpec) -> NormSpec:
  return norm if isinstance(norm, NormSpec) else NormSpec(kind=norm)


def conv_bias(norm: str | NormSpec) -> bool:
  """Convs followed by a norm carry no bias (it would be cancelled); without a norm they do."""
  return as_norm_spec(norm).kind == "none"


def _sum_rows(a: jax.Array) -> jax.Array:
  """[G, M, C] -> [G, C], the sum over M as a matrix-vector product. On XLA:CPU a plain reduce over
  M is rewritten into a tree of reduce-windows that runs at a few GB/s, while a dot runs on Eigen's
  vectorised kernels: 4-6x faster for BatchNorm-sized tensors, the largest single cost of a CIFAR
  ResNet step (benchmarks/torch_comparison.md, "What limits the Flax step")."""
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
def group_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float = 1e-5) -> jax.Array:
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
  dx = (inv[:, None] / n) * (n * _gn_split(dxhat, groups) - s1[:, None] - _gn_split(xhat, groups) * s2[:, None])
  dscale = jnp.sum(_sum_rows(dy * xhat), 0)
  dbias = jnp.sum(_sum_rows(dy), 0)
  return dx.reshape(x.shape), dscale, dbias


group_norm.defvjp(_gn_fwd, _gn_bwd)


class BatchNorm(nn.Module):
  """BatchNorm with selectable statistics scope (global / per-device / ghost).

  Variables are named as in `flax.linen.BatchNorm` (params scale/bias, batch_stats mean/var).
  In training, the batch [B, ...] is viewed as [B // v, v, ...] with v = virtual_batch_size and
  each slice is normalised by its own statistics. The batch is sharded over devices in
  contiguous blocks, so with v = per-device batch every slice lives on one device: exactly the
  per-GPU statistics of the papers. Running statistics average the slices' statistics.
  """
  virtual_batch_size: int | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    scale, bias, ra_mean, ra_var = batch_norm_variables(self, x.shape[-1], self.scale_init)
    y, stats = batch_norm(x, scale, bias, ra_mean.value, ra_var.value, train=train,
                          virtual_batch_size=self.virtual_batch_size, epsilon=self.epsilon)
    if train and not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * stats[0]
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * stats[1]
    return y.astype(self.dtype or x.dtype)


def batch_norm_variables(module: nn.Module, c: int, scale_init: Callable = nn.initializers.ones):
  """Declares BatchNorm's variables in `module` (params scale/bias, batch_stats mean/var, the names
  of flax.linen.BatchNorm): (scale, bias, running-mean variable, running-variance variable)."""
  return (module.param("scale", scale_init, (c,), jnp.float32),
          module.param("bias", nn.initializers.zeros, (c,), jnp.float32),
          module.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)),
          module.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)))


def batch_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, running_mean: jax.Array,
               running_var: jax.Array, *, train: bool, virtual_batch_size: int | None = None,
               epsilon: float = 1e-5) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
  """`BatchNorm` as a function (float32 result): in training, normalise each slice of
  `virtual_batch_size` examples by its own statistics and also return (mean, unbiased variance)
  per channel averaged over the slices, for the running averages (no gradient); in evaluation,
  use the running statistics and return None."""
  c = x.shape[-1]
  if not train:
    y = (x.astype(jnp.float32) - running_mean) * jax.lax.rsqrt(running_var + epsilon)
    return y * scale + bias, None
  b = x.shape[0]
  v = virtual_batch_size or b
  if b % v:
    raise ValueError(f"batch {b} is not divisible by the BatchNorm virtual batch size {v}")
  n = v * math.prod(x.shape[1:-1])  # values per channel in one slice
  y, mean, var = batch_norm_train(x.astype(jnp.float32).reshape(b // v, n, c), scale, bias, epsilon)
  mean, var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(var)
  unbiased = var * (n / max(n - 1, 1))  # PyTorch keeps the unbiased running variance
  return y.reshape(x.shape), (jnp.mean(mean, axis=0), jnp.mean(unbiased, axis=0))


class Identity(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool = False):
    return x


class GroupNorm(nn.Module):
  """Group/Layer/Instance norm: statistics over (H, W, C/G) per example, per-channel scale and
  bias. groups = 1 is the GN paper's LayerNorm, groups = -1 (one channel per group) InstanceNorm.
  When C is not divisible by `groups` (e.g. 16-channel CIFAR ResNets with G = 32), gcd(C, G)
  groups are used."""
  groups: int
  epsilon: float = 1e-5
  scale_init: Callable = nn.initializers.ones
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    g = c if self.groups == -1 else math.gcd(c, self.groups)
    scale = self.param("scale", self.scale_init, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    y = group_norm(x.astype(jnp.float32).reshape(x.shape[0], -1, c), scale, bias, g, self.epsilon)
    return y.reshape(x.shape).astype(self.dtype or x.dtype)


def make_norm(norm: str | NormSpec, *, zero_init: bool = False, dtype: Any = None,
              name: str | None = None) -> nn.Module:
  """A norm module called as `norm(x, train)`. `zero_init` sets the scale to 0 (Goyal et al.
  2017: last norm of each residual block, so each block starts as the identity)."""
  spec = as_norm_spec(norm)
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  if spec.kind == "batch":
    return BatchNorm(spec.virtual_batch_size, spec.momentum, spec.epsilon, scale_init, dtype, name=name)
  if spec.kind == "none":
    return Identity(name=name)
  groups = {"group": spec.groups, "layer": 1, "instance": -1}[spec.kind]
  return GroupNorm(groups, spec.epsilon, scale_init, dtype, name=name)


# --------------------------------------------------------------------------- activations
def scaled_tanh(x):
  """LeCun et al. 1998, Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3."""
  return 1.7159 * jnp.tanh(2.0 / 3.0 * x)


ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu, "tanh": jnp.tanh, "sigmoid": nn.sigmoid, "scaled_tanh": scaled_tanh,
    "identity": lambda x: x,
}


def activation(name: str) -> Callable:
  if name not in ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
  return ACTIVATIONS[name]


# --------------------------------------------------------------------------- conv-norm-act
def pad_same(kernel: int | Sequence[int]) -> tuple[tuple[int, int], ...]:
  """Symmetric padding k//2 per spatial dim (PyTorch-style; flax "SAME" pads stride-2 convs
  asymmetrically, which changes the sampled grid)."""
  ks = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  return tuple((k // 2, k // 2) for k in ks)


# --------------------------------------------------------------------------- convolution backend
CONV_BACKENDS = ("xla", "onednn", "mixed", "measured")
# "mixed": spatial convs with at least this many input and output channels run on XLA when the CPU
# has no AVX-512.
MIXED_XLA_MIN_CHANNELS = 128
_conv_backend = "xla"


def set_conv_backend(name: str) -> None:
  """Selects the convolution backend for steps traced from now on (see the module docstring)."""
  global _conv_backend
  if name not in CONV_BACKENDS:
    raise ValueError(f"unknown conv backend {name!r}; choose one of {', '.join(CONV_BACKENDS)}")
  if name in ("onednn", "mixed", "measured"):
    onednn.require()
  _conv_backend = name


def get_conv_backend() -> str:
  return _conv_backend


@contextlib.contextmanager
def conv_backend(name: str):
  """`set_conv_backend(name)` for the duration of a `with` block (tracing happens inside it)."""
  previous = _conv_backend
  set_conv_backend(name)
  try:
    yield
  finally:
    set_conv_backend(previous)


_NHWC = ("NHWC", "HWIO", "NHWC")


def _mixed_on_xla(kernel_shape: Sequence[int]) -> bool:
  """Backend "mixed": whether a conv with this HWIO kernel runs on XLA: a spatial kernel (not 1x1)
  with many input and output channels on a CPU without AVX-512, where oneDNN 2.6's jit:avx2 kernels
  lose to XLA's (ResNet-18's 3x3 convs from 128 channels on). 1x1 convs stay on oneDNN, whose weight
  gradient wins them (DenseNet-121's shapes), and so do narrow-output convs (DenseNet's 3x3
  128 -> 32 convs, where the two libraries tie): BENCHMARKS.md AMD EPYC section."""
  return (len(kernel_shape) == 4 and tuple(kernel_shape[:2]) != (1, 1)
          and min(kernel_shape[2], kernel_shape[3]) >= MIXED_XLA_MIN_CHANNELS and not onednn.cpu_has_avx512())


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`lax.conv_general_dilated`, or oneDNN's convolution when that backend is selected and the conv
  is one it computes (float32, NHWC/HWIO, 2-D, ungrouped, undilated)."""
  if (_conv_backend in ("onednn", "mixed", "measured") and preferred_element_type is None
      and not (_conv_backend == "mixed" and _mixed_on_xla(rhs.shape))
      and onednn.supports(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                          feature_group_count, batch_group_count)
      and dimension_numbers == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)):
    on_xla = ()
    if _conv_backend == "measured":  # each pass on the library measured faster for this geometry
      if isinstance(padding, str):
        padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
      on_xla = autotune.xla_passes(lhs.shape, rhs.shape, window_strides, padding)
    return onednn.conv2d(lhs, rhs, window_strides, padding, on_xla=on_xla)
  return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                                      dimension_numbers, feature_group_count, batch_group_count,
                                      precision, preferred_element_type)


# The zoo's convolution layer: nn.Conv (same parameters and names) on the selected backend.
Conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)


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
      candidate = jax.lax.slice(xp, (0, a, b, 0), (n, a + sh * (oh - 1) + 1, b + sw * (ow - 1) + 1, c),
                                (1, sh, sw, 1))
      chosen = (candidate == y) & ~taken
      taken = taken | chosen
      g = jnp.pad(jnp.where(chosen, dy, 0).astype(dy.dtype),
                  ((0, 0), (a // sh, hq - a // sh - oh), (b // sw, wq - b // sw - ow), (0, 0)))
      key = (a % sh, b % sw)
      phases[key] = phases[key] + g if key in phases else g
  zero = jnp.zeros((n, hq, wq, c), dy.dtype)
  grid = jnp.stack([jnp.stack([phases.get((r, q), zero) for q in range(sw)], axis=3) for r in range(sh)], axis=2)
  dxp = grid.reshape(n, hq * sh, wq * sw, c)[:, :hp, :wp]
  return (dxp[:, pt:pt + h, pl:pl + w, :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, window_shape: Sequence[int], strides: Sequence[int] | None = None,
             padding: str | Sequence[tuple[int, int]] = "VALID") -> jax.Array:
  """`nn.max_pool` on NHWC input, same values, with a faster gradient on XLA:CPU: JAX's gradient is
  select-and-scatter, which XLA:CPU expands into a scatter with index computations (ResNet-18 at
  112x112, batch 32: its stem pool's gradient took 137 ms, this one ~17 ms; BENCHMARKS.md)."""
  window = tuple(int(k) for k in window_shape)
  strides = tuple(int(s) for s in (strides or (1, 1)))
  if x.ndim != 4 or len(window) != 2 or len(strides) != 2:
    return nn.max_pool(x, window, strides, padding)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  return _max_pool(x, window, strides, tuple((int(lo), int(hi)) for lo, hi in padding))


# --------------------------------------------------------------------------- convolution in loops
def _conv(x, k, padding):
  return jax.lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv_loop(x, k, padding):
  return _conv(x, k, padding)


def _conv_loop_fwd(x, k, padding):
  return _conv(x, k, padding), (x, k)


def _conv_loop_bwd(padding, res, dy):
  x, k = res
  (kh, kw) = k.shape[:2]
  # dx: the full correlation of dy with the flipped kernel, in/out channels swapped.
  back = [(kh - 1 - padding[0][0], kh - 1 - padding[0][1]), (kw - 1 - padding[1][0], kw - 1 - padding[1][1])]
  dx = _conv(dy, jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2), back)
  # dk[a, b, i, o] = sum_{n,h,w} x_pad[n, h + a, w + b, i] dy[n, h, w, o]: a convolution whose
  # "batch" is the input channel and whose contracted "feature" is the example axis.
  dk = _conv(x.transpose(3, 1, 2, 0), dy.transpose(1, 2, 0, 3), padding).transpose(1, 2, 0, 3)
  return dx, dk


_conv_loop.defvjp(_conv_loop_fwd, _conv_loop_bwd)


def conv_for_loops(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                   dimension_numbers=None, feature_group_count=1, batch_group_count=1, precision=None,
                   preferred_element_type=None):
  """`lax.conv_general_dilated` (as `nn.Conv(conv_general_dilated=...)` calls it) for stride-1 NHWC
  convolutions inside `scan` bodies, with a backward pass written as forward-layout convolutions.
  Why: XLA:CPU rewrites the gradient convolutions JAX emits (kernel-transposed input gradient,
  batch-contracting kernel gradient) into the layout its fast (Eigen) convolution takes only
  outside while loops; inside a loop body they run on a naive loop emitter, 14x slower for a CIFAR
  ResNet step (BENCHMARKS.md, "First-step wait"). Here the transposes are explicit, so every
  convolution in the loop, forward or backward, has the forward NHWC/HWIO layout. Same values."""
  del dimension_numbers, precision, preferred_element_type  # NHWC / HWIO as nn.Conv, default precision
  dilated = any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ()))
  if tuple(window_strides) != (1, 1) or dilated or feature_group_count != 1 or batch_group_count != 1:
    raise ValueError("conv_for_loops takes stride-1, undilated, ungrouped 2-D convolutions only")
  if _conv_backend in ("onednn", "mixed", "measured") and onednn.supports(lhs, rhs, window_strides, padding):
    # All passes on oneDNN, also when "mixed"/"measured": XLA's are slow inside loops (see above).
    return onednn.conv2d(lhs, rhs, window_strides, padding)  # no transposes to avoid there
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], (1, 1), padding)
  return _conv_loop(lhs, rhs, tuple((int(lo), int(hi)) for lo, hi in padding))


class ConvNormAct(nn.Module):
  """conv -> norm -> activation; bias only when there is no norm (unless `use_bias` says)."""
  features: int
  kernel: int | tuple[int, int] = 3
  strides: int = 1
  padding: Any = None  # None = symmetric k//2
  groups: int = 1
  norm: str | NormSpec = "batch"
  act: str = "relu"
  use_bias: bool | None = None
  zero_init_norm: bool = False
  kernel_init: Callable = he_normal
  conv: Callable | None = None  # the convolution primitive (None = conv_general_dilated); see conv_for_loops
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    ks = (self.kernel, self.kernel) if isinstance(self.kernel, int) else tuple(self.kernel)
    bias = conv_bias(self.norm) if self.use_bias is None else self.use_bias
    x = nn.Conv(self.features, ks, (self.strides, self.strides),
                padding=pad_same(ks) if self.padding is None else self.padding,
                feature_group_count=self.groups, use_bias=bias, kernel_init=self.kernel_init,
                conv_general_dilated=self.conv or conv_general_dilated, dtype=self.dtype, name="conv")(x)
    x = make_norm(self.norm, zero_init=self.zero_init_norm, dtype=self.dtype, name="norm")(x, train)
    return activation(self.act)(x)


class LocalResponseNorm(nn.Module):
  """AlexNet (Krizhevsky et al. 2012, Sec. 3.3) across-channel LRN:
  b = a / (k + alpha * sum_{n neighbouring channels} a^2)^beta with k=2, n=5, alpha=1e-4,
  beta=0.75 (the paper's formula: alpha is NOT divided by n as in PyTorch's LocalResponseNorm)."""
  size: int = 5
  alpha: float = 1e-4
  beta: float = 0.75
  k: float = 2.0

  @nn.compact
  def __call__(self, x):
    sq = jnp.square(x)
    half = self.size // 2
    summed = jax.lax.reduce_window(sq, 0.0, jax.lax.add, (1,) * (x.ndim - 1) + (self.size,),
                                   (1,) * x.ndim, [(0, 0)] * (x.ndim - 1) + [(half, self.size - 1 - half)])
    return x / jnp.power(self.k + self.alpha * summed, self.beta)


# --------------------------------------------------------------------------- attention plug-ins
@dataclasses.dataclass(frozen=True)
class AttnSpec:
  """Which attention to plug into a block: "se" (Hu et al. 2018) or "cbam" (Woo et al. 2018)."""
  kind: str = "se"
  reduction: int = 16
  use_bias: bool = True  # biases in the excitation FCs (SE Table 10 counts are without)
  spatial_kernel: int = 7  # CBAM spatial attention kernel

  def __post_init__(self):
    if self.kind not in ATTN_KINDS:
      raise ValueError(f"unknown attention {self.kind!r}; choose one of {', '.join(ATTN_KINDS)} or None")


def as_attn_spec(attn: str | AttnSpec | None) -> AttnSpec | None:
  if attn is None or attn == "none" or attn == "":
    return None
  return attn if isinstance(attn, AttnSpec) else AttnSpec(kind=attn)


class SqueezeExcite(nn.Module):
  """SE block (Hu et al. 2018, Fig. 2): squeeze = global average pool; excite = FC(C -> C/r) ->
  ReLU -> FC(C/r -> C) -> sigmoid; rescale channels."""
  reduction: int = 16
  use_bias: bool = True
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = nn.relu(nn.Dense(max(c // self.reduction, 1), use_bias=self.use_bias, dtype=self.dtype, name="fc1")(s))
    s = nn.sigmoid(nn.Dense(c, use_bias=self.use_bias, dtype=self.dtype, name="fc2")(s))
    return x * s[:, None, None, :]


class CBAM(nn.Module):
  """CBAM (Woo et al. 2018): channel attention (avg- and max-pooled descriptors through one
  shared MLP, summed, sigmoid), then spatial attention (7x7 conv over the channel-wise
  [avg, max] maps, norm, sigmoid), applied in that order (paper Sec. 4.1 best variant)."""
  reduction: int = 16
  use_bias: bool = True
  spatial_kernel: int = 7
  norm: str | NormSpec = "batch"
  dtype: Any = None

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    fc1 = nn.Dense(max(c // self.reduction, 1), use_bias=self.use_bias, dtype=self.dtype, name="fc1")
    fc2 = nn.Dense(c, use_bias=self.use_bias, dtype=self.dtype, name="fc2")
    mlp = lambda v: fc2(nn.relu(fc1(v)))
    ch = nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))
    x = x * ch[:, None, None, :]
    maps = jnp.concatenate([jnp.mean(x, -1, keepdims=True), jnp.max(x, -1, keepdims=True)], -1)
    sp = ConvNormAct(1, self.spatial_kernel, norm=self.norm, act="sigmoid", dtype=self.dtype,
                     name="spatial")(maps, train)
    return x * sp


def make_attention(attn: str | AttnSpec | None, *, norm: str | NormSpec = "batch",
                   dtype: Any = None, name: str | None = None) -> nn.Module | None:
  """The attention module for a block, called as `attn(x, train)`, or None."""
  spec = as_attn_spec(attn)
  if spec is None:
    return None
  if spec.kind == "se":
    return SqueezeExcite(spec.reduction, spec.use_bias, dtype, name=name)
  return CBAM(spec.reduction, spec.use_bias, spec.spatial_kernel, norm, dtype, name=name)


def abstract_eval(fn: Callable[[], Any]) -> Any:
  """`jax.eval_shape(fn)` traced with XLA's convolutions: shapes only, so the `measured` backend has
  nothing to time (e.g. `model.init`'s batch-1 forward pass)."""
  with conv_backend("xla"):
    return jax.eval_shape(fn)
