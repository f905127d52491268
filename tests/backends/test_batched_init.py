"""classic_cnns.backends.cpu.batched_init: the batched-draw init gives bit-identical variables to
`model.init` for every kind of initializer the zoo uses, and really batches (one draw per size
bucket, keys constant)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jax.extend.core import Literal
from jax.extend.core.primitives import random_bits_p

from classic_cnns import backends, parallel
from classic_cnns import build
from classic_cnns.backends import cpu
from classic_cnns.backends.cpu.batched_init import batch_random_bits
from classic_cnns.models import create_model, model_info

# One model per initializer kind: he_normal (variance scaling, normal), PyTorch-style uniform weights
# and biases (AlexNet, ResNet's torch head), normal(std) (AlexNet paper, NiN; Inception-v3 uses the same
# kind and is left out for time: its init compiles for ~40 s on 2 cores), LeCun normal = truncated
# normal (GoogLeNet's auxiliary heads), LeNet-5's uniform + constants, and draws inside scans (ResNet
# scan_blocks, DenseNet scan_layers).
CASES = [
  ("lenet5", 32, {}),
  ("lenet5_lecun", 32, {}),
  ("alexnet", 67, {"num_classes": 10}),
  ("alexnet_paper", 67, {"num_classes": 10}),
  ("nin_cifar", 32, {}),
  # the stem and the two blocks the aux heads read (4a, 4d), narrow: the full net's init compiles for ~30 s
  (
    "googlenet_aux",
    112,
    {"num_classes": 10, "table": ("pool", ("4a", 8, 8, 8, 4, 4, 4), ("4d", 8, 8, 8, 4, 4, 4))},
  ),
  ("resnet20", 32, {}),
  ("resnet20", 32, {"scan_blocks": True}),
  ("cbam_resnet20", 32, {}),
  ("densenet40_k12", 32, {}),
  ("densenet40_k12", 32, {"scan_layers": True}),
]


def _init_fn(name, side, overrides):
  model = create_model(name, **overrides)
  x = jnp.zeros((1, side, side, model_info(name).in_channels), jnp.float32)
  return lambda: model.init(
    {"params": jax.random.PRNGKey(3), "dropout": jax.random.PRNGKey(4)}, x, train=False
  )


@pytest.mark.parametrize(
  "name,side,overrides", CASES, ids=[f"{n}-{'-'.join(o) or 'default'}" for n, _, o in CASES]
)
def test_same_variables_as_model_init(name, side, overrides):
  init = _init_fn(name, side, overrides)
  opts = cpu.INIT_COMPILER_OPTIONS  # both sides compiled alike: equal bits, not just equal maths
  batched = jax.jit(batch_random_bits(init)).lower().compile(compiler_options=opts)()
  plain = jax.jit(init).lower().compile(compiler_options=opts)()
  assert jax.tree.structure(batched) == jax.tree.structure(plain)
  for path, a, b in zip(
    jax.tree_util.tree_leaves_with_path(batched), jax.tree.leaves(batched), jax.tree.leaves(plain)
  ):
    np.testing.assert_array_equal(
      np.asarray(a), np.asarray(b), err_msg=jax.tree_util.keystr(path[0])
    )


def _ancestors(jaxpr, eqns) -> list:
  """The equations of `jaxpr` that the first inputs (the keys) of `eqns` depend on."""
  needed = {eqn.invars[0] for eqn in eqns} - set(jaxpr.constvars) - set(jaxpr.invars)
  found = []
  for eqn in reversed(jaxpr.eqns):
    if any(v in needed for v in eqn.outvars):
      found.append(eqn)
      needed.update(v for v in eqn.invars if not isinstance(v, Literal))
  return found


def test_draws_are_batched_and_keys_are_constants():
  """Traced (not compiled): the batched init draws once per power-of-two size bucket, at the top level,
  from keys that are constants (computed while tracing, from the constant seed). Its variables equal
  the plain init's bit for bit: test_same_variables_as_model_init[densenet40_k12-default]."""
  init = _init_fn("densenet40_k12", 32, {})
  closed = jax.make_jaxpr(batch_random_bits(init))()
  draws = [eqn for eqn in closed.jaxpr.eqns if eqn.primitive is random_bits_p]
  # DenseNet-40: 40 weight draws (39 convs + classifier) in 8 buckets of kernel sizes
  assert 1 < len(draws) <= 10, len(draws)
  # The keys: constants stacked, not fold_in chains (the plain init has one per parameter).
  assert {eqn.primitive.name for eqn in _ancestors(closed.jaxpr, draws)} <= {
    "stack",
    "concatenate",
    "broadcast_in_dim",
    "reshape",
    "convert_element_type",
  }
  assert any(eqn.primitive.name == "random_fold_in" for eqn in jax.make_jaxpr(init)().jaxpr.eqns)


def test_traced_keys_still_batch_and_match():
  """Keys that depend on an argument (not constants) stay traced; the draws are still batched."""
  model = create_model("resnet20")

  def init(seed):
    return model.init(jax.random.PRNGKey(seed), jnp.zeros((1, 32, 32, 3)), train=False)

  batched = jax.jit(batch_random_bits(init))(jnp.uint32(7))
  plain = jax.jit(init)(jnp.uint32(7))
  for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("backend", ["portable", "cpu"])
def test_trainer_state_holds_model_init_parameters(backend):
  """create_train_state: the parameters of `model.init` with the seed's params key, compiled as the
  backend compiles its init (portable: one jit; cpu: batched draws at XLA level 1)."""
  backend = (
    backends.PORTABLE_BACKEND
    if backend == "portable"
    else backends.Backend("cpu", "test", cpu.make_kernels("xla"), "xla")
  )
  model = create_model("resnet20", kernels=backend.kernels)
  state = build.create_train_state(
    model, optax.sgd(0.1, 0.9), (32, 32, 3), 5, parallel.make_mesh(), backend
  )
  params_key, dropout_key, _ = jax.random.split(jax.random.PRNGKey(5), 3)
  # Compiled as the trainer compiles its init (same XLA options: equal bits, not just equal maths).
  plain = create_model("resnet20")
  expected = backend.compile_init(
    lambda: plain.init(
      {"params": params_key, "dropout": dropout_key}, jnp.zeros((1, 32, 32, 3)), train=False
    ),
    None,
  )()
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(expected["params"])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
