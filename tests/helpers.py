"""Helpers shared by the tests outside tests/models."""

from __future__ import annotations

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def with_devices(n: int) -> dict[str, str]:
  """This process's environment for a subprocess with n simulated CPU devices: its XLA_FLAGS (the
  project's defaults, the tests' optimisation level) plus the device count."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
  return {**os.environ, "XLA_FLAGS": flags}


def load_config_module(filename: str):
  """The module of configs/<filename> (a paper setup: get_config(arg) and its docstring)."""
  path = os.path.join(REPO, "configs", filename)
  spec = importlib.util.spec_from_file_location(f"_config_{filename[:-3]}", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def lenet_config(**overrides):
  """configs/lenet5_mnist.py (the main job) with dotted overrides ("optimizer.lr": 0.1), validated."""
  import jax
  from classic_cnns.config import validate_config

  config = load_config_module("lenet5_mnist.py").get_config()
  config.update_from_flattened_dict(overrides)
  validate_config(config, jax.device_count())
  return config
