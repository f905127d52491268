"""ResNets (He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition"), with the
SE (Hu et al. 2018, "Squeeze-and-Excitation Networks") and CBAM (Woo et al. 2018) plug-ins.

One module, `ResNet`, builds both the ImageNet nets (Table 1: 7x7/2 stem + 3x3/2 max pool, four
stages of 64/128/256/512 base channels, basic or bottleneck blocks) and the CIFAR nets (Sec. 4.2:
3x3 stem conv 16, three stages of 16/32/64 channels with n basic blocks each, depth 6n+2), with
the SAME block classes. Global average pool + FC in both. Options (paper default first):
  shortcut    "B" projection (1x1 conv + norm) only where the shape changes (Sec. 3.3 option B,
              torchvision); "A" parameter-free identity: stride-s subsample + zero channel padding
              (the CIFAR default, Sec. 4.2); "C" projection on every block (Table 3).
  residual    False = the plain net of Sec. 4.1 (no shortcuts at all; same layers otherwise).
  stride_in   where a bottleneck down-samples: "paper" = its first 1x1 conv (Table 1 / Sec. 3.3,
              3.8 GFLOPs for ResNet-50: resnet50/101/152); "v1.5" = its 3x3 conv (torchvision and
              timm, 4.1 GFLOPs: resnet50_v1_5/101_v1_5/152_v1_5, what their weights convert to);
              same parameters either way. Basic blocks always down-sample in their first 3x3 conv,
              so resnet18/34 have one layout.
  zero_init_last_norm   Goyal et al. 2017: scale of the last norm of each residual branch = 0.
  attn        SE / CBAM on the residual branch after its last norm, before the addition (SENet
              Fig. 3, CBAM Fig. 3). se_resnet50 / cbam_resnet50 use stride_in="paper" as the papers.
  norm        any `layers.make_norm` kind (GN paper: same parameter count for all of them).
  scan_blocks False = one module per block (layer{stage}_{j}, as the paper's table). True = the
              blocks after the first of each stage, which all have the same shapes, run as ONE
              `nn.scan` (layer{stage}_rest, parameters stacked on a leading axis): the same network,
              parameter count and function, but XLA compiles one block per stage instead of n, so
              deep nets compile in seconds (ResNet-152, ResNet-1202; BENCHMARKS.md "First-step
              wait"). Not a paper option: a compile-time choice; checkpoints of the two layouts
              differ (`stack_blocks` converts). Convs inside the scan use `kernels.loop_conv`.
  kernels     the primitive ops every conv, pool and norm computes with (`layers.Kernels`; default
              `layers.PORTABLE`); handed to every submodule, no effect on parameters.
Init as torchvision: convs He normal fan-out (He et al. 2015), norms scale 1 / bias 0, FC as
PyTorch's nn.Linear default (uniform +-1/sqrt(fan_in) for weight and bias).
Option-A zero channels are appended after the identity channels (the paper does not say where).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.models import layers
from classic_cnns.models.inits import torch_inits
from classic_cnns.models.layers import AttnSpec, ConvNormAct, NormSpec, make_attention
from classic_cnns.models.registry import register_model

SHORTCUTS = ("A", "B", "C")
STRIDE_IN = ("paper", "v1.5")


class Shortcut(nn.Module):
  """Identity (option A: subsample + zero-pad channels) or projection (1x1 conv + norm)."""

  features: int
  strides: int
  project: bool
  norm: str | NormSpec = "batch"
  conv: Callable | None = None  # the conv primitive (None = kernels.conv)
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool):
    if self.project:
      return ConvNormAct(
        self.features,
        1,
        self.strides,
        norm=self.norm,
        act="identity",
        conv=self.conv,
        dtype=self.dtype,
        kernels=self.kernels,
        name="proj",
      )(x, train)
    x = x[:, :: self.strides, :: self.strides, :]
    extra = self.features - x.shape[-1]
    return jnp.pad(x, ((0, 0),) * 3 + ((0, extra),)) if extra else x


class _Block(nn.Module):
  """Shared fields and the residual addition of the basic and bottleneck blocks."""

  features: int  # block output channels
  strides: int = 1
  shortcut: str = "B"
  residual: bool = True
  stride_in: str = "v1.5"
  zero_init_last_norm: bool = False
  norm: str | NormSpec = "batch"
  attn: str | AttnSpec | None = None
  conv: Callable | None = (
    None  # the conv primitive (None = kernels.conv; kernels.loop_conv in a scan)
  )
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  def branch(self, x, train: bool):
    raise NotImplementedError

  @nn.compact
  def __call__(self, x, train: bool):
    y = self.branch(x, train)
    attn = make_attention(
      self.attn, norm=self.norm, dtype=self.dtype, kernels=self.kernels, name="attn"
    )
    if attn is not None:
      y = attn(y, train)
    if self.residual:
      change = self.strides != 1 or x.shape[-1] != self.features
      project = self.shortcut == "C" or (self.shortcut == "B" and change)
      y = y + Shortcut(
        self.features,
        self.strides,
        project,
        norm=self.norm,
        conv=self.conv,
        dtype=self.dtype,
        kernels=self.kernels,
        name="shortcut",
      )(x, train)
    return nn.relu(y)

  def cna(self, features: int, kernel: int, strides: int, name: str, last: bool = False):
    return ConvNormAct(
      features,
      kernel,
      strides,
      norm=self.norm,
      act="identity" if last else "relu",
      zero_init_norm=last and self.zero_init_last_norm,
      conv=self.conv,
      dtype=self.dtype,
      kernels=self.kernels,
      name=name,
    )


class BasicBlock(_Block):
  """Two 3x3 convs (Fig. 2 left); the first one strides."""

  expansion = 1

  def branch(self, x, train: bool):
    y = self.cna(self.features, 3, self.strides, "conv1")(x, train)
    return self.cna(self.features, 3, 1, "conv2", last=True)(y, train)


class Bottleneck(_Block):
  """1x1 reduce -> 3x3 -> 1x1 expand (x4), Fig. 5 right; stride placement by `stride_in`."""

  expansion = 4

  def branch(self, x, train: bool):
    width = self.features // self.expansion
    s1, s2 = (self.strides, 1) if self.stride_in == "paper" else (1, self.strides)
    y = self.cna(width, 1, s1, "conv1")(x, train)
    y = self.cna(width, 3, s2, "conv2")(y, train)
    return self.cna(self.features, 1, 1, "conv3", last=True)(y, train)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class _ScanStep(nn.Module):
  """One block as an `nn.scan` body: (carry x, broadcast train) -> (x, nothing)."""

  block: type
  block_kwargs: tuple  # the block's other fields as sorted (name, value) pairs (hashable)
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool):
    return self.block(**dict(self.block_kwargs), kernels=self.kernels, name="block")(x, train), None


def scanned_blocks(
  block: type, length: int, name: str, kernels: layers.Kernels = layers.PORTABLE, **block_kwargs
) -> nn.Module:
  """`length` identical blocks in sequence as one scan; params/batch_stats stacked on axis 0, each
  block its own init key."""
  scan = nn.scan(
    _ScanStep,
    variable_axes={"params": 0, "batch_stats": 0},
    split_rngs={"params": True, "dropout": True},
    in_axes=nn.broadcast,
    length=length,
  )
  return scan(block, tuple(sorted(block_kwargs.items())), kernels, name=name)


def stack_blocks(variables: dict, stage_sizes: Sequence[int]) -> dict:
  """Variables of a scan_blocks=False ResNet -> the same values laid out for scan_blocks=True
  (layer{i}_1 .. layer{i}_{n-1} stacked into layer{i}_rest/block); works for params and batch_stats."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for i, n in enumerate(stage_sizes):
      if n > 2:
        rest = [tree.pop(f"layer{i + 1}_{j}") for j in range(1, n)]
        tree[f"layer{i + 1}_rest"] = {"block": jax.tree.map(lambda *xs: jnp.stack(xs), *rest)}
    out[collection] = tree
  return out


class ResNet(nn.Module):
  """ImageNet (stem="imagenet") or CIFAR (stem="cifar") ResNet / plain net."""

  # Global average pooling head: the net runs on any input size, the fully-convolutional form
  # of the multi-scale evaluation (He et al. 2016, Sec. 3.4, Table 4).
  FULLY_CONVOLUTIONAL: ClassVar[bool] = True
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = "basic"
  widths: Sequence[int] = (64, 128, 256, 512)  # base channels per stage (x4 out for bottleneck)
  stem: str = "imagenet"
  shortcut: str = "B"
  residual: bool = True
  stride_in: str = "v1.5"
  zero_init_last_norm: bool = False
  norm: str | NormSpec = "batch"
  attn: str | AttnSpec | None = None
  num_classes: int = 1000
  scan_blocks: bool = False
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    if self.shortcut not in SHORTCUTS:
      raise ValueError(f"unknown shortcut {self.shortcut!r}; choose one of {', '.join(SHORTCUTS)}")
    if self.stride_in not in STRIDE_IN:
      raise ValueError(
        f"unknown stride_in {self.stride_in!r}; choose one of {', '.join(STRIDE_IN)}"
      )
    if self.block not in BLOCKS:
      raise ValueError(f"unknown block {self.block!r}; choose one of {', '.join(BLOCKS)}")
    if self.stem == "imagenet":  # Table 1 conv1 + pool
      x = ConvNormAct(
        self.widths[0], 7, 2, norm=self.norm, dtype=self.dtype, kernels=self.kernels, name="stem"
      )(x, train)
      x = layers.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), kernels=self.kernels)
    elif self.stem == "cifar":  # Sec. 4.2: "the first layer is 3x3 convolutions"
      x = ConvNormAct(
        self.widths[0], 3, 1, norm=self.norm, dtype=self.dtype, kernels=self.kernels, name="stem"
      )(x, train)
    else:
      raise ValueError(f"unknown stem {self.stem!r}; choose imagenet or cifar")
    block = BLOCKS[self.block]
    fields = dict(
      shortcut=self.shortcut,
      residual=self.residual,
      stride_in=self.stride_in,
      zero_init_last_norm=self.zero_init_last_norm,
      norm=self.norm,
      attn=self.attn,
      dtype=self.dtype,
    )
    for i, (n, w) in enumerate(zip(self.stage_sizes, self.widths)):
      # The first block of a stage changes the shape (stride 2 / wider); the n - 1 after it do not.
      x = block(
        w * block.expansion,
        strides=2 if i > 0 else 1,
        **fields,
        kernels=self.kernels,
        name=f"layer{i + 1}_0",
      )(x, train)
      if self.scan_blocks and n > 2:
        x, _ = scanned_blocks(
          block,
          n - 1,
          f"layer{i + 1}_rest",
          kernels=self.kernels,
          features=w * block.expansion,
          conv=self.kernels.loop_conv,
          **fields,
        )(x, train)
      else:
        for j in range(1, n):
          x = block(w * block.expansion, **fields, kernels=self.kernels, name=f"layer{i + 1}_{j}")(
            x, train
          )
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="fc", **torch_inits(x.shape[-1]))(x)


# --------------------------------------------------------------------------- variants
IMAGENET = {
  18: ((2, 2, 2, 2), "basic"),
  34: ((3, 4, 6, 3), "basic"),
  50: ((3, 4, 6, 3), "bottleneck"),
  101: ((3, 4, 23, 3), "bottleneck"),
  152: ((3, 8, 36, 3), "bottleneck"),
}


def imagenet_resnet(depth: int, **kw) -> ResNet:
  """Table 1: the ImageNet net of `depth` layers (stage sizes and block kind from the table)."""
  stages, block = IMAGENET[depth]
  return ResNet(**{"stage_sizes": stages, "block": block, **kw})


def cifar_resnet(depth: int, **kw) -> ResNet:
  """Sec. 4.2: 6n + 2 layers, n basic blocks per stage of 16/32/64 channels, option A shortcuts."""
  n = (depth - 2) // 6
  assert 6 * n + 2 == depth, depth
  return ResNet(
    **{
      "stage_sizes": (n, n, n),
      "block": "basic",
      "widths": (16, 32, 64),
      "stem": "cifar",
      "shortcut": "A",
      "num_classes": 10,
      **kw,
    }
  )


# ImageNet, Table 1 / Table 3.
TABLE1 = "He et al. 2016, Table 1 (option B); count = torchvision"


@register_model(
  "resnet18", paper_params=11_689_512, paper_gmacs=1.81, source=TABLE1, input_size=224
)
def resnet18(**kw) -> ResNet:
  return imagenet_resnet(18, **kw)


@register_model(
  "resnet34", paper_params=21_797_672, paper_gmacs=3.66, source=TABLE1, input_size=224
)
def resnet34(**kw) -> ResNet:
  return imagenet_resnet(34, **kw)


# Bottleneck nets: the paper's layout (stride in the first 1x1 conv, Table 1: 3.8 / 7.6 / 11.3
# GFLOPs) under the plain names; torchvision's "v1.5" layout (stride in the 3x3 conv) as *_v1_5.
TV_V15 = "torchvision ResNet v1.5 (stride in the 3x3 conv), He et al. 2016, Table 1 (option B)"


@register_model(
  "resnet50", paper_params=25_557_032, paper_gmacs=3.86, source=TABLE1, input_size=224
)
def resnet50(**kw) -> ResNet:
  return imagenet_resnet(50, **{"stride_in": "paper", **kw})


@register_model(
  "resnet50_v1_5", paper_params=25_557_032, paper_gmacs=4.09, source=TV_V15, input_size=224
)
def resnet50_v1_5(**kw) -> ResNet:
  return imagenet_resnet(50, **{"stride_in": "v1.5", **kw})


@register_model(
  "resnet101", paper_params=44_549_160, paper_gmacs=7.57, source=TABLE1, input_size=224
)
def resnet101(**kw) -> ResNet:
  return imagenet_resnet(101, **{"stride_in": "paper", **kw})


@register_model(
  "resnet101_v1_5", paper_params=44_549_160, paper_gmacs=7.80, source=TV_V15, input_size=224
)
def resnet101_v1_5(**kw) -> ResNet:
  return imagenet_resnet(101, **{"stride_in": "v1.5", **kw})


@register_model(
  "resnet152", paper_params=60_192_808, paper_gmacs=11.28, source=TABLE1, input_size=224
)
def resnet152(**kw) -> ResNet:
  return imagenet_resnet(152, **{"stride_in": "paper", **kw})


@register_model(
  "resnet152_v1_5", paper_params=60_192_808, paper_gmacs=11.51, source=TV_V15, input_size=224
)
def resnet152_v1_5(**kw) -> ResNet:
  return imagenet_resnet(152, **{"stride_in": "v1.5", **kw})


@register_model(
  "plain18",
  paper_params=11_515_688,
  source="He et al. 2016, Table 1 / Sec. 4.1 plain net",
  input_size=224,
)
def plain18(**kw) -> ResNet:
  return imagenet_resnet(18, **{"residual": False, **kw})


@register_model(
  "plain34",
  paper_params=21_623_848,
  source="He et al. 2016, Sec. 4.1 plain net (= ResNet-34 option A count)",
  input_size=224,
)
def plain34(**kw) -> ResNet:
  return imagenet_resnet(34, **{"residual": False, **kw})


@register_model(
  "resnet34_a", paper_params=21_623_848, source="He et al. 2016, Table 3 option A", input_size=224
)
def resnet34_a(**kw) -> ResNet:
  return imagenet_resnet(34, **{"shortcut": "A", **kw})


@register_model(
  "resnet34_c", paper_params=22_716_840, source="He et al. 2016, Table 3 option C", input_size=224
)
def resnet34_c(**kw) -> ResNet:
  return imagenet_resnet(34, **{"shortcut": "C", **kw})


# CIFAR-10, Sec. 4.2 / Table 6: (depth, params, GMACs at 32x32). Each depth also has its plain net
# (Fig. 6, same count), except 1202, which the paper trains with shortcuts only.
TABLE6 = (
  (20, 269_722, 0.041),
  (32, 464_154, 0.069),
  (44, 658_586, 0.097),
  (56, 853_018, 0.125),
  (110, 1_727_962, 0.253),
  (1202, 19_421_274, None),
)
_CIFAR = "He et al. 2016, Sec. 4.2 / Table 6 (option A)"


def _table6_variants(depth: int, params: int, gmacs: float | None) -> None:
  @register_model(
    f"resnet{depth}",
    paper_params=params,
    paper_gmacs=gmacs,
    source=_CIFAR,
    input_size=32,
    num_classes=10,
  )
  def resnet(**kw) -> ResNet:
    return cifar_resnet(depth, **kw)

  resnet.__name__ = resnet.__qualname__ = f"resnet{depth}"
  if depth == 1202:
    return

  @register_model(
    f"plain{depth}",
    paper_params=params,
    source="He et al. 2016, Sec. 4.2 / Fig. 6 plain net",
    input_size=32,
    num_classes=10,
  )
  def plain(**kw) -> ResNet:
    return cifar_resnet(depth, **{"residual": False, **kw})

  plain.__name__ = plain.__qualname__ = f"plain{depth}"


for _row in TABLE6:
  _table6_variants(*_row)


# SE / CBAM. se_resnet50 and cbam_resnet50 are the papers' exact counts; the others are DERIVED:
# SE adds per block, with C = block output channels and r = 16 (C/r floored, at least 1):
#   2*C*(C/r) + C/r + C   (two biased FCs);  CBAM adds the same + 7*7*2 conv + 2 norm params = 100.
# ResNet-18: 2 blocks each at C = 64/128/256/512 -> 2*(580 + 2184 + 8464 + 33312) = 89,080;
# ResNet-34: 3/4/6/3 blocks -> 161,196. CIFAR, per block at C = 16/32/64: 49/162/580 -> n * 791
# (resnet20: 2,373; resnet56: 7,119), CBAM + 900 (n=3) / 2,700 (n=9).
@register_model(
  "se_resnet50",
  paper_params=28_088_024,
  paper_gmacs=3.86,
  source="Hu et al. 2018, Table 2 (SE-ResNet-50, r=16)",
  input_size=224,
)
def se_resnet50(**kw) -> ResNet:
  return imagenet_resnet(50, **{"attn": "se", "stride_in": "paper", **kw})


@register_model(
  "cbam_resnet50",
  paper_params=28_089_624,
  paper_gmacs=3.864,
  source="Woo et al. 2018, Table 4 (ResNet-50 + CBAM)",
  input_size=224,
)
def cbam_resnet50(**kw) -> ResNet:
  return imagenet_resnet(50, **{"attn": "cbam", "stride_in": "paper", **kw})


@register_model(
  "se_resnet18",
  paper_params=11_689_512 + 89_080,
  source="derived: ResNet-18 + SE (Hu et al. 2018), r=16",
  input_size=224,
)
def se_resnet18(**kw) -> ResNet:
  return imagenet_resnet(18, **{"attn": "se", **kw})


@register_model(
  "se_resnet34",
  paper_params=21_797_672 + 161_196,
  source="derived: ResNet-34 + SE (Hu et al. 2018), r=16",
  input_size=224,
)
def se_resnet34(**kw) -> ResNet:
  return imagenet_resnet(34, **{"attn": "se", **kw})


_SE_CIFAR = "derived: CIFAR ResNet + SE (Hu et al. 2018), r=16"
_CBAM_CIFAR = "derived: CIFAR ResNet + CBAM (Woo et al. 2018), r=16"


@register_model(
  "se_resnet20", paper_params=269_722 + 791 * 3, source=_SE_CIFAR, input_size=32, num_classes=10
)
def se_resnet20(**kw) -> ResNet:
  return cifar_resnet(20, **{"attn": "se", **kw})


@register_model(
  "cbam_resnet20",
  paper_params=269_722 + (791 + 300) * 3,
  source=_CBAM_CIFAR,
  input_size=32,
  num_classes=10,
)
def cbam_resnet20(**kw) -> ResNet:
  return cifar_resnet(20, **{"attn": "cbam", **kw})


@register_model(
  "se_resnet56", paper_params=853_018 + 791 * 9, source=_SE_CIFAR, input_size=32, num_classes=10
)
def se_resnet56(**kw) -> ResNet:
  return cifar_resnet(56, **{"attn": "se", **kw})


@register_model(
  "cbam_resnet56",
  paper_params=853_018 + (791 + 300) * 9,
  source=_CBAM_CIFAR,
  input_size=32,
  num_classes=10,
)
def cbam_resnet56(**kw) -> ResNet:
  return cifar_resnet(56, **{"attn": "cbam", **kw})
