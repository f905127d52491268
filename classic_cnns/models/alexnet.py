"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, "ImageNet classification with deep
convolutional neural networks", Sec. 3-5, Fig. 2).

Variants (one configurable `AlexNet` module):
  alexnet                 torchvision's single-tower net: 64-192-384-256-256, conv1 padding 2,
                          224 input, adaptive average pool to 6x6, no LRN, dropout on the INPUTS
                          of FC1/FC2, PyTorch default init; 61,100,840 params (= torchvision).
  alexnet_paper           the paper: 96-256-384-384-256; conv2/4/5 split in 2 groups as on the two
                          GPUs (`feature_group_count=2`; conv3 and the FCs see both towers, Sec. 3.2);
                          227 input (conv1 11x11/4, no padding: 227 -> 55 -> 27 -> 13 -> 6); ReLU ->
                          LRN (k=2, n=5, alpha=1e-4, beta=0.75, Sec. 3.3) after conv1 and conv2;
                          overlapping 3x3/2 max pooling (Sec. 3.4) after both LRNs and conv5; dropout
                          0.5 on the OUTPUTS of the two hidden FCs (Sec. 4.2, as Caffe's bvlc_alexnet);
                          init N(0, 0.01), bias 1 in conv2/4/5 and the hidden FCs, 0 elsewhere (Sec. 5);
                          60,965,224 params.
  alexnet_paper_nogroups  same channels with full (ungrouped) convs: 62,378,344 params.

Ablation options (module fields):
  act           "relu" (paper), "tanh" or "sigmoid" (Fig. 1: ReLU vs tanh).
  lrn           LRN after conv1/conv2 (Sec. 3.3: -1.4 / -1.2 top-1 / top-5 error).
  overlap_pool  True: 3x3/2 pooling (Sec. 3.4); False: 2x2/2. At 227 both give 55 -> 27 -> 13 -> 6
                (floor(55/2) = 27, ...: the paper's "output of equivalent dimensions"), so the
                flattened FC input (6*6*256) and the parameter count do not change.
  dropout       rate in the two hidden FC layers (0 disables).
  widths / fc_features  channel widths and hidden FC width (for small test or study nets).
Deviations: the paper's two-GPU split is emulated by grouped convs on one device; the 224 vs 227
input-size discrepancy of the paper text is resolved as 227 (the only size giving 55x55).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from classic_cnns.models import layers
from classic_cnns.models.inits import torch_inits
from classic_cnns.models.layers import LocalResponseNorm, activation
from classic_cnns.models.registry import register_model

_paper_kernel_init = nn.initializers.normal(0.01)  # Sec. 5: N(0, 0.01)


class AlexNet(nn.Module):
  """conv1 11x11/4 - [LRN] - pool - conv2 5x5 - [LRN] - pool - conv3/4/5 3x3 - pool - FC x3."""

  num_classes: int = 1000
  widths: tuple[int, int, int, int, int] = (96, 256, 384, 384, 256)
  groups: tuple[int, int, int, int, int] = (1, 2, 1, 2, 2)  # conv2/4/5 split over the 2 GPUs
  conv1_padding: int = 0  # 0 with 227 input (paper); torchvision uses 2 with 224
  fc_features: int = 4096
  lrn: bool = True
  overlap_pool: bool = True
  act: str = "relu"
  dropout: float = 0.5
  dropout_before_fc: bool = False  # torchvision: dropout on FC1/FC2 inputs; paper: FC1/FC2 outputs
  adaptive_pool: bool = False  # torchvision: AdaptiveAvgPool2d(6) before the classifier
  init_scheme: str = "paper"  # "paper" (Sec. 5) or "torch" (PyTorch defaults, as torchvision)
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  def _inits(self, fan_in: int, bias_one: bool) -> dict:
    if self.init_scheme == "paper":
      return dict(
        kernel_init=_paper_kernel_init,
        bias_init=nn.initializers.ones if bias_one else nn.initializers.zeros,
      )
    if self.init_scheme == "torch":
      return torch_inits(fan_in)
    raise ValueError(f"unknown init_scheme {self.init_scheme!r}; choose paper or torch")

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    f = activation(self.act)
    window = (3, 3) if self.overlap_pool else (2, 2)
    pool = lambda y: layers.max_pool(y, window, (2, 2), kernels=self.kernels)
    # (kernel, stride, padding, LRN after, pool after, bias 1 in the paper init)
    spec = (
      (11, 4, self.conv1_padding, True, True, False),
      (5, 1, 2, True, True, True),
      (3, 1, 1, False, False, False),
      (3, 1, 1, False, False, True),
      (3, 1, 1, False, True, True),
    )
    for i, ((k, s, p, lrn_after, pool_after, bias_one), c, g) in enumerate(
      zip(spec, self.widths, self.groups)
    ):
      fan_in = k * k * x.shape[-1] // g
      x = self.kernels.Conv(
        c,
        (k, k),
        (s, s),
        padding=((p, p), (p, p)),
        feature_group_count=g,
        dtype=self.dtype,
        name=f"conv{i + 1}",
        **self._inits(fan_in, bias_one),
      )(x)
      x = f(x)
      if self.lrn and lrn_after:
        x = LocalResponseNorm(name=f"lrn{i + 1}")(x)  # Sec. 3.3: after the ReLU
      if pool_after:
        self.sow("intermediates", f"prepool{i + 1}", x)
        x = pool(x)
      self.sow("intermediates", f"layer{i + 1}", x)  # conv i+1 (+ LRN, pool) output
    if self.adaptive_pool:
      x = layers.adaptive_avg_pool(x, 6)
    x = x.reshape((x.shape[0], -1))
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train) if self.dropout > 0 else y
    for i in range(2):  # the two hidden FC layers
      if self.dropout_before_fc:
        x = drop(x)
      x = nn.Dense(
        self.fc_features, dtype=self.dtype, name=f"fc{i + 1}", **self._inits(x.shape[-1], True)
      )(x)
      x = f(x)
      if not self.dropout_before_fc:
        x = drop(x)
    return nn.Dense(
      self.num_classes, dtype=self.dtype, name="fc3", **self._inits(x.shape[-1], False)
    )(x)


@register_model(
  "alexnet",
  paper_params=61_100_840,
  input_size=224,
  paper_gmacs=0.714,
  source="torchvision AlexNet (single tower 64-192-384-256-256)",
)
def alexnet(**kw) -> AlexNet:
  cfg = dict(
    widths=(64, 192, 384, 256, 256),
    groups=(1, 1, 1, 1, 1),
    conv1_padding=2,
    lrn=False,
    dropout_before_fc=True,
    adaptive_pool=True,
    init_scheme="torch",
  )
  return AlexNet(**{**cfg, **kw})


@register_model(
  "alexnet_paper",
  paper_params=60_965_224,
  input_size=227,
  paper_gmacs=0.72,
  source="Krizhevsky et al. 2012, Sec. 3.5, Fig. 2 (two GPU towers as groups)",
)
def alexnet_paper(**kw) -> AlexNet:
  return AlexNet(**kw)


@register_model(
  "alexnet_paper_nogroups",
  paper_params=62_378_344,
  input_size=227,
  paper_gmacs=1.14,
  source="Krizhevsky et al. 2012, Fig. 2 channels, ungrouped convs",
)
def alexnet_paper_nogroups(**kw) -> AlexNet:
  return AlexNet(**{"groups": (1, 1, 1, 1, 1), **kw})
