"""The initialisers shared by the families (`classic_cnns.models.inits`)."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import numpy as np

from classic_cnns.models import inits, layers

KEY = jax.random.PRNGKey(0)


def test_he_normal_is_the_conv_norm_act_default():
  assert inits.he_normal is layers.he_normal
  assert layers.ConvNormAct(8).kernel_init is inits.he_normal


def test_he_normal_stacked_draws_each_layer_with_its_own_fan_out():
  w = np.asarray(inits.he_normal_stacked()(KEY, (4, 3, 3, 64, 32)))
  # fan_out = 3 * 3 * 32 per layer (the leading layer axis is not a fan); truncated normal std
  np.testing.assert_allclose(w.std(), math.sqrt(2.0 / (3 * 3 * 32)), rtol=0.05)
  one = np.asarray(inits.he_normal(KEY, (3, 3, 64, 32)))
  np.testing.assert_allclose(one.std(), w.std(), rtol=0.05)


def test_torch_defaults_are_uniform_with_bound_one_over_sqrt_fan_in():
  fan_in = 3 * 3 * 16
  bound = 1.0 / math.sqrt(fan_in)
  kw = inits.torch_inits(fan_in)
  w = np.asarray(kw["kernel_init"](KEY, (3, 3, 16, 256)))
  b = np.asarray(kw["bias_init"](KEY, (4096,)))
  for a in (w, b):
    assert np.abs(a).max() <= bound and np.abs(a).max() > 0.99 * bound
  assert kw["kernel_init"] is inits.torch_kernel_init


def test_normal_or_default():
  default = nn.initializers.lecun_normal()
  assert inits.normal_or(None, default) is default
  np.testing.assert_allclose(
    np.asarray(inits.normal_or(0.01, default)(KEY, (256, 256))).std(), 0.01, rtol=0.05
  )
