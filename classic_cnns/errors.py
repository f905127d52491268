"""The user-facing error classes every layer may raise; the CLIs turn them into one line."""

from __future__ import annotations


class ConfigError(ValueError):
  """A config value that cannot work; the message is one line meant for the user."""
