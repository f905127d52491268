"""Parameter initialisation with all parameters' random bits drawn in a few batched calls.

`model.init` samples every parameter separately, and on CPU each `jax.random` draw lowers to its own
rolled threefry loop: XLA compiles ~13 kernels per parameter (DenseNet-264: ~3,400 kernels, most of
its init wait). `batch_random_bits(fn)` returns a function computing exactly `fn(*args)` -- the same
bits, so bit-identical parameters -- with each top-level `random_bits` draw replaced by a slice of
one draw per size bucket (a power of two), keys stacked:

1. trace `fn` to a jaxpr and inline its nested `jit`s (jax.random's samplers are jitted), so that
   the draws sit at the top level;
2. evaluate only the equations the draws' keys depend on (flax's fold_in chains), eagerly when they
   are constants (a constant seed), so XLA sees constant keys instead of one threefry loop each;
3. draw `random_bits(keys, 32, (bucket,))` for the stacked keys of each bucket: with JAX's
   partitionable threefry (the default since JAX 0.5) the bits of a draw depend only on the key and
   the element's row-major index, so the first n bits of a longer draw, reshaped, are the draw;
4. evaluate the jaxpr with the keys known and every draw replaced by its slice.

Draws this cannot batch (inside a scan or other sub-jaxpr, non-32-bit, another PRNG, the
non-partitionable threefry) are left as they are. tests/test_batched_init.py checks bit-equality
with `model.init` for every model family.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.extend.core import Literal
from jax.extend.core.primitives import random_bits_p


def _batchable(key: Any, bit_width: int) -> bool:
  return (
    bit_width == 32
    and jax.config.jax_threefry_partitionable
    and jnp.ndim(key) == 0
    and str(jax.random.key_impl(key)) == "threefry2x32"
  )


def _evaluate(
  eqns, env: dict[Any, Any], outvars, replaced: dict[int, Any], inline: bool = False
) -> list[Any]:
  """`jax.core.eval_jaxpr` over `eqns` from the bindings in `env` (updated in place); the outputs of
  the equations whose id() is in `replaced` are given instead of computed; `inline` evaluates the
  bodies of nested `jit`s (jax.random's samplers are jitted) equation by equation."""
  read = lambda v: v.val if isinstance(v, Literal) else env[v]
  for eqn in eqns:
    if id(eqn) in replaced:
      out = replaced[id(eqn)]
    elif inline and eqn.primitive.name in ("jit", "pjit"):
      inner = eqn.params["jaxpr"]
      env_in = dict(zip(inner.jaxpr.constvars, inner.consts)) | dict(
        zip(inner.jaxpr.invars, map(read, eqn.invars))
      )
      out = _evaluate(inner.jaxpr.eqns, env_in, inner.jaxpr.outvars, {}, inline=True)
    else:
      invals = [read(v) for v in eqn.invars]
      params = eqn.primitive.get_bind_params(eqn.params)
      subfuns, params = params if isinstance(params, tuple) else ((), params)
      with eqn.ctx.manager:
        out = eqn.primitive.bind(*subfuns, *invals, **params)
    if eqn.primitive.multiple_results:
      env.update(zip(eqn.outvars, out))
    else:
      env[eqn.outvars[0]] = out
  return [read(v) for v in outvars]


def _bucket(n: int) -> int:
  return 1 << max(n - 1, 0).bit_length()


def _key_slice(jaxpr, draws) -> list[Any]:
  """The equations the draws' keys depend on, in order."""
  needed = {eqn.invars[0] for eqn in draws if not isinstance(eqn.invars[0], Literal)}
  marked = []
  for eqn in reversed(jaxpr.eqns):
    if any(v in needed for v in eqn.outvars):
      marked.append(eqn)
      needed.update(v for v in eqn.invars if not isinstance(v, Literal))
  return marked[::-1]


def batch_random_bits(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`fn` (e.g. a closure over `model.init`) with its random draws batched; call it under `jax.jit`."""

  def batched(*args):
    flat_args, args_tree = jax.tree.flatten(args)
    closed, out_shape = jax.make_jaxpr(
      lambda *a: fn(*jax.tree.unflatten(args_tree, a)), return_shape=True
    )(*flat_args)
    # The same computation with nested jits inlined, so that the draws sit at the top level.
    # (Not `jax.disable_jit()`: under it flax's nn.scan runs as a Python loop, with other keys.)
    inputs = lambda c, a: dict(zip(c.jaxpr.constvars, c.consts)) | dict(zip(c.jaxpr.invars, a))
    closed = jax.make_jaxpr(
      lambda *a: _evaluate(
        closed.jaxpr.eqns, inputs(closed, a), closed.jaxpr.outvars, {}, inline=True
      )
    )(*flat_args)
    jaxpr = closed.jaxpr
    draws = [eqn for eqn in jaxpr.eqns if eqn.primitive is random_bits_p]
    # The keys: flax derives them from the seed by fold_in chains (each one more rolled threefry
    # loop per parameter when compiled). From a constant seed they are constants, computed here
    # eagerly (a few small cached executables); otherwise they stay traced.
    key_eqns = _key_slice(jaxpr, draws)
    env = inputs(closed, flat_args)
    with jax.ensure_compile_time_eval():
      keys = _evaluate(key_eqns, env, [eqn.invars[0] for eqn in draws], {})
    known = {
      id(eqn): (
        [env[v] for v in eqn.outvars] if eqn.primitive.multiple_results else env[eqn.outvars[0]]
      )
      for eqn in key_eqns
    }
    by_bucket: dict[int, list[tuple[Any, Any]]] = {}
    for eqn, key in zip(draws, keys):
      if _batchable(key, eqn.params["bit_width"]):
        by_bucket.setdefault(_bucket(math.prod(eqn.params["shape"])), []).append((eqn, key))
    for bucket, group in sorted(by_bucket.items()):
      bits = random_bits_p.bind(jnp.stack([key for _, key in group]), bit_width=32, shape=(bucket,))
      for row, (eqn, _) in enumerate(group):
        shape = tuple(eqn.params["shape"])
        known[id(eqn)] = bits[row, : math.prod(shape)].reshape(shape)
    outs = _evaluate(jaxpr.eqns, inputs(closed, flat_args), jaxpr.outvars, known)
    return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

  return batched
