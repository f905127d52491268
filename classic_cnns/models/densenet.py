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
  scan_layers       not from the paper, a compile-time choice: run each dense block as ONE
                    `lax.scan` over a preallocated buffer of the block's output width (the
                    memory-sharing layout of Pleiss et al.). Layer l writes its k maps at offset
                    c0 + l*k; its first norm and 1x1 conv read the whole buffer with their
                    parameters zero-padded to that width, so the unread channels contribute exactly
                    0. Same function and exact parameter count, but a block's variables are a few
                    arrays (`_BlockVariables`: norm1 and the first conv packed along channels, norm2
                    and conv2 stacked) instead of 4-6 per layer, so the step has a few kernels per
                    block, not per layer, for the optimizer, the padding and the running averages;
                    `pack_layers` / `unpack_layers` convert checkpoints between the layouts. XLA
                    compiles one layer per block instead of L (DenseNet-264's first-step wait: 318 s
                    unrolled; BENCHMARKS.md "First-step wait") but each layer's norm1 + 1x1 conv
                    then run over the full width, on average up to ~1.8x the layer's real input
                    (DenseNet-BC-100 trains at 0.67x the speed on CPU). BatchNorm only; dropout
                    masks come from another random stream; initial values are drawn per block (same
                    distributions as the unrolled net, other values). Its convs use
                    `kernels.loop_conv`.
  kernels           the primitive ops every conv, pool and norm computes with (`layers.Kernels`;
                    default `layers.PORTABLE`); handed to every submodule, no effect on parameters.
Initialisation: He normal for convs (Sec. 4.2 cites He et al. 2015; fan-out as the authors'
fb.resnet.torch-based code; torchvision uses fan-in), norm scale 1 / bias 0, FC bias 0.
Convs carry no bias (every conv output feeds a norm), as torchvision and the authors' code; the
registered counts equal torchvision's (ImageNet) and the authors' Table 2 (CIFAR, exact below).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.models import layers
from classic_cnns.models.inits import he_normal, he_normal_stacked
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
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array], train: bool) -> jax.Array:
    bias = layers.conv_bias(self.norm)
    conv = lambda n, k, name: self.kernels.Conv(
      n,
      (k, k),
      padding=layers.pad_same(k),
      use_bias=bias,
      kernel_init=he_normal,
      dtype=self.dtype,
      name=name,
    )
    norm = lambda name: layers.make_norm(
      self.norm, dtype=self.dtype, kernels=self.kernels, name=name
    )
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train) if self.dropout else y
    x = jnp.concatenate(feats, axis=-1) if len(feats) > 1 else feats[0]
    x = nn.relu(norm("norm1")(x, train))
    if self.bottleneck:
      x = drop(conv(self.bn_size * self.growth_rate, 1, "conv1")(x))
      x = nn.relu(norm("norm2")(x, train))
    return drop(conv(self.growth_rate, 3, "conv2")(x))


class _NormVariables(nn.Module):
  """The variables of a `layers.BatchNorm` (same names, same init) of any `shape`, without computing."""

  shape: tuple[int, ...]

  @nn.compact
  def __call__(self):
    return (
      self.param("scale", nn.initializers.ones, self.shape, jnp.float32),
      self.param("bias", nn.initializers.zeros, self.shape, jnp.float32),
      self.variable("batch_stats", "mean", lambda: jnp.zeros(self.shape, jnp.float32)),
      self.variable("batch_stats", "var", lambda: jnp.ones(self.shape, jnp.float32)),
    )


class _ConvKernel(nn.Module):
  """A bias-free conv kernel named "kernel", He normal (fan-out); `stacked`: a leading layer axis."""

  shape: tuple[int, ...]
  stacked: bool = False

  @nn.compact
  def __call__(self):
    return self.param(
      "kernel", he_normal_stacked() if self.stacked else he_normal, self.shape, jnp.float32
    )


class _BlockVariables(nn.Module):
  """All layer variables of one dense block in the scan_layers layout (`pack_layers`): norm1 and the
  first conv, whose input widths c_l differ per layer, packed along their channel axis (layer l at
  offset c_0 + ... + c_(l-1)); norm2 and conv2, the same shape in every layer, stacked on a leading
  layer axis. Exactly the unrolled block's variables, a few arrays instead of 4-6 per layer."""

  in_features: tuple[int, ...]
  growth_rate: int
  bottleneck: bool
  bn_size: int

  @nn.compact
  def __call__(self):
    n, total, mid = len(self.in_features), sum(self.in_features), self.bn_size * self.growth_rate
    out = {"norm1": _NormVariables((total,), name="norm1")()}
    if self.bottleneck:
      out["conv1"] = _ConvKernel((1, 1, total, mid), name="conv1")()
      out["norm2"] = _NormVariables((n, mid), name="norm2")()
      out["conv2"] = _ConvKernel((n, 3, 3, mid, self.growth_rate), stacked=True, name="conv2")()
    else:
      out["conv2"] = _ConvKernel((3, 3, total, self.growth_rate), name="conv2")()
    return out


_LAYER_NAME = re.compile(r"block(\d+)_layer(\d+)$")


def pack_layers(variables: dict) -> dict:
  """Variables of a scan_layers=False DenseNet -> the same values in the scan_layers=True layout
  (`_BlockVariables`); any collections ({"params": grads} too)."""
  out = {}
  for collection, tree in variables.items():
    tree, blocks = dict(tree), {}
    for name in list(tree):
      if m := _LAYER_NAME.match(name):
        blocks.setdefault(int(m[1]), {})[int(m[2])] = tree.pop(name)
    for b, per_layer in sorted(blocks.items()):
      layer_vars = [per_layer[j] for j in sorted(per_layer)]
      first_conv = "conv1" if "norm2" in layer_vars[0] else "conv2"
      packed = {}
      for key in layer_vars[0]:
        parts = [v[key] for v in layer_vars]
        if key == "norm1":
          packed[key] = jax.tree.map(lambda *a: jnp.concatenate(a, axis=0), *parts)
        elif key == first_conv:
          packed[key] = jax.tree.map(lambda *a: jnp.concatenate(a, axis=2), *parts)
        else:
          packed[key] = jax.tree.map(lambda *a: jnp.stack(a), *parts)
      tree[f"block{b}_layers"] = packed
    out[collection] = tree
  return out


def unpack_layers(variables: dict, block_config: Sequence[int], growth_rate: int) -> dict:
  """The inverse of `pack_layers`: scan_layers=True variables -> the unrolled layout."""
  out = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    for b, n in enumerate(block_config, start=1):
      packed = tree.pop(f"block{b}_layers", None)
      if packed is None:
        continue
      total = jax.tree.leaves(packed["norm1"])[0].shape[0]
      c0 = (total - growth_rate * n * (n - 1) // 2) // n
      bounds = np.cumsum([c0 + j * growth_rate for j in range(n)])[:-1]
      first_conv = "conv1" if "norm2" in packed else "conv2"
      for j in range(n):
        tree[f"block{b}_layer{j + 1}"] = {}
      for key, sub in packed.items():
        if key in ("norm1", first_conv):
          pieces = jax.tree.map(
            lambda a: jnp.split(a, bounds, axis=0 if key == "norm1" else 2), sub
          )
        else:
          pieces = jax.tree.map(lambda a: list(a), sub)
        for j in range(n):
          tree[f"block{b}_layer{j + 1}"][key] = jax.tree.map(
            lambda p: p[j], pieces, is_leaf=lambda p: isinstance(p, list)
          )
    out[collection] = tree
  return out


class Transition(nn.Module):
  """norm - relu - 1x1 conv (compressed width) - drop - 2x2 average pool, stride 2."""

  features: int
  dropout: float = 0.0
  norm: str | NormSpec = "batch"
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.relu(
      layers.make_norm(self.norm, dtype=self.dtype, kernels=self.kernels, name="norm")(x, train)
    )
    x = self.kernels.Conv(
      self.features,
      (1, 1),
      use_bias=layers.conv_bias(self.norm),
      kernel_init=he_normal,
      dtype=self.dtype,
      name="conv",
    )(x)
    if self.dropout:
      x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return nn.avg_pool(x, (2, 2), (2, 2))


class DenseNet(nn.Module):
  """Dense blocks of `block_config` layers joined by transitions; ImageNet or CIFAR stem."""

  # Global average pooling head: the net runs on any input size (multi-scale evaluation).
  FULLY_CONVOLUTIONAL: ClassVar[bool] = True
  growth_rate: int = 32
  block_config: Sequence[int] = (6, 12, 24, 16)
  bottleneck: bool = True
  compression: float = 0.5  # theta; 1.0 = no compression
  stem: str = "imagenet"  # "imagenet" | "cifar"
  stem_channels: int | None = None  # None = 2k
  bn_size: int = 4
  dropout: float = 0.0
  memory_efficient: bool = False
  scan_layers: bool = False
  norm: str | NormSpec = "batch"
  num_classes: int = 1000
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  def scanned_block(self, x: jax.Array, block: int, n_layers: int, train: bool) -> jax.Array:
    """Dense block `block` (1-based) as one lax.scan over its output buffer (see `scan_layers`)."""
    spec = layers.as_norm_spec(self.norm)
    if spec.kind != "batch":
      raise ValueError(f"DenseNet scan_layers supports norm='batch' only, not {spec.kind!r}")
    c0, k = x.shape[-1], self.growth_rate
    width = c0 + n_layers * k
    in_features = [c0 + j * k for j in range(n_layers)]
    v = _BlockVariables(
      tuple(in_features), k, self.bottleneck, self.bn_size, name=f"block{block}_layers"
    )()
    # norm1 and the first conv read the whole buffer: layer l's packed parameters spread to `width`
    # channels by one gather (index `total` = out of range -> fill), zeros beyond its input (running
    # variance ones), so the channels a layer does not see contribute exactly 0.
    total = sum(in_features)
    starts = np.cumsum([0] + in_features[:-1])
    channel = np.arange(width)
    spread_index = np.where(
      channel < np.array(in_features)[:, None], starts[:, None] + channel, total
    )
    spread = lambda a, axis, fill=0.0: jnp.take(
      a, spread_index, axis=axis, mode="fill", fill_value=fill
    )
    first_conv = "conv1" if self.bottleneck else "conv2"
    scale, bias, ra_mean, ra_var = v["norm1"]
    xs = {
      "norm1": (
        spread(scale, 0),
        spread(bias, 0),
        spread(ra_mean.value, 0),
        spread(ra_var.value, 0, 1.0),
      ),
      first_conv: jnp.moveaxis(spread(v[first_conv], 2), 2, 0),  # [layer, kh, kw, width, out]
      "offset": c0 + k * jnp.arange(n_layers),
    }
    if self.bottleneck:
      scale2, bias2, ra_mean2, ra_var2 = v["norm2"]
      xs["norm2"] = (scale2, bias2, ra_mean2.value, ra_var2.value)
      xs["conv2"] = v["conv2"]
    rate = self.dropout if train else 0.0
    if rate:
      xs["key"] = jax.random.split(self.make_rng("dropout"), n_layers)
    dtype = self.dtype or x.dtype

    def norm_relu(h, p):
      y, stats = layers.batch_norm(
        h,
        p[0],
        p[1],
        p[2],
        p[3],
        train=train,
        virtual_batch_size=spec.virtual_batch_size,
        epsilon=spec.epsilon,
        kernels=self.kernels,
      )
      return nn.relu(y.astype(dtype)), stats

    def conv(h, kernel):
      return self.kernels.loop_conv(
        h,
        kernel.astype(dtype),
        (1, 1),
        layers.pad_same(kernel.shape[0]),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
      )

    def drop(h, key):
      keep = jax.random.bernoulli(key, 1.0 - rate, h.shape)
      return jnp.where(keep, h / (1.0 - rate), 0).astype(h.dtype)

    def layer(buf, p):
      h, stats1 = norm_relu(buf, p["norm1"])
      stats = (stats1,)
      if self.bottleneck:
        h = conv(h, p["conv1"])
        h = drop(h, jax.random.fold_in(p["key"], 0)) if rate else h
        h, stats2 = norm_relu(h, p["norm2"])
        stats += (stats2,)
      h = conv(h, p["conv2"])
      h = drop(h, jax.random.fold_in(p["key"], 1)) if rate else h
      buf = jax.lax.dynamic_update_slice_in_dim(buf, h.astype(buf.dtype), p["offset"], axis=3)
      return buf, stats if train else None

    body = jax.checkpoint(layer) if self.memory_efficient else layer
    buf = jnp.pad(x, ((0, 0),) * 3 + ((0, width - c0),))
    buf, stats = jax.lax.scan(body, buf, xs)
    if train and not self.is_initializing():  # running averages at the true widths
      m = spec.momentum
      packed_at = np.concatenate([j * width + np.arange(c) for j, c in enumerate(in_features)])
      (mean1, var1), *rest = stats
      ra_mean.value = m * ra_mean.value + (1 - m) * mean1.reshape(-1)[packed_at]
      ra_var.value = m * ra_var.value + (1 - m) * var1.reshape(-1)[packed_at]
      if rest:
        ((mean2, var2),) = rest
        ra_mean2.value = m * ra_mean2.value + (1 - m) * mean2
        ra_var2.value = m * ra_var2.value + (1 - m) * var2
    return buf

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.stem not in ("imagenet", "cifar"):
      raise ValueError(f"unknown DenseNet stem {self.stem!r}; choose imagenet or cifar")
    c = self.stem_channels or 2 * self.growth_rate
    bias = layers.conv_bias(self.norm)
    if self.stem == "imagenet":  # Table 1: 7x7 conv, stride 2 -> 3x3 max pool, stride 2
      x = self.kernels.Conv(
        c,
        (7, 7),
        (2, 2),
        padding=layers.pad_same(7),
        use_bias=bias,
        kernel_init=he_normal,
        dtype=self.dtype,
        name="stem_conv",
      )(x)
      x = nn.relu(
        layers.make_norm(self.norm, dtype=self.dtype, kernels=self.kernels, name="stem_norm")(
          x, train
        )
      )
      x = layers.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)), kernels=self.kernels)
    else:  # Sec. 3: one 3x3 conv on the input; the first dense layer's norm follows
      x = self.kernels.Conv(
        c,
        (3, 3),
        padding=layers.pad_same(3),
        use_bias=bias,
        kernel_init=he_normal,
        dtype=self.dtype,
        name="stem_conv",
      )(x)
    # static_argnums counts `self` as 0: `train` (argument 2) stays a Python bool.
    layer_cls = nn.remat(DenseLayer, static_argnums=(2,)) if self.memory_efficient else DenseLayer
    for i, n_layers in enumerate(self.block_config):
      if self.scan_layers:
        x = self.scanned_block(x, i + 1, n_layers, train)
      else:
        feats = [x]
        for j in range(n_layers):
          feats.append(
            layer_cls(
              self.growth_rate,
              bottleneck=self.bottleneck,
              bn_size=self.bn_size,
              dropout=self.dropout,
              norm=self.norm,
              dtype=self.dtype,
              kernels=self.kernels,
              name=f"block{i + 1}_layer{j + 1}",
            )(tuple(feats), train)
          )
        x = jnp.concatenate(feats, axis=-1)  # c + n_layers * k channels
      if i + 1 < len(self.block_config):
        x = Transition(
          int(self.compression * x.shape[-1]),
          dropout=self.dropout,
          norm=self.norm,
          dtype=self.dtype,
          kernels=self.kernels,
          name=f"transition{i + 1}",
        )(x, train)
    x = nn.relu(
      layers.make_norm(self.norm, dtype=self.dtype, kernels=self.kernels, name="final_norm")(
        x, train
      )
    )
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)


# --------------------------------------------------------------------------- ImageNet (Table 1)
def imagenet_densenet(k: int, blocks: tuple[int, ...], stem_channels: int, **kw) -> DenseNet:
  """Table 1: DenseNet-BC with growth rate k, `blocks` layers per dense block, 7x7 stem."""
  return DenseNet(
    **{"growth_rate": k, "block_config": blocks, "stem_channels": stem_channels, **kw}
  )


_SRC_IMAGENET = "Huang et al. 2017, Table 1 (DenseNet-BC, k=32; 161: k=48); counts = torchvision"
TABLE1 = {  # name: (k, blocks, stem channels, params, GMACs at 224)
  "densenet121": (32, (6, 12, 24, 16), 64, 7_978_856, 2.83),
  "densenet169": (32, (6, 12, 32, 32), 64, 14_149_480, 3.36),
  "densenet201": (32, (6, 12, 48, 32), 64, 20_013_928, 4.29),
  "densenet161": (48, (6, 12, 36, 24), 96, 28_681_000, 7.73),
  "densenet264": (32, (6, 12, 64, 48), 64, 33_337_704, 5.75),
}


def _table1_variant(
  name: str, k: int, blocks: tuple[int, ...], stem_channels: int, params: int, gmacs: float
) -> None:
  @register_model(
    name,
    paper_params=params,
    paper_gmacs=gmacs,
    source=_SRC_IMAGENET,
    input_size=224,
    num_classes=1000,
  )
  def densenet(**kw) -> DenseNet:
    return imagenet_densenet(k, blocks, stem_channels, **kw)

  densenet.__name__ = densenet.__qualname__ = name


for _name, _row in TABLE1.items():
  _table1_variant(_name, *_row)


# --------------------------------------------------------------------------- CIFAR (Table 2)
# Depth L counts the stem conv, the 2 transition convs and the classifier: each of the 3 blocks
# has (L - 4) / 3 layers, (L - 4) / 6 for BC (two convs per layer). Non-BC: 16-channel stem, no
# bottleneck, theta = 1; BC: 2k stem, bottleneck, theta = 0.5. 10 classes at 32x32. The counts
# below are this module's and match Table 2's rounded 0.8 / 1.0 / 7.0 / 27.2 / 15.3 / 25.6 M.
def cifar_densenet(depth: int, k: int, bc: bool, **kw) -> DenseNet:
  """Sec. 3 Implementation Details: the 3-block CIFAR DenseNet (bc: DenseNet-BC) of depth L, growth k."""
  n = (depth - 4) // (6 if bc else 3)
  base = dict(
    growth_rate=k,
    block_config=(n, n, n),
    bottleneck=bc,
    compression=0.5 if bc else 1.0,
    stem="cifar",
    stem_channels=2 * k if bc else 16,
    num_classes=10,
  )
  return DenseNet(**{**base, **kw})


_SRC_CIFAR = "Huang et al. 2017, Sec. 3 Implementation Details, Table 2"
TABLE2 = {  # name: (L, k, BC, params)
  "densenet40_k12": (40, 12, False, 1_019_722),
  "densenet100_k12": (100, 12, False, 6_979_642),
  "densenet100_k24": (100, 24, False, 27_249_082),
  "densenet_bc_100_12": (100, 12, True, 769_162),
  "densenet_bc_250_24": (250, 24, True, 15_324_406),
  "densenet_bc_190_40": (190, 40, True, 25_624_430),
}


def _table2_variant(name: str, depth: int, k: int, bc: bool, params: int) -> None:
  @register_model(name, paper_params=params, source=_SRC_CIFAR, input_size=32, num_classes=10)
  def densenet(**kw) -> DenseNet:
    return cifar_densenet(depth, k, bc, **kw)

  densenet.__name__ = densenet.__qualname__ = name


for _name, _row in TABLE2.items():
  _table2_variant(_name, *_row)
