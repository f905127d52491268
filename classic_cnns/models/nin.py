"""Network in Network (Lin, Chen & Yan 2014, ICLR; Sec. 3, 4.2 CIFAR-10, 4.6 GAP vs FC).

An mlpconv block is a kxk conv followed by two 1x1 convs (the paper's two-layer "micro MLP"
shared over positions), each with ReLU. The last block outputs one map per class and global
average pooling turns the maps into scores (Sec. 3.2). Layer sizes are not in the paper; they
come from the authors' Caffe models (M. Lin's gists, also the Lasagne model-zoo conversions):
  nin_cifar     CIFAR-10 (gist e56253735ef32c3c296d): 192-160-96 (5x5, pad 2) - max pool 3x3/2 -
                dropout 0.5 - 192-192-192 (5x5, pad 2) - AVERAGE pool 3x3/2 - dropout 0.5 -
                192-192-classes (3x3, pad 1) - global average pool (8x8). 966,986 params.
  nin_imagenet  Caffe model zoo NiN (gist d802a5849de39225bcc6): 96-96-96 (11x11/4, no pad) - max
                pool - 256-256-256 (5x5, pad 2) - max pool - 384-384-384 (3x3, pad 1) - max pool -
                dropout 0.5 - 1024-1024-classes (3x3, pad 1) - global average pool (6x6); 224 input
                (224 -> 54 -> 27 -> 13 -> 6). Count, with biases everywhere:
                  conv1 34,944 + 2x9,312 | conv2 614,656 + 2x65,792 | conv3 885,120 + 2x147,840 |
                  conv4 3,539,968 + 1,049,600 + 1,025,000 = 7,595,176
                (30.4 MB = 29.0 MiB of float32, the size of the published "29M" caffemodel).
  nin_cifar_bn  nin_cifar with BatchNorm after every conv except the class-map conv: those 8
                convs lose their bias (C) and gain scale + bias (2C), i.e. +C each:
                966,986 + (192+160+96 + 192+192+192 + 192+192) = 968,394.
Pooling is Caffe's: 3x3/2 windows with ceil-mode output size (32 -> 16 -> 8, 54 -> 27 -> 13 -> 6);
Caffe's AVE pooling divides by the in-image part of the window (count_include_pad=False). This
matches the reference 0.22 GMACs at 32x32 (floor mode would give 0.20).
The Caffe models apply ReLU to the class maps too (before GAP); `final_relu` keeps it.

Options:
  head          "gap" (paper) or "fc": flatten the last mlpconv's class maps (HxWxclasses) and apply
                one Dense(classes), everything else unchanged (Sec. 4.6 "mlpconv + FC"). Changes the
                count: nin_cifar + fc = 966,986 + 8*8*10*10 + 10 = 973,396.
  head_dropout  dropout before that FC ("fc + dropout" in Sec. 4.6); only with head="fc".
  norm          "none" (paper) or a `layers.make_norm` kind (NiN-BN).
  init_std      None: He fan-out normal (shared default); a float: N(0, std) for every conv as in
                the Caffe models (they use 0.05 for most layers, 0.01 for a few), zero biases.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax

from classic_cnns.models import layers
from classic_cnns.models.inits import he_normal, normal_or
from classic_cnns.models.layers import NormSpec, activation, conv_bias, make_norm
from classic_cnns.models.registry import register_model

# (kernel, stride, padding, widths); width None = num_classes.
CIFAR = ((5, 1, 2, (192, 160, 96)), (5, 1, 2, (192, 192, 192)), (3, 1, 1, (192, 192, None)))
IMAGENET = (
  (11, 4, 0, (96, 96, 96)),
  (5, 1, 2, (256, 256, 256)),
  (3, 1, 1, (384, 384, 384)),
  (3, 1, 1, (1024, 1024, None)),
)


def caffe_pool(
  x: jax.Array,
  kind: str,
  window: int = 3,
  stride: int = 2,
  kernels: layers.Kernels = layers.PORTABLE,
) -> jax.Array:
  """Caffe pooling (no padding): output ceil((H - k) / s) + 1; the overhanging window is clipped
  (max ignores it, average divides by the in-image count)."""
  pads = []
  for n in x.shape[1:3]:
    out = math.ceil((n - window) / stride) + 1
    pads.append((0, max((out - 1) * stride + window - n, 0)))
  if kind == "max":
    return layers.max_pool(x, (window, window), (stride, stride), padding=pads, kernels=kernels)
  if kind == "avg":
    return nn.avg_pool(x, (window, window), (stride, stride), padding=pads, count_include_pad=False)
  raise ValueError(f"unknown pool {kind!r}")


class MLPConv(nn.Module):
  """kxk conv + two 1x1 convs, each conv -> norm -> act (Sec. 3.1, Fig. 2)."""

  widths: tuple[int, int, int]
  kernel: int
  stride: int = 1
  padding: int = 0
  norm: str | NormSpec = "none"
  norm_last: bool = True  # False: the last conv (class maps) has a bias and no norm
  act_last: bool = True
  act: str = "relu"
  init_std: float | None = None
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    init = normal_or(self.init_std, he_normal)
    for i, c in enumerate(self.widths):
      k, s, p = (self.kernel, self.stride, self.padding) if i == 0 else (1, 1, 0)
      last = i == len(self.widths) - 1
      normed = self.norm_last or not last
      x = self.kernels.Conv(
        c,
        (k, k),
        (s, s),
        padding=((p, p), (p, p)),
        kernel_init=init,
        use_bias=conv_bias(self.norm) if normed else True,
        dtype=self.dtype,
        name=f"conv{i}",
      )(x)
      if normed:
        x = make_norm(self.norm, dtype=self.dtype, kernels=self.kernels, name=f"norm{i}")(x, train)
      if self.act_last or not last:
        x = activation(self.act)(x)
    return x


class NiN(nn.Module):
  """mlpconv blocks with pooling/dropout between them, then GAP (or an FC head)."""

  blocks: tuple = CIFAR
  pools: tuple[str, ...] = ("max", "avg")  # after every block but the last
  dropout_after: tuple[int, ...] = (0, 1)  # block indices followed by dropout (after the pool)
  num_classes: int = 10
  dropout: float = 0.5
  head: str = "gap"
  head_dropout: float = 0.0
  norm: str | NormSpec = "none"
  final_relu: bool = True
  act: str = "relu"
  init_std: float | None = None
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.head not in ("gap", "fc"):
      raise ValueError(f"unknown head {self.head!r}; choose gap or fc")
    if self.head_dropout and self.head != "fc":
      raise ValueError("head_dropout applies to head='fc' only")
    for i, (k, s, p, widths) in enumerate(self.blocks):
      last = i == len(self.blocks) - 1
      widths = tuple(self.num_classes if w is None else w for w in widths)
      x = MLPConv(
        widths,
        k,
        s,
        p,
        norm=self.norm,
        norm_last=not last,
        act_last=self.final_relu or not last,
        act=self.act,
        init_std=self.init_std,
        dtype=self.dtype,
        kernels=self.kernels,
        name=f"mlpconv{i + 1}",
      )(x, train)
      if not last:
        x = caffe_pool(x, self.pools[i], kernels=self.kernels)
      self.sow("intermediates", f"block{i + 1}", x)
      if i in self.dropout_after and self.dropout > 0:
        x = nn.Dropout(self.dropout)(x, deterministic=not train)
    if self.head == "gap":  # Sec. 3.2: one map per class, averaged
      return x.mean(axis=(1, 2))
    x = x.reshape((x.shape[0], -1))
    if self.head_dropout > 0:
      x = nn.Dropout(self.head_dropout)(x, deterministic=not train)
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)


@register_model(
  "nin_cifar",
  paper_params=966_986,
  input_size=32,
  num_classes=10,
  paper_gmacs=0.22,
  source="Lin et al. 2014, Sec. 4.2; sizes from the authors' Caffe CIFAR-10 model",
)
def nin_cifar(**kw) -> NiN:
  return NiN(**kw)


@register_model(
  "nin_cifar_bn",
  paper_params=968_394,
  input_size=32,
  num_classes=10,
  source="nin_cifar + BatchNorm after each conv but the class-map conv (derived count)",
)
def nin_cifar_bn(**kw) -> NiN:
  return NiN(**{"norm": "batch", **kw})


@register_model(
  "nin_imagenet",
  paper_params=7_595_176,
  input_size=224,
  num_classes=1000,
  source="Lin et al. 2014; Caffe model zoo NiN ImageNet model (derived count)",
)
def nin_imagenet(**kw) -> NiN:
  cfg = dict(blocks=IMAGENET, pools=("max", "max", "max"), dropout_after=(2,), num_classes=1000)
  return NiN(**{**cfg, **kw})
