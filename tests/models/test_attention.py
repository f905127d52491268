"""SE / CBAM excitation width (Hu et al. 2018, Sec. 3.2: C -> C/r -> C) and its config fields."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from classic_cnns.build import build_model
from classic_cnns.config import ConfigError, base_config
from classic_cnns.models import layers


@pytest.mark.parametrize(
  "channels, r, min_channels, width",
  [(256, 16, 0, 16), (16, 16, 0, 1), (64, 32, 0, 2), (16, 32, 1, 1), (16, 4, 8, 8)],
)
def test_excitation_width(channels, r, min_channels, width):
  assert layers.excitation_width(channels, r, min_channels) == width


@pytest.mark.parametrize("kind", ["se", "cbam"])
def test_no_silent_one_channel_bottleneck(kind):
  x = jnp.ones((2, 4, 4, 16))
  attn = layers.make_attention(layers.AttnSpec(kind, reduction=32))
  with pytest.raises(ValueError, match="r=32 leaves no hidden unit on 16 channels"):
    attn.init(jax.random.PRNGKey(0), x, False)
  attn = layers.make_attention(layers.AttnSpec(kind, reduction=32, min_channels=1))
  params = attn.init(jax.random.PRNGKey(0), x, False)["params"]
  assert params["fc1"]["kernel"].shape == (16, 1)


def resnet20_config(**model):
  config = base_config()
  config.model.name = "resnet20"
  for k, v in model.items():
    config.model[k] = v
  return config


def test_config_fields_reach_the_attention_spec():
  config = resnet20_config(
    attn="cbam", attn_reduction=8, attn_use_bias=False, attn_spatial_kernel=3, attn_min_channels=4
  )
  model = build_model(config)
  assert model.attn == layers.AttnSpec(
    "cbam", reduction=8, use_bias=False, spatial_kernel=3, min_channels=4
  )


def test_bad_attention_fields_are_config_errors():
  with pytest.raises(ConfigError, match="reduction must be >= 1"):
    build_model(resnet20_config(attn="se", attn_reduction=0))
  with pytest.raises(ConfigError, match="unknown attention"):
    build_model(resnet20_config(attn="eca"))
