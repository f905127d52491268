"""DenseNet (Huang, Liu, van der Maaten & Weinberger 2017, "Densely Connected Convolutional
Networks", CVPR; arXiv:1608.06993), Sec. 3, Table 1 (ImageNet), Table 2 (CIFAR/SVHN).

Each dense layer sees the concatenation of all earlier feature maps of its block and adds k
(growth rate) new maps, pre-activation order BN-ReLU-Conv (Sec. 3 "Composite function"):
  plain layer       BN-ReLU-Conv3x3(k)
  bottleneck ("B")  BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k)               (Sec. 3 "Bottleneck layers")
Transition between blocks: BN-ReLU-Conv1x1(floor(theta m))-AvgPool2x2; theta = 0.5 is the "C"
(compression) of DenseNet-BC, theta = 1 the plain DenseNet (Sec. 3 "Compression").
Stems: "imagenet" = Conv7x7/2 (2k channels; 96 for DenseNet-161) - BN - ReLU - MaxPool3x3/2
(Table 1); "cifar" = Conv3x3 with 16 channels (2k for BC) (Sec. 3 "Implementation Details").
Head: BN - ReLU - global average pool - FC. The ImageNet and CIFAR nets are the same module
`DenseNet` with a different stem and table.

Options (all default to the paper):
  dropout           rate after each conv except the first (Sec. 4.2: 0.2 on C10/C100/SVHN without
                    augmentation), i.e. after both convs of a dense layer and after the transition
                    conv, as the paper/the authors' Torch code. torchvision's `drop_rate` only drops
                    the 3x3 output of dense layers (same parameters).
  norm              any `layers.make_norm` kind (same parameter count for every kind).
  memory_efficient  recompute each dense layer's concat-norm-relu-conv in the backward pass
                    (`nn.remat`; Pleiss et al. 2017, "Memory-Efficient Implementation of
                    DenseNets"), so the O(L^2) concatenations are not stored; same outputs.
Initialisation: He normal for convs (Sec. 4.2 cites He et al. 2015; fan-out as the authors'
fb.resnet.torch-based code; torchvision uses fan-in), norm scale 1 / bias 0, FC bias 0.
Convs carry no bias (every conv output feeds a norm), as torchvision and the authors' code; the
registered counts equal torchvision's (ImageNet) and the authors' Table 2 (CIFAR, exact below).
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.models import layers
from classic_cnns.models.layers import NormSpec
from classic_cnns.models.registry import register_model


class DenseLayer(nn.Module):
  """[concat] - norm - relu - (1x1 conv 4k - drop - norm - relu -) 3x3 conv k - drop."""
  growth_rate: int
  bottleneck: bool = True
  bn_size: int = 4  # bottleneck width = bn_size * k (Sec. 3: "4k feature-maps")
  dropout: float = 0.0
  norm: str | NormSpec = "batch"
  dtype: Any = None

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array], train: bool) -> jax.Array:
    bias = layers.conv_bias(self.norm)
    conv = lambda n, k, name: nn.Conv(n, (k, k), padding=layers.pad_same(k), use_bias=bias,
                                      kernel_init=layers.he_normal, dtype=self.dtype, name=name)
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train) if self.dropout else y
    x = jnp.concatenate(feats, axis=-1) if len(feats) > 1 else feats[0]
    x = nn.relu(layers.make_norm(self.norm, dtype=self.dtype, name="norm1")(x, train))
    if self.bottleneck:
      x = drop(conv(self.bn_size * self.growth_rate, 1, "conv1")(x))
      x = nn.relu(layers.make_norm(self.norm, dtype=self.dtype, name="norm2")(x, train))
    return drop(conv(self.growth_rate, 3, "conv2")(x))


class Transition(nn.Module):
  """norm - relu - 1x1 conv (compressed width) - drop - 2x2 average pool, stride 2."""
  features: int
  dropout: float = 0.0
  norm: str | NormSpec = "batch"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(layers.make_norm(self.norm, dtype=self.dtype, name="norm")(x, train))
    x = nn.Conv(self.features, (1, 1), use_bias=layers.conv_bias(self.norm), kernel_init=layers.he_normal,
                dtype=self.dtype, name="conv")(x)
    if self.dropout:
      x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return nn.avg_pool(x, (2, 2), (2, 2))


class DenseNet(nn.Module):
  """Dense blocks of `block_config` layers joined by transitions; ImageNet or CIFAR stem."""
  growth_rate: int = 32
  block_config: Sequence[int] = (6, 12, 24, 16)
  bottleneck: bool = True
  compression: float = 0.5  # theta; 1.0 = no compression
  stem: str = "imagenet"  # "imagenet" | "cifar"
  stem_channels: int | None = None  # None = 2k
  bn_size: int = 4
  dropout: float = 0.0
  memory_efficient: bool = False
  norm: str | NormSpec = "batch"
  num_classes: int = 1000
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"unknown DenseNet stem {self.stem!r}; choose imagenet or cifar")
    c = self.stem_channels or 2 * self.growth_rate
    bias = layers.conv_bias(self.norm)
    if self.stem == "imagenet":  # Table 1: 7x7 conv, stride 2 -> 3x3 max pool, stride 2
      x = nn.Conv(c, (7, 7), (2, 2), padding=layers.pad_same(7), use_bias=bias, kernel_init=layers.he_normal,
                  dtype=self.dtype, name="stem_conv")(x)
      x = nn.relu(layers.make_norm(self.norm, dtype=self.dtype, name="stem_norm")(x, train))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    else:  # Sec. 3: one 3x3 conv on the input; the first dense layer's norm follows
      x = nn.Conv(c, (3, 3), padding=layers.pad_same(3), use_bias=bias, kernel_init=layers.he_normal,
                  dtype=self.dtype, name="stem_conv")(x)
    # static_argnums counts `self` as 0: `train` (argument 2) stays a Python bool.
    layer_cls = nn.remat(DenseLayer, static_argnums=(2,)) if self.memory_efficient else DenseLayer
    for i, n_layers in enumerate(self.block_config):
      feats = [x]
      for j in range(n_layers):
        feats.append(layer_cls(self.growth_rate, self.bottleneck, self.bn_size, self.dropout, self.norm,
                               self.dtype, name=f"block{i + 1}_layer{j + 1}")(tuple(feats), train))
      x = jnp.concatenate(feats, axis=-1)  # c + n_layers * k channels
      if i + 1 < len(self.block_config):
        x = Transition(int(self.compression * x.shape[-1]), self.dropout, self.norm, self.dtype,
                       name=f"transition{i + 1}")(x, train)
    x = nn.relu(layers.make_norm(self.norm, dtype=self.dtype, name="final_norm")(x, train))
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


# --------------------------------------------------------------------------- ImageNet (Table 1)
_SRC_IMAGENET = "Huang et al. 2017, Table 1 (DenseNet-BC, k=32; 161: k=48); counts = torchvision"
_IMAGENET = {  # name: (k, blocks, stem channels, params, GMACs at 224)
    "densenet121": (32, (6, 12, 24, 16), 64, 7_978_856, 2.83),
    "densenet169": (32, (6, 12, 32, 32), 64, 14_149_480, 3.36),
    "densenet201": (32, (6, 12, 48, 32), 64, 20_013_928, 4.29),
    "densenet161": (48, (6, 12, 36, 24), 96, 28_681_000, 7.73),
    "densenet264": (32, (6, 12, 64, 48), 64, 33_337_704, 5.75),
}


def _imagenet_builder(k: int, blocks: tuple[int, ...], stem_c: int):
  def build(**kw) -> nn.Module:
    return DenseNet(**{"growth_rate": k, "block_config": blocks, "stem_channels": stem_c, **kw})
  return build


for _name, (_k, _blocks, _c, _p, _g) in _IMAGENET.items():
  register_model(_name, paper_params=_p, input_size=224, num_classes=1000, source=_SRC_IMAGENET,
                 paper_gmacs=_g)(_imagenet_builder(_k, _blocks, _c))


# --------------------------------------------------------------------------- CIFAR (Table 2)
# Depth L counts the stem conv, the 2 transition convs and the classifier: each of the 3 blocks
# has (L - 4) / 3 layers, (L - 4) / 6 for BC (two convs per layer). Non-BC: 16-channel stem, no
# bottleneck, theta = 1; BC: 2k stem, bottleneck, theta = 0.5. 10 classes at 32x32. The counts
# below are this module's and match Table 2's rounded 0.8 / 1.0 / 7.0 / 27.2 / 15.3 / 25.6 M
# (also the reference's independent implementation, paper_numbers.md).
def _cifar(depth: int, k: int, bc: bool, **kw) -> nn.Module:
  n = (depth - 4) // (6 if bc else 3)
  base = dict(growth_rate=k, block_config=(n, n, n), bottleneck=bc, compression=0.5 if bc else 1.0,
              stem="cifar", stem_channels=2 * k if bc else 16, num_classes=10)
  return DenseNet(**{**base, **kw})


_SRC_CIFAR = "Huang et al. 2017, Sec. 3 Implementation Details, Table 2"
_CIFAR = {  # name: (L, k, BC, params)
    "densenet40_k12": (40, 12, False, 1_019_722),
    "densenet100_k12": (100, 12, False, 6_979_642),
    "densenet100_k24": (100, 24, False, 27_249_082),
    "densenet_bc_100_12": (100, 12, True, 769_162),
    "densenet_bc_250_24": (250, 24, True, 15_324_406),
    "densenet_bc_190_40": (190, 40, True, 25_624_430),
}



def _cifar_builder(depth: int, k: int, bc: bool):
  def build(**kw) -> nn.Module:
    return _cifar(depth, k, bc, **kw)
  return build


for _name, (_depth, _k, _bc, _p) in _CIFAR.items():
  register_model(_name, paper_params=_p, input_size=32, num_classes=10, source=_SRC_CIFAR)(
      _cifar_builder(_depth, _k, _bc))
