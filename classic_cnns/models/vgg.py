"""VGG (Simonyan & Zisserman 2015, "Very deep convolutional networks for large-scale image
recognition", Table 1 configurations A-E, Sec. 2-3).

Five stages of 3x3 convs (stride 1, padding 1) + ReLU, each followed by 2x2/2 max pooling, then
FC-4096 - FC-4096 - FC-classes with dropout 0.5 after FC1 and FC2 (Sec. 3.1). 224 input.
  vgg11 (A), vgg13 (B), vgg16c (C: a 1x1 conv appended to each of the last three stages),
  vgg16 (D), vgg19 (E); vgg11_lrn (A-LRN: LRN after the first conv, params as A);
  vgg13_5x5 (B with each pair of 3x3 convs replaced by one 5x5, Sec. 4.1 / Table 3 text);
  *_bn: BatchNorm after every conv (torchvision's vgg*_bn; not in the paper).

Options:
  dense   Sec. 3.2 dense evaluation: FC1 becomes a 7x7 conv and FC2/FC3 1x1 convs with the SAME
          weights (the Dense kernels reshaped), applied to an input of any size >= 224; the class
          score map is spatially averaged. A field, or an argument of `__call__` that overrides it.
          (The paper also averages with the horizontally flipped image; that is the evaluator's job.)
  widths, fc_features   stage widths and FC width (to build narrow study / test nets).
  norm    "none" (paper) or any `layers.make_norm` kind.
  conv_bias  convs keep their bias even before a norm, as torchvision's vgg*_bn (this is what
          its published counts include); set False to drop it (the shared convention elsewhere).
Deviations: in the FC path the stage-5 map is average-pooled to 7x7 (torchvision's
AdaptiveAvgPool2d; the identity at 224) so that non-224 inputs still run; init follows
torchvision (He fan-out normal for convs, N(0, 0.01) for FCs, zero biases) rather than the
paper's "train A, then initialise the deeper nets from it" (Sec. 3.1).

Derived counts for the BN variants not in the reference table: BN adds a scale and a bias per
conv channel and (with torchvision's conv biases kept) removes nothing, so
  vgg13_bn  = 133,047,848 + 2 * (2*64 + 2*128 + 2*256 + 4*512)         = 133,053,736
  vgg16c_bn = 133,638,952 + 2 * (2*64 + 2*128 + 3*256 + 6*512)         = 133,647,400
(the same rule reproduces torchvision's vgg11_bn / vgg16_bn / vgg19_bn counts exactly;
vgg13_bn also equals torchvision's published 133,053,736).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.models import layers
from classic_cnns.models.inits import he_normal
from classic_cnns.models.layers import LocalResponseNorm, NormSpec, make_norm
from classic_cnns.models.registry import register_model

# Kernel sizes per stage (Table 1); the channel widths come from `widths`.
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
  "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
  "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
  "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
  "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
  "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
  "B5": ((5,), (5,), (5,), (5,), (5,)),
}


class FCConv(nn.Module):
  """A fully connected layer that can also run as a convolution (Sec. 3.2).

  Parameters are those of `nn.Dense` over a flattened `window x window x C` input (HWC order,
  as `x.reshape(B, -1)` of an NHWC map): kernel [window*window*C, features], bias [features].
  `dense=False`: x is [B, window*window*C] -> matmul. `dense=True`: x is [B, H, W, C] with
  H, W >= window -> VALID convolution with the kernel reshaped to [window, window, C, features].
  """

  features: int
  window: int = 1
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, dense: bool) -> jax.Array:
    cin = x.shape[-1] if dense else x.shape[-1] // (self.window * self.window)
    kernel = self.param(
      "kernel", nn.initializers.normal(0.01), (self.window * self.window * cin, self.features)
    )
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    if dense:
      k = kernel.reshape(self.window, self.window, cin, self.features)
      y = self.kernels.conv(x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      y = x @ kernel
    return y + bias


class VGG(nn.Module):
  """Configurable VGG: `stages` gives the conv kernel sizes of each of the 5 stages."""

  stages: tuple[tuple[int, ...], ...] = CONFIGS["D"]
  num_classes: int = 1000
  widths: tuple[int, ...] = (64, 128, 256, 512, 512)
  fc_features: int = 4096
  dropout: float = 0.5
  norm: str | NormSpec = "none"
  conv_bias: bool = True
  lrn: bool = False  # A-LRN: LRN after the first conv layer
  dense: bool = False
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, dense: bool | None = None) -> jax.Array:
    dense = self.dense if dense is None else dense
    n = 0
    for s, (sizes, c) in enumerate(zip(self.stages, self.widths)):
      for k in sizes:
        n += 1
        x = self.kernels.Conv(
          c,
          (k, k),
          padding=layers.pad_same(k),
          use_bias=self.conv_bias,
          kernel_init=he_normal,
          dtype=self.dtype,
          name=f"conv{n}",
        )(x)
        x = make_norm(self.norm, dtype=self.dtype, kernels=self.kernels, name=f"norm{n}")(x, train)
        x = nn.relu(x)
        if self.lrn and n == 1:
          x = LocalResponseNorm(name="lrn")(x)
      x = layers.max_pool(x, (2, 2), (2, 2), kernels=self.kernels)
      self.sow("intermediates", f"stage{s + 1}", x)
    if dense:
      if min(x.shape[1:3]) < 7:
        raise ValueError(
          f"dense evaluation needs an input >= 224 (stage-5 map {x.shape[1:3]} < 7x7)"
        )
    else:
      x = layers.adaptive_avg_pool(x, 7).reshape((x.shape[0], -1))
    for i in range(2):
      x = FCConv(
        self.fc_features,
        window=7 if i == 0 else 1,
        dtype=self.dtype,
        kernels=self.kernels,
        name=f"fc{i + 1}",
      )(x, dense)
      x = nn.Dropout(self.dropout)(nn.relu(x), deterministic=not train)
    x = FCConv(self.num_classes, dtype=self.dtype, kernels=self.kernels, name="fc3")(x, dense)
    if dense:  # class score map -> spatial average (Sec. 3.2)
      self.sow("intermediates", "score_map", x)
      x = jnp.mean(x, axis=(1, 2))
    return x


# --------------------------------------------------------------------------- variants (Table 1)
_T1 = "Simonyan & Zisserman 2015, Table 1 config "
_TV = " + BatchNorm after each conv (torchvision vgg*_bn)"
_DERIVED = "; derived, see module docstring"


@register_model(
  "vgg11", paper_params=132_863_336, paper_gmacs=7.61, source=_T1 + "A", input_size=224
)
def vgg11(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["A"], **kw})


@register_model(
  "vgg13", paper_params=133_047_848, paper_gmacs=11.31, source=_T1 + "B", input_size=224
)
def vgg13(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["B"], **kw})


@register_model(
  "vgg16c",
  paper_params=133_638_952,
  paper_gmacs=11.77,
  source=_T1 + "C (1x1 convs in stages 3-5)",
  input_size=224,
)
def vgg16c(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["C"], **kw})


@register_model(
  "vgg16", paper_params=138_357_544, paper_gmacs=15.47, source=_T1 + "D", input_size=224
)
def vgg16(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["D"], **kw})


@register_model(
  "vgg19", paper_params=143_667_240, paper_gmacs=19.63, source=_T1 + "E", input_size=224
)
def vgg19(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["E"], **kw})


@register_model("vgg11_lrn", paper_params=132_863_336, source=_T1 + "A-LRN", input_size=224)
def vgg11_lrn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["A"], "lrn": True, **kw})


@register_model(
  "vgg13_5x5",
  paper_params=134_503_528,
  paper_gmacs=9.36,
  source="Simonyan & Zisserman 2015, Sec. 4.1: B with 5x5 convs",
  input_size=224,
)
def vgg13_5x5(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["B5"], **kw})


@register_model("vgg11_bn", paper_params=132_868_840, source=_T1 + "A" + _TV, input_size=224)
def vgg11_bn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["A"], "norm": "batch", **kw})


@register_model(
  "vgg13_bn", paper_params=133_053_736, source=_T1 + "B" + _TV + _DERIVED, input_size=224
)
def vgg13_bn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["B"], "norm": "batch", **kw})


@register_model(
  "vgg16c_bn", paper_params=133_647_400, source=_T1 + "C" + _TV + _DERIVED, input_size=224
)
def vgg16c_bn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["C"], "norm": "batch", **kw})


@register_model("vgg16_bn", paper_params=138_365_992, source=_T1 + "D" + _TV, input_size=224)
def vgg16_bn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["D"], "norm": "batch", **kw})


@register_model("vgg19_bn", paper_params=143_678_248, source=_T1 + "E" + _TV, input_size=224)
def vgg19_bn(**kw) -> VGG:
  return VGG(**{"stages": CONFIGS["E"], "norm": "batch", **kw})
