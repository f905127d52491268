"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-based learning applied to document
recognition", Sec. II.B, Fig. 2, Table I).

Two variants:
  lenet5        the "modern" LeNet-5 used in textbooks (d2l): dense C3, parameter-free average
                pooling, Dense(120->84->10), sigmoid activations; 32x32 input; 61,706 params.
  lenet5_lecun  the 1998 network: sparse C3 (Table I), trainable subsampling S2/S4 (2x2 sum x
                coefficient + bias, then squashing), scaled tanh f(a) = 1.7159 tanh(2a/3)
                (Appendix A), F6 = 84, fixed Euclidean RBF output; 60,000 trainable params.
                Deviations, by necessity: the RBF centres are 7x12 +-1 digit bitmaps drawn here in
                the spirit of Fig. 3 (the paper's exact bitmaps are not published as data); the
                loss is softmax cross-entropy on logits = -RBF distance instead of the paper's MAP
                criterion (Sec. II.C, eq. 9), so the standard trainer applies.
Both take 32x32 inputs: MNIST's 28x28 digits are zero-padded to 32x32 (Sec. II.B) by the data
pipeline (`config.data.pad_to = 32`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.models import layers
from classic_cnns.models.layers import activation
from classic_cnns.models.registry import register_model


class LeNet5(nn.Module):
  """Modern LeNet-5: conv 6@5x5 - avgpool - conv 16@5x5 - avgpool - conv 120@5x5 - 84 - 10."""

  num_classes: int = 10
  act: str = "sigmoid"
  dtype: Any = None
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = activation(self.act)
    conv = lambda n, name: self.kernels.Conv(
      n, (5, 5), padding="VALID", dtype=self.dtype, name=name
    )
    x = f(conv(6, "c1")(x))  # 28x28x6
    x = nn.avg_pool(x, (2, 2), (2, 2))  # 14x14x6
    x = f(conv(16, "c3")(x))  # 10x10x16
    x = nn.avg_pool(x, (2, 2), (2, 2))  # 5x5x16
    x = f(conv(120, "c5")(x))  # 1x1x120
    x = x.reshape((x.shape[0], -1))
    x = f(nn.Dense(84, dtype=self.dtype, name="f6")(x))
    return nn.Dense(self.num_classes, dtype=self.dtype, name="output")(x)


# Table I: which S2 feature maps (rows) each C3 map (columns) combines.
C3_TABLE = (
  (0, 1, 2),
  (1, 2, 3),
  (2, 3, 4),
  (3, 4, 5),
  (4, 5, 0),
  (5, 0, 1),
  (0, 1, 2, 3),
  (1, 2, 3, 4),
  (2, 3, 4, 5),
  (3, 4, 5, 0),
  (4, 5, 0, 1),
  (5, 0, 1, 2),
  (0, 1, 3, 4),
  (1, 2, 4, 5),
  (0, 2, 3, 5),
  (0, 1, 2, 3, 4, 5),
)

# 7x12 output-code bitmaps for the digits (Fig. 3 style): '#' = +1, '.' = -1.
DIGIT_BITMAPS = (
  (
    ".#####.",
    "##...##",
    "##...##",
    "##..###",
    "##.####",
    "####.##",
    "###..##",
    "##...##",
    "##...##",
    "##...##",
    ".#####.",
    ".......",
  ),
  (
    "...##..",
    "..###..",
    ".####..",
    "...##..",
    "...##..",
    "...##..",
    "...##..",
    "...##..",
    "...##..",
    "...##..",
    ".######",
    ".......",
  ),
  (
    ".#####.",
    "##...##",
    ".....##",
    ".....##",
    "....##.",
    "...##..",
    "..##...",
    ".##....",
    "##.....",
    "##...##",
    "#######",
    ".......",
  ),
  (
    ".#####.",
    "##...##",
    ".....##",
    ".....##",
    "..####.",
    ".....##",
    ".....##",
    ".....##",
    ".....##",
    "##...##",
    ".#####.",
    ".......",
  ),
  (
    "....##.",
    "...###.",
    "..####.",
    ".##.##.",
    "##..##.",
    "#######",
    "....##.",
    "....##.",
    "....##.",
    "....##.",
    "...####",
    ".......",
  ),
  (
    "#######",
    "##.....",
    "##.....",
    "##.....",
    "######.",
    ".....##",
    ".....##",
    ".....##",
    ".....##",
    "##...##",
    ".#####.",
    ".......",
  ),
  (
    "..###..",
    ".##....",
    "##.....",
    "##.....",
    "######.",
    "##...##",
    "##...##",
    "##...##",
    "##...##",
    "##...##",
    ".#####.",
    ".......",
  ),
  (
    "#######",
    "##...##",
    ".....##",
    "....##.",
    "...##..",
    "..##...",
    "..##...",
    "..##...",
    "..##...",
    "..##...",
    "..##...",
    ".......",
  ),
  (
    ".#####.",
    "##...##",
    "##...##",
    "##...##",
    ".#####.",
    "##...##",
    "##...##",
    "##...##",
    "##...##",
    "##...##",
    ".#####.",
    ".......",
  ),
  (
    ".#####.",
    "##...##",
    "##...##",
    "##...##",
    "##...##",
    ".######",
    ".....##",
    ".....##",
    ".....##",
    "....##.",
    ".####..",
    ".......",
  ),
)


def rbf_centres(num_classes: int) -> np.ndarray:
  """[num_classes, 84] fixed +-1 centres; classes beyond 10 get fixed pseudo-random codes."""
  codes = [
    np.array([[1.0 if ch == "#" else -1.0 for ch in row] for row in bm]).reshape(-1)
    for bm in DIGIT_BITMAPS[:num_classes]
  ]
  rng = np.random.RandomState(1998)
  codes += [rng.choice([-1.0, 1.0], 84) for _ in range(num_classes - len(codes))]
  return np.stack(codes).astype(np.float32)


def _lecun_uniform(key, shape, dtype=jnp.float32):
  """Appendix C: weights uniform in [-2.4/F_i, 2.4/F_i], F_i = fan-in of the unit."""
  fan_in = int(np.prod(shape[:-1]))
  return jax.random.uniform(key, shape, dtype, -2.4 / fan_in, 2.4 / fan_in)


class Subsampling(nn.Module):
  """S2/S4: sum of each 2x2 block x one trainable coefficient per map + one bias per map."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    coef = self.param("coefficient", nn.initializers.constant(0.25), (c,))
    bias = self.param("bias", nn.initializers.zeros, (c,))
    return nn.avg_pool(x, (2, 2), (2, 2)) * 4.0 * coef + bias


class SparseC3(nn.Module):
  """C3: 16 5x5 maps, each over the subset of S2 maps given by Table I (1,516 params)."""

  table: tuple = C3_TABLE
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x):
    pairs = [(i, o) for o, ins in enumerate(self.table) for i in ins]
    n_in, n_out = x.shape[-1], len(self.table)
    packed = self.param("kernel", lambda k, s: _lecun_uniform(k, s), (5, 5, len(pairs)))
    bias = self.param("bias", nn.initializers.zeros, (n_out,))
    ins, outs = np.array(pairs).T
    kernel = jnp.zeros((5, 5, n_in, n_out), packed.dtype).at[:, :, ins, outs].set(packed)
    x, kernel = nn.dtypes.promote_dtype(x, kernel, dtype=None)
    y = self.kernels.conv(x, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return y + bias


class LeNet5LeCun(nn.Module):
  """The 1998 LeNet-5: C1 - S2 - C3 (sparse) - S4 - C5 - F6 - RBF output."""

  num_classes: int = 10
  act: str = "scaled_tanh"
  kernels: layers.Kernels = layers.PORTABLE

  @nn.compact
  def __call__(self, x, train: bool = False):
    f = activation(self.act)
    conv = lambda n, name: self.kernels.Conv(
      n, (5, 5), padding="VALID", kernel_init=_lecun_uniform, name=name
    )
    x = f(conv(6, "c1")(x))
    x = f(Subsampling(name="s2")(x))
    x = f(SparseC3(kernels=self.kernels, name="c3")(x))
    x = f(Subsampling(name="s4")(x))
    x = f(conv(120, "c5")(x)).reshape((x.shape[0], -1))
    x = f(nn.Dense(84, kernel_init=_lecun_uniform, name="f6")(x))
    # Sec. II.B: y_i = sum_j (x_j - w_ij)^2 with fixed w; lower = better, so logits = -y.
    centres = jnp.asarray(rbf_centres(self.num_classes))
    dist = jnp.sum(jnp.square(x[:, None, :] - centres[None]), axis=-1)
    return -dist


@register_model(
  "lenet5",
  paper_params=61_706,
  input_size=32,
  in_channels=1,
  num_classes=10,
  source="LeCun et al. 1998 as in d2l.ai (dense C3, avg pool, sigmoid)",
)
def lenet5(**kw) -> LeNet5:
  return LeNet5(**kw)


@register_model(
  "lenet5_lecun",
  paper_params=60_000,
  input_size=32,
  in_channels=1,
  num_classes=10,
  source="LeCun et al. 1998, Sec. II.B: '60,000 trainable parameters'",
)
def lenet5_lecun(**kw) -> LeNet5LeCun:
  return LeNet5LeCun(**kw)
