"""Platform backends: which implementation of the models' primitive ops (`models.layers.Kernels`) a
run computes with, and the compile options that go with it. Chosen by `config.kernels`:

  portable  plain Flax / `lax` ops with autodiff's gradients; every platform (GPU, TPU, CPU).
  cpu       the XLA:CPU backend (`backends/cpu/`): oneDNN convolutions, hand-written gradients for
            the norms, max-pool and convolutions in loops, batched parameter sampling, XLA flags.
            Same values as portable to float32 rounding; CPU-only runs.
  auto      cpu on a CPU-only run, portable on GPU/TPU.

Models never import this package: the trainer hands `Backend.kernels` to
`create_model(name, kernels=...)`, the models' explicit module field.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import flax.linen as nn
import jax

from classic_cnns import machine
from classic_cnns.models.layers import PORTABLE, Kernels

KERNELS = ("auto", "portable", "cpu")


class BackendError(ValueError):
  """A backend that cannot run here; the message is one line meant for the user."""


@dataclasses.dataclass(frozen=True)
class Backend:
  name: str  # "portable" | "cpu"
  why: str  # for the startup line
  kernels: Kernels = PORTABLE
  cpu_convs: str = ""  # the CPU backend's conv policy (backends.cpu.ops.CONV_POLICIES)

  def describe(self) -> str:
    return f"kernels {self.name} ({self.why})"

  def prepare(
    self, build_model: Callable[[Kernels], nn.Module], batch_shape: tuple[int, ...]
  ) -> Backend:
    """The backend with its kernels ready for steps on batches of `batch_shape`: for the CPU
    backend's `measured` conv policy, the per-conv choices timed by this call (a pre-pass, before
    any trace)."""
    if self.name != "cpu":
      return self
    from classic_cnns.backends import cpu

    return dataclasses.replace(
      self, kernels=cpu.prepare_kernels(self.kernels, self.cpu_convs, build_model, batch_shape)
    )

  def compile_init(self, init_fn: Callable[[], Any], out_shardings: Any) -> Callable[[], Any]:
    """`init_fn` (no arguments: parameter initialisation) jitted with `out_shardings`, compiled as
    this backend compiles initialisations (the CPU backend: batched sampling, XLA level 1)."""
    if self.name == "cpu":
      from classic_cnns.backends import cpu

      return cpu.compile_init(init_fn, out_shardings)
    return jax.jit(init_fn, out_shardings=out_shardings)


def default_xla_flags(kernels: str) -> str:
  """XLA flags the backend `kernels` (a config.kernels value) wants set before JAX starts its
  backends ("" for none). Only XLA:CPU flags: harmless where another platform computes."""
  if kernels in ("auto", "cpu"):
    from classic_cnns.backends import cpu

    return cpu.XLA_FLAGS
  return ""


def select(
  kernels: str,
  cpu_convs: str = "auto",
  *,
  platform: str | None = None,
  num_devices: int | None = None,
) -> Backend:
  """config.kernels (+ config.cpu_convs) -> the Backend of this run; BackendError where it cannot run."""
  if kernels not in KERNELS:
    raise BackendError(f"config.kernels={kernels!r} is not one of {', '.join(KERNELS)}")
  platform = platform or jax.default_backend()
  num_devices = num_devices or jax.device_count()
  if kernels == "portable":
    return Backend("portable", "config.kernels=portable")
  if platform != "cpu":
    if kernels == "cpu":
      raise BackendError(
        f"config.kernels=cpu runs on CPU only; this run has {num_devices} {platform} "
        f"device(s) (use --config.kernels=auto or portable)"
      )
    return Backend("portable", f"auto: {num_devices} {platform} device(s)")
  from classic_cnns.backends import cpu

  policy, why = cpu.conv_policy(cpu_convs, num_devices, required=kernels == "cpu")
  lead = "config.kernels=cpu" if kernels == "cpu" else "auto: CPU-only run"
  return Backend("cpu", f"{lead}; {why}", cpu.make_kernels(policy), cpu_convs=policy)


PORTABLE_BACKEND = Backend("portable", "plain Flax / lax ops")


COMPILATION_CACHE_MAX_BYTES = 4 * 2**30


def use_compilation_cache(setting: str) -> str | None:
  """config.compilation_cache_dir -> the persistent XLA compilation cache directory this process
  uses from this call on (None: off). Programs that took >= 1 s to compile are stored there (JAX's
  persistent cache, keyed by the program, the XLA flags, the devices and the jax version), so a
  rerun or a resumed run skips the first-step compile (BENCHMARKS.md "First-step wait"). JAX sets
  its cache up at the first compile of the process: call this before anything is compiled. The
  directory is trusted (JAX runs what it loads from there): keep it private to you."""
  if not setting:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  if setting == "auto":
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(machine.cache_root(), "xla")
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
      jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
  else:
    path = os.path.abspath(os.path.expanduser(setting))
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  return path
