"""The XLA:CPU backend: everything that exists for training speed on a CPU, in one package.

- `ops.py`: the `Kernels` implementations -- oneDNN convolutions (`onednn.py` + `onednn_conv.cc`,
  XLA FFI, built on first use with g++ against the system's oneDNN), the conv policy per geometry
  (`autotune.py` times oneDNN against XLA in a pre-pass), custom gradients for BatchNorm, GroupNorm,
  max-pool and convolutions inside loops.
- `batched_init.py`: parameter sampling in a few batched draws (compile time), bit-identical.
- `XLA_FLAGS`: the XLA:CPU flags the CLIs set before JAX starts (when the user set none).
Selected by `config.kernels=cpu` (or `auto` on a CPU-only run) through `classic_cnns.backends`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from classic_cnns.backends.cpu import ops
from classic_cnns.models.layers import Kernels

# XLA:CPU: YNNPACK for matrix products only: convolutions stay on XLA's Eigen path (1.5-4x faster per
# conv than YNNPACK's on this machine class), while large dots keep YNNPACK (with no YNN fusion at all,
# VGG-11's FC input gradient ran 3-5x slower: BENCHMARKS.md, CPU section).
XLA_FLAGS = "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"

# XLA options for compiling the parameter initialisation only: level 1 compiles it 2-5x faster than
# LLVM's -O2 with bit-identical parameters (BENCHMARKS.md, first-step wait).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}

CONV_CHOICES = ("auto",) + ops.CONV_POLICIES


def conv_policy(wanted: str, num_devices: int, required: bool) -> tuple[str, str]:
  """config.cpu_convs -> (policy, why). `auto`: `mixed` (oneDNN for every float32 conv, except wide
  spatial convs on a CPU without AVX-512) where oneDNN builds and the run has one device, else `xla`.
  oneDNN that cannot work where it is asked for (`required`: config.kernels=cpu, or an explicit
  policy) raises BackendError; `auto` under config.kernels=auto falls back to XLA's convolutions."""
  from classic_cnns.backends import BackendError
  from classic_cnns.backends.cpu import onednn

  if wanted not in CONV_CHOICES:
    raise BackendError(f"config.cpu_convs={wanted!r} is not one of {', '.join(CONV_CHOICES)}")
  if wanted == "xla":
    return "xla", "convs on XLA (config.cpu_convs=xla)"
  if num_devices != 1:
    if wanted != "auto":
      raise BackendError(
        f"config.cpu_convs={wanted} runs on one CPU device; this run has {num_devices} "
        f"(use auto or xla)"
      )
    return "xla", f"convs on XLA ({num_devices} devices)"
  ok, reason = onednn.available()
  if not ok:
    if required or wanted != "auto":
      raise BackendError(
        f"the CPU backend needs oneDNN: {reason} (or use --config.kernels=portable)"
      )
    return "xla", f"convs on XLA: oneDNN unavailable, {reason}"
  if wanted == "measured":
    return "measured", "float32 convs on oneDNN or XLA per pass, as timed on this machine"
  if wanted == "onednn" or onednn.cpu_has_avx512():
    return ("onednn" if wanted == "onednn" else "mixed"), "float32 convs on oneDNN"
  return "mixed", (
    f"float32 convs on oneDNN, those with a kernel > 1x1 and >= {ops.MIXED_XLA_MIN_CHANNELS} "
    f"input and output channels on XLA (no AVX-512 here)"
  )


def make_kernels(policy: str, table: dict[str, frozenset[str]] | None = None) -> Kernels:
  """The CPU `Kernels` for a conv policy (ops.CONV_POLICIES; `table` for `measured`)."""
  return Kernels(
    name=f"cpu:{policy}",
    conv=ops.make_conv(policy, table),
    loop_conv=ops.make_loop_conv(policy != "xla"),
    max_pool=ops.max_pool,
    batch_norm_train=ops.batch_norm_train,
    group_norm=ops.group_norm,
  )


def prepare_kernels(
  kernels: Kernels,
  policy: str,
  build_model: Callable[[Kernels], nn.Module],
  batch_shape: tuple[int, ...],
) -> Kernels:
  """`kernels`, or for the `measured` policy new kernels with every conv geometry of a train-mode
  forward pass on `batch_shape` timed by this call (autotune.py), before any step is traced."""
  if policy != "measured":
    return kernels
  from classic_cnns.backends.cpu import autotune

  def forward(conv):
    model = build_model(dataclasses.replace(kernels, conv=conv))
    x = jnp.zeros(batch_shape, jnp.float32)
    rngs = {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}
    variables = model.init(rngs, x, train=False)
    return model.apply(variables, x, train=True, rngs=rngs, mutable=["batch_stats"])

  table = autotune.measure_table(autotune.conv_geometries(forward))
  return make_kernels("measured", table)


def compile_init(init_fn: Callable[[], Any], out_shardings: Any) -> Callable[[], Any]:
  """`init_fn` with its random draws batched (`batched_init`: ~13 XLA kernels per parameter become a
  few per size bucket; bit-identical values) and compiled at XLA level 1 (INIT_COMPILER_OPTIONS)."""
  from classic_cnns.backends.cpu.batched_init import batch_random_bits

  lowered = jax.jit(batch_random_bits(init_fn), out_shardings=out_shardings).lower()
  return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)
