"""Inception v2 (BN-Inception) and Inception v3.

Inception v2 = BN-Inception (Ioffe & Szegedy 2015, "Batch Normalization", Sec. 4.1 and the
appendix table, Fig. 5): GoogLeNet with BN after every conv, each 5x5 conv replaced by two 3x3
convs, the module table of Fig. 5 (3a, 3b, 3c stride 2, 4a-4e, 5a, 5b; average / max pooling and
pass-through as listed), no LRN and no dropout (Sec. 4.2.1 removes both: `dropout` = 0.0).
The filter columns of Fig. 5 are followed literally, as in the released Caffe BN-Inception: the
pool projections of 4c and 4d are 128, so they output 608 channels and 4e 1056, although the
table's output column says 576 / 1024 (TF-slim's inception_v2 uses 96 there instead).
Named options: `conv_bias` (None = no bias before BN; True = the Caffe release, whose convs
also carry biases), `dropout`, `norm` ("batch": BatchNorm eps 1e-5). Init: He normal (the paper
gives none). Other deviation: TF-slim makes the 7x7 stem conv depthwise-separable (multiplier 8);
here it is a full conv.

Inception v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture"), torchvision layout
(299x299 input): a 5-conv stem; 3x Inception-A (35x35, the 5x5 factorised branch as in
torchvision); grid reduction B (parallel stride-2 conv and max-pool branches, Sec. 5, Fig. 10);
4x Inception-C with 1x7 + 7x1 factorisation (Sec. 3.2, Fig. 6); grid reduction D; 2x
Inception-E with expanded filter banks (Fig. 7); global pool, dropout 0.5, FC. Convs have no
bias; a norm kind string takes the other hyperparameters from `InceptionV3.NORM_DEFAULTS`
(BatchNorm eps 1e-3, torchvision's BasicConv2d). The auxiliary head after Mixed_6e has BN in its
convs ("BN-auxiliary", Sec. 7) and runs only in training; label smoothing (Sec. 7) is done by the
trainer (config), not here. Init as torchvision: normal(std 0.1) for convs and the FC, 0.01 for the
aux 5x5 conv, 0.001 for the aux FC (torchvision truncates at +-2, i.e. 20-2000 std: a no-op).

Both nets take `kernels`, the primitive ops every conv, pool and norm computes with
(`layers.Kernels`; default `layers.PORTABLE`), handed to every submodule; no effect on parameters.
Max-pools follow PyTorch (`layers.max_pool_ceil`): ceil mode in v2 as Caffe, floor mode in v3.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from classic_cnns.models import layers
from classic_cnns.models.inits import he_normal
from classic_cnns.models.layers import ConvNormAct, NormSpec
from classic_cnns.models.registry import register_model

VALID = ((0, 0), (0, 0))


def _avg3(x):
  """3x3/1 average pool, pad 1, zero padding counted (PyTorch's count_include_pad=True)."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=True)


class _Convs(nn.Module):
  """Base: `self.conv(features, kernel, name, strides, padding)` builds a ConvNormAct,
  `self.max_pool(x, kernel, stride, pad, ceil_mode)` is PyTorch's max-pool."""

  norm: str | NormSpec = "batch"
  conv_bias: bool | None = None
  kernel_init: Callable = he_normal
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  def conv(self, f, k, name, s=1, padding=None, init=None):
    return ConvNormAct(
      f,
      k,
      s,
      padding=padding,
      norm=self.norm,
      use_bias=self.conv_bias,
      kernel_init=init or self.kernel_init,
      dtype=self.dtype,
      kernels=self.kernels,
      name=name,
    )

  def max_pool(self, x, k, s, pad=0, ceil_mode=True):
    return layers.max_pool_ceil(x, k, s, pad, ceil_mode, kernels=self.kernels)


# --------------------------------------------------------------------------- Inception v2
class BNInceptionBlock(_Convs):
  """Fig. 5 module: [1x1] | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg/max pool -> [1x1 proj].
  With stride 2 the 1x1 branch is absent and the pool branch passes through (no projection)."""

  widths: tuple = ()  # (#1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, proj, stride)

  @nn.compact
  def __call__(self, x, train: bool):
    c1, c3r, c3, d3r, d3, pool, proj, s = self.widths
    out = [self.conv(c1, 1, "b1")(x, train)] if c1 else []
    out.append(self.conv(c3, 3, "b2_3x3", s)(self.conv(c3r, 1, "b2_reduce")(x, train), train))
    y = self.conv(d3, 3, "b3_3x3a")(self.conv(d3r, 1, "b3_reduce")(x, train), train)
    out.append(self.conv(d3, 3, "b3_3x3b", s)(y, train))
    y = (
      _avg3(x) if pool == "avg" else self.max_pool(x, 3, s, pad=1 if s == 1 else 0)
    )  # ceil mode as Caffe
    out.append(self.conv(proj, 1, "b4_proj")(y, train) if proj else y)
    return jnp.concatenate(out, axis=-1)


# Fig. 5: (name, #1x1, #3x3 reduce, #3x3, double #3x3 reduce, double #3x3, pool, proj, stride).
BN_INCEPTION_TABLE = (
  ("3a", 64, 64, 64, 64, 96, "avg", 32, 1),
  ("3b", 64, 64, 96, 64, 96, "avg", 64, 1),
  ("3c", 0, 128, 160, 64, 96, "max", 0, 2),
  ("4a", 224, 64, 96, 96, 128, "avg", 128, 1),
  ("4b", 192, 96, 128, 96, 128, "avg", 128, 1),
  ("4c", 160, 128, 160, 128, 160, "avg", 128, 1),
  ("4d", 96, 128, 192, 160, 192, "avg", 128, 1),
  ("4e", 0, 128, 192, 192, 256, "max", 0, 2),
  ("5a", 352, 192, 320, 160, 224, "avg", 128, 1),
  ("5b", 352, 192, 320, 192, 224, "max", 128, 1),
)


class InceptionV2(_Convs):
  num_classes: int = 1000
  dropout: float = 0.0

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = self.conv(64, 7, "conv1", 2)(x, train)  # 112x112x64
    x = self.max_pool(x, 3, 2)  # 56x56x64
    x = self.conv(64, 1, "conv2_reduce")(x, train)
    x = self.max_pool(self.conv(192, 3, "conv2")(x, train), 3, 2)  # 28x28x192
    for name, *widths in BN_INCEPTION_TABLE:  # -> 14x14 after 3c, 7x7 after 4e
      x = BNInceptionBlock(
        norm=self.norm,
        conv_bias=self.conv_bias,
        kernel_init=self.kernel_init,
        dtype=self.dtype,
        kernels=self.kernels,
        widths=tuple(widths),
        name=f"inception{name}",
      )(x, train)
    x = nn.Dropout(self.dropout)(jnp.mean(x, axis=(1, 2)), deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


# --------------------------------------------------------------------------- Inception v3
class InceptionA(_Convs):
  """35x35 module: 1x1 64 | 1x1 48 -> 5x5 64 | 1x1 64 -> 3x3 96 -> 3x3 96 | avg -> 1x1 pool_features."""

  pool_features: int = 32

  @nn.compact
  def __call__(self, x, train: bool):
    b1 = self.conv(64, 1, "b1x1")(x, train)
    b5 = self.conv(64, 5, "b5x5_2")(self.conv(48, 1, "b5x5_1")(x, train), train)
    b3 = self.conv(96, 3, "b3x3dbl_2")(self.conv(64, 1, "b3x3dbl_1")(x, train), train)
    b3 = self.conv(96, 3, "b3x3dbl_3")(b3, train)
    bp = self.conv(self.pool_features, 1, "bpool")(_avg3(x), train)
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(_Convs):
  """35 -> 17 grid reduction (Fig. 10): 3x3/2 384 | 1x1 64 -> 3x3 96 -> 3x3/2 96 | max-pool 3x3/2."""

  @nn.compact
  def __call__(self, x, train: bool):
    b3 = self.conv(384, 3, "b3x3", 2, VALID)(x, train)
    bd = self.conv(96, 3, "b3x3dbl_2")(self.conv(64, 1, "b3x3dbl_1")(x, train), train)
    bd = self.conv(96, 3, "b3x3dbl_3", 2, VALID)(bd, train)
    return jnp.concatenate([b3, bd, self.max_pool(x, 3, 2, ceil_mode=False)], axis=-1)


class InceptionC(_Convs):
  """17x17 module with n = 7 factorisation (Fig. 6): 1x7 and 7x1 convs of width c7."""

  c7: int = 128

  @nn.compact
  def __call__(self, x, train: bool):
    c7 = self.c7
    b1 = self.conv(192, 1, "b1x1")(x, train)
    b7 = self.conv(c7, 1, "b7x7_1")(x, train)
    b7 = self.conv(192, (7, 1), "b7x7_3")(self.conv(c7, (1, 7), "b7x7_2")(b7, train), train)
    bd = self.conv(c7, 1, "b7x7dbl_1")(x, train)
    for i, (f, k) in enumerate([(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)), (192, (1, 7))], start=2):
      bd = self.conv(f, k, f"b7x7dbl_{i}")(bd, train)
    bp = self.conv(192, 1, "bpool")(_avg3(x), train)
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(_Convs):
  """17 -> 8 grid reduction: 1x1 192 -> 3x3/2 320 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 (192) | max-pool."""

  @nn.compact
  def __call__(self, x, train: bool):
    b3 = self.conv(320, 3, "b3x3_2", 2, VALID)(self.conv(192, 1, "b3x3_1")(x, train), train)
    b7 = self.conv(192, 1, "b7x7x3_1")(x, train)
    b7 = self.conv(192, (7, 1), "b7x7x3_3")(self.conv(192, (1, 7), "b7x7x3_2")(b7, train), train)
    b7 = self.conv(192, 3, "b7x7x3_4", 2, VALID)(b7, train)
    return jnp.concatenate([b3, b7, self.max_pool(x, 3, 2, ceil_mode=False)], axis=-1)


class InceptionE(_Convs):
  """8x8 module with expanded filter banks (Fig. 7): 1x3 and 3x1 side by side, concatenated."""

  @nn.compact
  def __call__(self, x, train: bool):
    b1 = self.conv(320, 1, "b1x1")(x, train)
    b3 = self.conv(384, 1, "b3x3_1")(x, train)
    b3 = jnp.concatenate(
      [self.conv(384, (1, 3), "b3x3_2a")(b3, train), self.conv(384, (3, 1), "b3x3_2b")(b3, train)],
      axis=-1,
    )
    bd = self.conv(384, 3, "b3x3dbl_2")(self.conv(448, 1, "b3x3dbl_1")(x, train), train)
    bd = jnp.concatenate(
      [
        self.conv(384, (1, 3), "b3x3dbl_3a")(bd, train),
        self.conv(384, (3, 1), "b3x3dbl_3b")(bd, train),
      ],
      axis=-1,
    )
    bp = self.conv(192, 1, "bpool")(_avg3(x), train)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionAux(_Convs):
  """Aux head on 17x17x768: 5x5/3 avg pool -> 1x1 128 -> 5x5 768 (valid) -> global pool -> FC."""

  num_classes: int = 1000

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.avg_pool(x, (5, 5), (3, 3), padding="VALID")  # 5x5x768
    x = self.conv(128, 1, "conv0")(x, train)
    x = self.conv(768, 5, "conv1", padding=VALID, init=nn.initializers.normal(0.01))(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(
      self.num_classes, kernel_init=nn.initializers.normal(0.001), dtype=self.dtype, name="fc"
    )(x)


class InceptionV3(nn.Module):
  NORM_DEFAULTS: ClassVar[NormSpec] = NormSpec("batch", epsilon=1e-3)  # torchvision BasicConv2d
  num_classes: int = 1000
  aux_logits: bool = True
  norm: str | NormSpec = "batch"
  dropout: float = 0.5
  init_std: float = 0.1
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    kw = dict(
      norm=layers.resolve_norm(self.norm, self.NORM_DEFAULTS),
      kernel_init=nn.initializers.normal(self.init_std),
      dtype=self.dtype,
      kernels=self.kernels,
    )
    conv = lambda f, k, name, s=1, padding=VALID: ConvNormAct(
      f, k, s, padding=padding, name=name, **kw
    )
    pool = lambda y: layers.max_pool_ceil(y, 3, 2, ceil_mode=False, kernels=self.kernels)
    x = conv(32, 3, "Conv2d_1a_3x3", 2)(x, train)  # 149x149x32
    x = conv(32, 3, "Conv2d_2a_3x3")(x, train)  # 147x147x32
    x = conv(64, 3, "Conv2d_2b_3x3", padding=None)(x, train)  # 147x147x64
    x = pool(x)  # 73x73x64
    x = conv(80, 1, "Conv2d_3b_1x1")(x, train)
    x = conv(192, 3, "Conv2d_4a_3x3")(x, train)  # 71x71x192
    x = pool(x)  # 35x35x192
    for name, pf in (("Mixed_5b", 32), ("Mixed_5c", 64), ("Mixed_5d", 64)):  # 35x35x256/288/288
      x = InceptionA(pool_features=pf, name=name, **kw)(x, train)
    x = InceptionB(name="Mixed_6a", **kw)(x, train)  # 17x17x768
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7=c7, name=name, **kw)(x, train)
    aux = None
    if self.aux_logits and (train or self.is_initializing()):  # params exist after eval-mode init
      aux = InceptionAux(num_classes=self.num_classes, name="AuxLogits", **kw)(x, train)
    x = InceptionD(name="Mixed_7a", **kw)(x, train)  # 8x8x1280
    x = InceptionE(name="Mixed_7b", **kw)(x, train)  # 8x8x2048
    x = InceptionE(name="Mixed_7c", **kw)(x, train)
    x = nn.Dropout(self.dropout)(jnp.mean(x, axis=(1, 2)), deterministic=not train)
    logits = nn.Dense(
      self.num_classes,
      kernel_init=nn.initializers.normal(self.init_std),
      dtype=self.dtype,
      name="fc",
    )(x)
    return (logits, (aux,)) if self.aux_logits and train else logits


# Our count of Fig. 5 as implemented (BN scale + bias, no conv biases), 1000 classes. With conv
# biases (conv_bias=True, the Caffe release) it is 11,295,240 (+10,016), which equals the
# independently published BN-Inception count of osmr/imgclsmob (ported from Cadene's Caffe
# conversion). The paper's "13.6M" (Sec. 4.1) is NOT reproduced by its own table: 11.3M is
# 2.3M short, the table has no FC besides the classifier, and an auxiliary head (not listed in
# Fig. 5; a GoogLeNet-style one adds about 3.2M) would overshoot; the paper does not say what
# else it counts.
@register_model(
  "inception_v2",
  paper_params=11_285_224,
  input_size=224,
  source="Ioffe & Szegedy 2015, Fig. 5 (our count; paper says 13.6M, see comment)",
)
def inception_v2(**kw) -> InceptionV2:
  return InceptionV2(**kw)


@register_model(
  "inception_v3",
  paper_params=27_161_264,
  input_size=299,
  source="Szegedy et al. 2016 (torchvision layout, BN-auxiliary head)",
)
def inception_v3(**kw) -> InceptionV3:
  return InceptionV3(**kw)


@register_model(
  "inception_v3_noaux",
  paper_params=23_834_568,
  input_size=299,
  source="Szegedy et al. 2016 (torchvision layout, no aux head)",
)
def inception_v3_noaux(**kw) -> InceptionV3:
  return InceptionV3(**{"aux_logits": False, **kw})
