"""Shared building blocks, written once and passed into every family (timm's `norm_layer` /
`attn_layer` idea): the primitive ops (`Kernels`), the norm factory, conv-norm-act, activations,
LRN, and the SE / CBAM attention plug-ins. Plain Flax and public JAX ops only: every gradient is
autodiff's own, nothing reads a global while a step is traced.

Kernels -- the primitive operations every model computes with, one frozen dataclass handed to each
model as its `kernels` module field (as the Flax ImageNet example hands `conv: ModuleDef`):
  conv              `lax.conv_general_dilated`'s signature; what `nn.Conv` calls
  loop_conv         the same, for stride-1 convolutions inside `scan` bodies
  max_pool          (x NHWC, window, strides, ((lo, hi), (lo, hi))) -> y
  batch_norm_train  (x [G, M, C] float32, scale, bias, epsilon) -> (y, mean [G, C], biased var [G, C])
  group_norm        (x [B, M, C] float32, scale, bias, groups, epsilon) -> y
`PORTABLE` (the default) is `lax` / `nn.max_pool` / `jnp` reductions and runs on every platform. A
platform backend (`classic_cnns.backends`) builds another `Kernels` with the same semantics and
hands it to `create_model(name, kernels=...)`; parameters and their names never depend on it.

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
does not depend on the choice (GN paper Sec. 3.1). A family whose paper fixes other BatchNorm
hyperparameters (Inception-v3: epsilon 1e-3) declares them as its `norm` field's default
`NormSpec`; `resolve_norm` applies a string kind on top of a family's defaults, so
`create_model(name)` and the trainer build the same norm. `batch_norm` is BatchNorm as a function,
for code that holds its variables itself (DenseNet's scanned blocks).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


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


def as_norm_spec(norm: str | NormSpec, defaults: NormSpec | None = None) -> NormSpec:
  """A `NormSpec`: `norm` itself, or the kind `norm` with the other fields from `defaults`."""
  return resolve_norm(norm, defaults or NormSpec())


def resolve_norm(norm: str | NormSpec | None, defaults: NormSpec, **overrides: Any) -> NormSpec:
  """The norm a model builds: a `NormSpec` as given; None or the family's own kind: its paper
  `defaults` (e.g. Inception-v3's BatchNorm epsilon 1e-3); another kind: that kind's own defaults
  (GN paper: epsilon 1e-5), keeping `defaults.groups`; then the non-None `overrides` (e.g. the
  trainer's `virtual_batch_size`)."""
  if isinstance(norm, NormSpec):
    spec = norm
  elif norm is None or norm == defaults.kind:
    spec = defaults
  else:
    spec = NormSpec(kind=norm, groups=defaults.groups)
  changes = {k: v for k, v in overrides.items() if v is not None}
  return dataclasses.replace(spec, **changes) if changes else spec


def conv_bias(norm: str | NormSpec) -> bool:
  """Convs followed by a norm carry no bias (it would be cancelled); without a norm they do."""
  return as_norm_spec(norm).kind == "none"


def batch_norm_train_portable(
  x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5
):
  """Training-mode BatchNorm of x [G, M, C] (G groups of M values per channel, each normalised by
  its own statistics): (y, mean [G, C], biased var [G, C]); two-pass statistics, autodiff gradient.
  `mean`/`var` are for the running statistics only (use them under stop_gradient)."""
  mean = jnp.mean(x, axis=1)
  centred = x - mean[:, None]
  var = jnp.mean(jnp.square(centred), axis=1)
  y = centred * (jax.lax.rsqrt(var + epsilon) * scale)[:, None] + bias
  return y, mean, var


def group_norm_portable(
  x: jax.Array, scale: jax.Array, bias: jax.Array, groups: int, epsilon: float = 1e-5
) -> jax.Array:
  """GroupNorm of x [B, M, C] (M positions): statistics per example over M and each group's
  C // groups channels (Wu & He 2018, Eq. 1-3); autodiff gradient."""
  b, m, c = x.shape
  g = x.reshape(b, m, groups, c // groups)
  mean = jnp.mean(g, axis=(1, 3), keepdims=True)
  centred = g - mean
  var = jnp.mean(jnp.square(centred), axis=(1, 3), keepdims=True)
  return (centred * jax.lax.rsqrt(var + epsilon)).reshape(x.shape) * scale + bias


def max_pool_portable(
  x: jax.Array,
  window: tuple[int, int],
  strides: tuple[int, int],
  padding: tuple[tuple[int, int], tuple[int, int]],
) -> jax.Array:
  """Max pooling of NHWC `x` with explicit (-inf) padding: `nn.max_pool`."""
  return nn.max_pool(x, window, strides, padding)


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The primitive ops a model computes with (module docstring); the same values on every backend."""

  name: str = "portable"
  conv: Callable = jax.lax.conv_general_dilated
  loop_conv: Callable = jax.lax.conv_general_dilated
  max_pool: Callable = max_pool_portable
  batch_norm_train: Callable = batch_norm_train_portable
  group_norm: Callable = group_norm_portable

  def Conv(self, *args: Any, **kwargs: Any) -> nn.Conv:  # noqa: N802 (a module constructor)
    """`nn.Conv(...)` computing with these kernels (same parameters and names)."""
    return nn.Conv(*args, conv_general_dilated=self.conv, **kwargs)


PORTABLE = Kernels()


def max_pool(
  x: jax.Array,
  window_shape: Sequence[int],
  strides: Sequence[int] | None = None,
  padding: str | Sequence[tuple[int, int]] = "VALID",
  kernels: Kernels = PORTABLE,
) -> jax.Array:
  """`nn.max_pool` on NHWC input through `kernels.max_pool` (padding as a string or pairs)."""
  window = tuple(int(k) for k in window_shape)
  strides = tuple(int(s) for s in (strides or (1, 1)))
  if x.ndim != 4 or len(window) != 2 or len(strides) != 2:
    return nn.max_pool(x, window, strides, padding)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:3], window, strides, padding)
  return kernels.max_pool(x, window, strides, tuple((int(lo), int(hi)) for lo, hi in padding))


def max_pool_ceil(
  x: jax.Array,
  kernel: int,
  stride: int,
  pad: int = 0,
  ceil_mode: bool = True,
  kernels: Kernels = PORTABLE,
) -> jax.Array:
  """PyTorch max-pool (`ceil_mode` as torchvision GoogLeNet / Caffe): out = ceil((n + 2p - k) / s)
  + 1, dropping a last window that would start in the right padding; padding is -inf."""
  pads = []
  for n in x.shape[1:3]:
    span = n + 2 * pad - kernel
    out = (math.ceil(span / stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
      out -= 1
    pads.append((pad, pad + max((out - 1) * stride + kernel - (n + 2 * pad), 0)))
  return max_pool(x, (kernel, kernel), (stride, stride), padding=tuple(pads), kernels=kernels)


def _adaptive_matrix(n: int, out: int) -> np.ndarray:
  """[out, n] averaging matrix of PyTorch's adaptive pooling bins [floor(i*n/out), ceil((i+1)*n/out))."""
  m = np.zeros((out, n), np.float32)
  for i in range(out):
    lo, hi = (i * n) // out, -((-(i + 1) * n) // out)
    m[i, lo:hi] = 1.0 / (hi - lo)
  return m


def adaptive_avg_pool(x: jax.Array, out: int) -> jax.Array:
  """PyTorch's AdaptiveAvgPool2d(out) on NHWC, as two small averaging matmuls (identity when the
  map is already out x out)."""
  h, w = x.shape[1:3]
  if (h, w) == (out, out):
    return x
  if h < 1 or w < 1:
    raise ValueError(f"input too small: the feature map before the {out}x{out} pooling is {h}x{w}")
  mh, mw = (jnp.asarray(_adaptive_matrix(n, out), x.dtype) for n in (h, w))
  return jnp.einsum("ih,bhwc,jw->bijc", mh, x, mw)


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
  kernels: Kernels = PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    scale, bias, ra_mean, ra_var = batch_norm_variables(self, x.shape[-1], self.scale_init)
    y, stats = batch_norm(
      x,
      scale,
      bias,
      ra_mean.value,
      ra_var.value,
      train=train,
      virtual_batch_size=self.virtual_batch_size,
      epsilon=self.epsilon,
      kernels=self.kernels,
    )
    if train and not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * stats[0]
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * stats[1]
    return y.astype(self.dtype or x.dtype)


def batch_norm_variables(module: nn.Module, c: int, scale_init: Callable = nn.initializers.ones):
  """Declares BatchNorm's variables in `module` (params scale/bias, batch_stats mean/var, the names
  of flax.linen.BatchNorm): (scale, bias, running-mean variable, running-variance variable)."""
  return (
    module.param("scale", scale_init, (c,), jnp.float32),
    module.param("bias", nn.initializers.zeros, (c,), jnp.float32),
    module.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)),
    module.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)),
  )


def batch_norm(
  x: jax.Array,
  scale: jax.Array,
  bias: jax.Array,
  running_mean: jax.Array,
  running_var: jax.Array,
  *,
  train: bool,
  virtual_batch_size: int | None = None,
  epsilon: float = 1e-5,
  kernels: Kernels = PORTABLE,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
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
  y, mean, var = kernels.batch_norm_train(
    x.astype(jnp.float32).reshape(b // v, n, c), scale, bias, epsilon
  )
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
  kernels: Kernels = PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    g = c if self.groups == -1 else math.gcd(c, self.groups)
    scale = self.param("scale", self.scale_init, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    y = self.kernels.group_norm(
      x.astype(jnp.float32).reshape(x.shape[0], -1, c), scale, bias, g, self.epsilon
    )
    return y.reshape(x.shape).astype(self.dtype or x.dtype)


def make_norm(
  norm: str | NormSpec,
  *,
  zero_init: bool = False,
  dtype: Any = None,
  kernels: Kernels = PORTABLE,
  name: str | None = None,
) -> nn.Module:
  """A norm module called as `norm(x, train)`. `zero_init` sets the scale to 0 (Goyal et al.
  2017: last norm of each residual block, so each block starts as the identity)."""
  spec = as_norm_spec(norm)
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  if spec.kind == "batch":
    return BatchNorm(
      spec.virtual_batch_size, spec.momentum, spec.epsilon, scale_init, dtype, kernels, name=name
    )
  if spec.kind == "none":
    return Identity(name=name)
  groups = {"group": spec.groups, "layer": 1, "instance": -1}[spec.kind]
  return GroupNorm(groups, spec.epsilon, scale_init, dtype, kernels, name=name)


# --------------------------------------------------------------------------- activations
def scaled_tanh(x):
  """LeCun et al. 1998, Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3."""
  return 1.7159 * jnp.tanh(2.0 / 3.0 * x)


ACTIVATIONS: dict[str, Callable] = {
  "relu": nn.relu,
  "tanh": jnp.tanh,
  "sigmoid": nn.sigmoid,
  "scaled_tanh": scaled_tanh,
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
  conv: Callable | None = (
    None  # the convolution primitive (None = kernels.conv; kernels.loop_conv in scans)
  )
  dtype: Any = None
  kernels: Kernels = PORTABLE

  @nn.compact
  def __call__(self, x, train: bool):
    ks = (self.kernel, self.kernel) if isinstance(self.kernel, int) else tuple(self.kernel)
    bias = conv_bias(self.norm) if self.use_bias is None else self.use_bias
    x = nn.Conv(
      self.features,
      ks,
      (self.strides, self.strides),
      padding=pad_same(ks) if self.padding is None else self.padding,
      feature_group_count=self.groups,
      use_bias=bias,
      kernel_init=self.kernel_init,
      conv_general_dilated=self.conv or self.kernels.conv,
      dtype=self.dtype,
      name="conv",
    )(x)
    x = make_norm(
      self.norm, zero_init=self.zero_init_norm, dtype=self.dtype, kernels=self.kernels, name="norm"
    )(x, train)
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
    summed = jax.lax.reduce_window(
      sq,
      0.0,
      jax.lax.add,
      (1,) * (x.ndim - 1) + (self.size,),
      (1,) * x.ndim,
      [(0, 0)] * (x.ndim - 1) + [(half, self.size - 1 - half)],
    )
    return x / jnp.power(self.k + self.alpha * summed, self.beta)


# --------------------------------------------------------------------------- attention plug-ins
@dataclasses.dataclass(frozen=True)
class AttnSpec:
  """Which attention to plug into a block: "se" (Hu et al. 2018) or "cbam" (Woo et al. 2018)."""

  kind: str = "se"
  reduction: int = 16
  use_bias: bool = True  # biases in the excitation FCs (SE Table 10 counts are without)
  spatial_kernel: int = 7  # CBAM spatial attention kernel
  # Hidden width of the excitation MLP: C // reduction (SE Sec. 3.2), raised to `min_channels`.
  # 0 = exactly C // reduction, and a block where that is 0 cannot be built (an error, never a
  # silent 1-channel bottleneck); e.g. r=32 on a 16-channel CIFAR stage needs min_channels=1.
  min_channels: int = 0

  def __post_init__(self):
    if self.kind not in ATTN_KINDS:
      raise ValueError(
        f"unknown attention {self.kind!r}; choose one of {', '.join(ATTN_KINDS)} or None"
      )
    if self.reduction < 1 or self.min_channels < 0:
      raise ValueError(
        f"attention reduction must be >= 1 and min_channels >= 0, got {self.reduction}, "
        f"{self.min_channels}"
      )


def excitation_width(channels: int, reduction: int, min_channels: int = 0) -> int:
  """C // r, or `min_channels` where larger; a ValueError where the result is 0 (SE Sec. 3.2)."""
  width = max(channels // reduction, min_channels)
  if width < 1:
    raise ValueError(
      f"attention reduction r={reduction} leaves no hidden unit on {channels} channels "
      f"(C // r = 0); use a smaller r or set min_channels (config.model.attn_min_channels)"
    )
  return width


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
  min_channels: int = 0

  @nn.compact
  def __call__(self, x, train: bool = False):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    hidden = excitation_width(c, self.reduction, self.min_channels)
    s = nn.relu(nn.Dense(hidden, use_bias=self.use_bias, dtype=self.dtype, name="fc1")(s))
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
  kernels: Kernels = PORTABLE
  min_channels: int = 0

  @nn.compact
  def __call__(self, x, train: bool):
    c = x.shape[-1]
    hidden = excitation_width(c, self.reduction, self.min_channels)
    fc1 = nn.Dense(hidden, use_bias=self.use_bias, dtype=self.dtype, name="fc1")
    fc2 = nn.Dense(c, use_bias=self.use_bias, dtype=self.dtype, name="fc2")
    mlp = lambda v: fc2(nn.relu(fc1(v)))
    ch = nn.sigmoid(mlp(jnp.mean(x, axis=(1, 2))) + mlp(jnp.max(x, axis=(1, 2))))
    x = x * ch[:, None, None, :]
    maps = jnp.concatenate([jnp.mean(x, -1, keepdims=True), jnp.max(x, -1, keepdims=True)], -1)
    sp = ConvNormAct(
      1,
      self.spatial_kernel,
      norm=self.norm,
      act="sigmoid",
      dtype=self.dtype,
      kernels=self.kernels,
      name="spatial",
    )(maps, train)
    return x * sp


def make_attention(
  attn: str | AttnSpec | None,
  *,
  norm: str | NormSpec = "batch",
  dtype: Any = None,
  kernels: Kernels = PORTABLE,
  name: str | None = None,
) -> nn.Module | None:
  """The attention module for a block, called as `attn(x, train)`, or None."""
  spec = as_attn_spec(attn)
  if spec is None:
    return None
  if spec.kind == "se":
    return SqueezeExcite(spec.reduction, spec.use_bias, dtype, spec.min_channels, name=name)
  return CBAM(
    spec.reduction,
    spec.use_bias,
    spec.spatial_kernel,
    norm,
    dtype,
    kernels,
    spec.min_channels,
    name=name,
  )
