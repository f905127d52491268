"""Initialisers used by more than one family, written once. A family's own paper init stays in its
file (LeNet-5's Appendix C uniform, AlexNet's Sec. 5 N(0, 0.01), Inception-v3's normal(0.1)).

  he_normal          He et al. 2015, Sec. 2.2: N(0, 2 / fan_out), the fan-out mode of torchvision's
                     ResNet / VGG / DenseNet convs; `layers.ConvNormAct`'s default (the same object).
  he_normal_stacked  the same for kernels stacked on a leading layer axis (fans per layer).
  torch_kernel_init  PyTorch's default nn.Conv2d / nn.Linear weight: kaiming_uniform(a=sqrt(5)),
                     i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  torch_bias_init    PyTorch's default bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in of the layer.
  torch_inits        both, as the `kernel_init` / `bias_init` keywords of `nn.Conv` / `nn.Dense`.
  normal_or          N(0, std) for a family's `init_std` option, or the family's default when None.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.models.layers import he_normal

Initializer = nn.initializers.Initializer

__all__ = [
  "he_normal",
  "he_normal_stacked",
  "normal_or",
  "torch_bias_init",
  "torch_inits",
  "torch_kernel_init",
]


def he_normal_stacked(layer_axes: tuple[int, ...] = (0,)) -> Initializer:
  """`he_normal` for a kernel with leading layer axes `layer_axes` (e.g. [layer, kh, kw, in, out]):
  each layer's slice drawn with its own fan-out."""
  return nn.initializers.variance_scaling(2.0, "fan_out", "normal", batch_axis=layer_axes)


# PyTorch's default weight init kaiming_uniform(a=sqrt(5)): gain^2 = 2 / (1 + 5), bound =
# sqrt(3 * gain^2 / fan_in) = 1 / sqrt(fan_in), i.e. variance 1 / (3 fan_in).
torch_kernel_init: Initializer = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> Initializer:
  """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (fan_in of the layer's weight:
  in_features, or in_channels / groups * kh * kw)."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def torch_inits(fan_in: int) -> dict[str, Initializer]:
  """PyTorch's default nn.Conv2d / nn.Linear init as `nn.Conv` / `nn.Dense` keywords."""
  return {"kernel_init": torch_kernel_init, "bias_init": torch_bias_init(fan_in)}


def normal_or(std: float | None, default: Initializer) -> Initializer:
  """N(0, std), or `default` when std is None."""
  return default if std is None else nn.initializers.normal(std)
