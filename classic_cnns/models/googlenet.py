"""GoogLeNet / Inception v1 (Szegedy et al. 2015, "Going deeper with convolutions", Table 1,
Fig. 2b-3, Sec. 5), as in the paper and in torchvision's layout.

Variants (registered below):
  googlenet         the paper: conv biases + ReLU, no BN; LRN after the first max-pool and after
                    the 3x3 stem conv (Fig. 3); true 5x5 conv in the "5x5" branch; 3x3/2 max-pool
                    after 4e; dropout 0.4 before the classifier; 6,998,552 params.
  googlenet_aux     the same with both auxiliary classifiers (after 4a and 4d, Sec. 5): 13,378,280.
  googlenet_bn      torchvision's layout: BN (eps 1e-3) after every conv (no conv biases), no LRN,
                    a 3x3 conv in the "5x5" branch (torchvision's well-known deviation), 2x2/2
                    max-pool after 4e, dropout 0.2, adaptive 4x4 pool in the aux heads; 6,624,904.
  googlenet_bn_aux  the same with both aux heads: 13,004,888.

Named options (every deviation from the paper is one of these fields):
  norm            "none" = paper (conv biases); "batch" etc. via `layers.make_norm`. A kind string
                  takes the other hyperparameters from `GoogLeNet.NORM_DEFAULTS` (BatchNorm eps
                  1e-3, torchvision's BasicConv2d); a `NormSpec` is used as given.
  lrn             LRN as in the reference Caffe model (bvlc_googlenet): size 5, beta 0.75, k 1,
                  alpha 1e-4 / 5 (Caffe divides alpha by the size; the paper gives no values).
  branch5_kernel  5 = paper, 3 = torchvision.
  pool4_kernel    max-pool after 4e: 3 (Table 1, 3x3/2) or 2 (torchvision); both give 14 -> 7.
  dropout         main head (0.4 paper, 0.2 torchvision); aux_dropout 0.7 (Sec. 5).
  aux_logits      build the two aux heads; they run (and are returned) only when train=True, but
                  their params exist after `init(..., train=False)` so checkpoints agree.
  aux_pool        "paper": 5x5/3 average pool (14x14 -> 4x4 at 224); "adaptive": torchvision's
                  adaptive 4x4 average pool (different windows, works at any input size).
  init_std        None = He normal (fan-out) convs (the paper gives no init); a float = normal
                  weights with that std for convs and FCs (torchvision: 0.01).
  kernels         the primitive ops every conv, pool and norm computes with (`layers.Kernels`;
                  default `layers.PORTABLE`); handed to every submodule, no effect on parameters.
Max-pools use PyTorch/Caffe ceil mode, so 224 -> 112 -> 56 -> 28 -> 14 -> 7 as in Table 1.
Aux losses are weighted 0.3 by the trainer (Sec. 5); the final 7x7 average pool is a global mean.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import flax.linen as nn
import jax.numpy as jnp

from classic_cnns.models import layers
from classic_cnns.models.inits import he_normal, normal_or
from classic_cnns.models.layers import ConvNormAct, LocalResponseNorm, NormSpec
from classic_cnns.models.registry import register_model


# --------------------------------------------------------------------------- blocks
class InceptionBlock(nn.Module):
  """Fig. 2b: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3/1 max-pool -> 1x1, concatenated."""

  c1: int
  c3r: int
  c3: int
  c5r: int
  c5: int
  proj: int
  branch5_kernel: int = 5
  norm: str | NormSpec = "none"
  kernel_init: Callable = he_normal
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool):
    cna = lambda f, k, name: ConvNormAct(
      f,
      k,
      norm=self.norm,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      kernels=self.kernels,
      name=name,
    )
    b1 = cna(self.c1, 1, "b1")(x, train)
    b2 = cna(self.c3, 3, "b2_3x3")(cna(self.c3r, 1, "b2_reduce")(x, train), train)
    b3 = cna(self.c5, self.branch5_kernel, "b3_5x5")(cna(self.c5r, 1, "b3_reduce")(x, train), train)
    b4 = cna(self.proj, 1, "b4_proj")(
      layers.max_pool_ceil(x, 3, 1, pad=1, kernels=self.kernels), train
    )
    return jnp.concatenate([b1, b2, b3, b4], axis=-1)


class AuxHead(nn.Module):
  """Sec. 5: 5x5/3 avg pool -> 1x1 conv 128 + ReLU -> FC 1024 + ReLU -> dropout 0.7 -> FC."""

  num_classes: int
  pool: str = "paper"
  dropout: float = 0.7
  norm: str | NormSpec = "none"
  kernel_init: Callable = he_normal
  fc_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool):
    if self.pool == "paper":
      x = nn.avg_pool(x, (5, 5), (3, 3), padding="VALID")
    elif self.pool == "adaptive":
      x = layers.adaptive_avg_pool(x, 4)
    else:
      raise ValueError(f"unknown aux_pool {self.pool!r}; choose paper or adaptive")
    x = ConvNormAct(
      128,
      1,
      norm=self.norm,
      kernel_init=self.kernel_init,
      dtype=self.dtype,
      kernels=self.kernels,
      name="conv",
    )(x, train)
    x = x.reshape((x.shape[0], -1))
    x = nn.relu(nn.Dense(1024, kernel_init=self.fc_init, dtype=self.dtype, name="fc1")(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return nn.Dense(self.num_classes, kernel_init=self.fc_init, dtype=self.dtype, name="fc2")(x)


# Table 1: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj); "pool" = 3x3/2 max-pool.
GOOGLENET_TABLE = (
  ("3a", 64, 96, 128, 16, 32, 32),
  ("3b", 128, 128, 192, 32, 96, 64),
  "pool",
  ("4a", 192, 96, 208, 16, 48, 64),
  ("4b", 160, 112, 224, 24, 64, 64),
  ("4c", 128, 128, 256, 24, 64, 64),
  ("4d", 112, 144, 288, 32, 64, 64),
  ("4e", 256, 160, 320, 32, 128, 128),
  "pool4",
  ("5a", 256, 160, 320, 32, 128, 128),
  ("5b", 384, 192, 384, 48, 128, 128),
)
AUX_AFTER = ("4a", "4d")


class GoogLeNet(nn.Module):
  """The Table 1 network. `table` lists the Inception blocks and pools (default: the paper's Table 1);
  a shorter table is a deviation meant for smoke tests (experiments/definitions.py), where it keeps
  the compile short. Aux heads follow the blocks named in AUX_AFTER (4a, 4d)."""

  NORM_DEFAULTS: ClassVar[NormSpec] = NormSpec("batch", epsilon=1e-3)  # torchvision BasicConv2d
  num_classes: int = 1000
  table: Sequence[Any] = GOOGLENET_TABLE
  norm: str | NormSpec = "none"
  lrn: bool = True
  branch5_kernel: int = 5
  pool4_kernel: int = 3
  dropout: float = 0.4
  aux_logits: bool = False
  aux_pool: str = "paper"
  aux_dropout: float = 0.7
  init_std: float | None = None
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    norm = layers.resolve_norm(self.norm, self.NORM_DEFAULTS)
    kinit = normal_or(self.init_std, he_normal)
    fc_init = normal_or(self.init_std, nn.initializers.lecun_normal())
    cna = lambda f, k, s, name: ConvNormAct(
      f, k, s, norm=norm, kernel_init=kinit, dtype=self.dtype, kernels=self.kernels, name=name
    )
    pool = lambda y, k, s: layers.max_pool_ceil(y, k, s, kernels=self.kernels)  # ceil mode
    lrn = lambda y: (
      LocalResponseNorm(size=5, alpha=1e-4 / 5, beta=0.75, k=1.0)(y) if self.lrn else y
    )
    x = cna(64, 7, 2, "conv1")(x, train)  # 112x112x64
    x = lrn(pool(x, 3, 2))  # 56x56x64
    x = cna(64, 1, 1, "conv2_reduce")(x, train)
    x = lrn(cna(192, 3, 1, "conv2")(x, train))  # 56x56x192
    x = pool(x, 3, 2)  # 28x28x192
    # Aux heads run in training; at init they are built too so eval-mode init has their params.
    run_aux = self.aux_logits and (train or self.is_initializing())
    aux = []
    for spec in self.table:
      if spec == "pool":
        x = pool(x, 3, 2)  # 14x14x480
        continue
      if spec == "pool4":
        x = pool(x, self.pool4_kernel, 2)  # 7x7x832
        continue
      name, *widths = spec
      x = InceptionBlock(
        *widths,
        branch5_kernel=self.branch5_kernel,
        norm=norm,
        kernel_init=kinit,
        dtype=self.dtype,
        kernels=self.kernels,
        name=f"inception{name}",
      )(x, train)
      if run_aux and name in AUX_AFTER:
        aux.append(
          AuxHead(
            self.num_classes,
            pool=self.aux_pool,
            dropout=self.aux_dropout,
            norm=norm,
            kernel_init=kinit,
            fc_init=fc_init,
            dtype=self.dtype,
            kernels=self.kernels,
            name=f"aux{len(aux) + 1}",
          )(x, train)
        )
    x = jnp.mean(x, axis=(1, 2))  # 7x7/1 average pool (global)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    logits = nn.Dense(self.num_classes, kernel_init=fc_init, dtype=self.dtype, name="fc")(x)
    return (logits, tuple(aux)) if self.aux_logits and train else logits


_TV = dict(
  norm="batch",
  lrn=False,
  branch5_kernel=3,
  pool4_kernel=2,
  dropout=0.2,
  aux_pool="adaptive",
  init_std=0.01,
)  # torchvision googlenet: trunc_normal(std=0.01) weights (here untruncated: +-2 = +-200 std)
_SRC = "Szegedy et al. 2015, Table 1 / Sec. 5"


@register_model("googlenet", paper_params=6_998_552, input_size=224, source=_SRC, paper_gmacs=1.58)
def googlenet(**kw) -> GoogLeNet:
  return GoogLeNet(**kw)


@register_model("googlenet_aux", paper_params=13_378_280, input_size=224, source=_SRC)
def googlenet_aux(**kw) -> GoogLeNet:
  return GoogLeNet(**{"aux_logits": True, **kw})


@register_model(
  "googlenet_bn",
  paper_params=6_624_904,
  input_size=224,
  paper_gmacs=1.50,
  source="torchvision GoogLeNet (BN, 3x3 '5x5' branch), " + _SRC,
)
def googlenet_bn(**kw) -> GoogLeNet:
  return GoogLeNet(**{**_TV, **kw})


@register_model(
  "googlenet_bn_aux",
  paper_params=13_004_888,
  input_size=224,
  source="torchvision GoogLeNet with aux heads, " + _SRC,
)
def googlenet_bn_aux(**kw) -> GoogLeNet:
  return GoogLeNet(**{**_TV, "aux_logits": True, **kw})
