"""Helpers shared by the tests outside tests/models."""
from __future__ import annotations

import os


def with_devices(n: int) -> dict[str, str]:
  """Environment for a subprocess with n simulated CPU devices: this process's XLA_FLAGS (the
  project's defaults, the tests' optimisation level) plus the device count."""
  return {"XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()}
