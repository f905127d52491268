"""Device mesh and shardings for data-parallel training under one global `jax.jit`.

Parameters and optimizer state are replicated (`P()`); every batch is split along its first
axis over the mesh axis "data" (`P("data")`). With several processes (multi-host), each process
feeds only its own slice of the global batch (`jax.make_array_from_process_local_data`).
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def initialize_distributed(
  coordinator_address: str | None = None,
  num_processes: int | None = None,
  process_id: int | None = None,
) -> None:
  """`jax.distributed.initialize` from flags (or JAX's cluster auto-detection when
  JAX_COORDINATOR_ADDRESS etc. are set). CPU processes talk through gloo collectives."""
  import os

  explicit = coordinator_address is not None
  if not explicit and "JAX_COORDINATOR_ADDRESS" not in os.environ:
    return  # single process
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address, num_processes, process_id)


def make_mesh(devices=None) -> Mesh:
  """A 1-D mesh over `devices` (default: every device of every process)."""
  # Auto axes: shardings are given at jit boundaries and propagated by XLA (GSPMD).
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), (jax.sharding.AxisType.Auto,))
  return Mesh(np.array(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def process_slice(global_batch: int) -> slice:
  """This process's contiguous slice of a global batch (devices are ordered by process)."""
  n, p = jax.process_count(), jax.process_index()
  per = global_batch // n
  return slice(p * per, (p + 1) * per)


def to_global(local: np.ndarray, mesh: Mesh, global_batch: int) -> jax.Array:
  """Assembles per-process local rows into one global array sharded over the batch axis."""
  return jax.make_array_from_process_local_data(
    batch_sharded(mesh), local, (global_batch,) + local.shape[1:]
  )
