"""Helpers shared by the model-family tests."""

from __future__ import annotations

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.models import create_model, layers, model_info


def init(model, rngs, x, **kwargs):
  """`model.init(rngs, x, **kwargs)` in one jit: run eagerly, init would compile every forward op of
  the model on its own."""
  return jax.jit(lambda rngs, x: model.init(rngs, x, **kwargs))(rngs, x)


def all_finite(tree) -> bool:
  """Every leaf of `tree` finite, checked in NumPy: an eager jnp op per leaf compiles once per
  distinct leaf shape (about 20 s in a GoogLeNet test)."""
  return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))


def leaves_equal(a, b) -> list[bool]:
  """Per leaf of two trees of the same structure: are they exactly equal (NumPy, no compiles)."""
  return [
    np.array_equal(np.asarray(p), np.asarray(q))
    for p, q in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  ]


def count_params(params) -> int:
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def abstract_variables(name: str, input_size: int | None = None, batch: int = 1, **overrides):
  """Shapes of init's variables without compiling or allocating (jax.eval_shape)."""
  info = model_info(name)
  model = create_model(name, **overrides)
  size = input_size or info.input_size
  x = jnp.zeros((batch, size, size, info.in_channels), jnp.float32)
  return jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
    )
  )


def abstract_output(
  name: str, input_size: int | None = None, batch: int = 2, train: bool = False, **overrides
):
  info = model_info(name)
  model = create_model(name, **overrides)
  size = input_size or info.input_size
  x = jax.ShapeDtypeStruct((batch, size, size, info.in_channels), jnp.float32)
  variables = abstract_variables(name, input_size, **overrides)

  def apply(v, x):
    return model.apply(
      v, x, train=train, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"]
    )

  return jax.eval_shape(apply, variables, x)[0]


def abstract_intermediates(name: str, input_size: int, **overrides):
  """The sown intermediates of one eval-mode apply on a single image, as shapes (jax.eval_shape)."""
  model = create_model(name, **overrides)
  x = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  variables = abstract_variables(name, input_size, **overrides)
  _, state = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
  return state["intermediates"]


def assert_exact_param_count(name: str, **overrides) -> None:
  info = model_info(name)
  got = count_params(abstract_variables(name, **overrides)["params"])
  assert info.paper_params is not None, f"{name} has no reference count"
  assert got == info.paper_params, f"{name}: {got:,} params, reference {info.paper_params:,}"


def forward_backward_is_finite(name: str, input_size: int, batch: int = 2, **overrides) -> None:
  """One jit-compiled forward + backward in train mode; loss and all grads finite."""
  info = model_info(name)
  model = create_model(name, **overrides)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, input_size, input_size, info.in_channels))
  variables = init(
    model, {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
  )
  params, rest = variables["params"], {k: v for k, v in variables.items() if k != "params"}

  @jax.jit
  def loss_and_grad(params):
    def loss_fn(p):
      out, _ = model.apply(
        {"params": p, **rest},
        x,
        train=True,
        rngs={"dropout": jax.random.PRNGKey(2)},
        mutable=["batch_stats"],
      )
      logits = out[0] if isinstance(out, tuple) else out
      return jnp.mean(jax.nn.logsumexp(logits, -1) - logits[:, 0])

    return jax.value_and_grad(loss_fn)(params)

  loss, grads = loss_and_grad(params)
  assert np.isfinite(float(loss))
  assert all_finite(grads)


# --------------------------------------------------------------------------- kernels
KERNEL_OPS = ("conv", "loop_conv", "max_pool", "batch_norm_train", "group_norm")


def recording_kernels():
  """(`layers.PORTABLE` with every op of KERNEL_OPS counting its calls, the Counter of calls). The
  calls happen in Python while tracing, so a traced apply counts them."""
  calls = collections.Counter()

  def record(op, fn):
    def wrapped(*args, **kwargs):
      calls[op] += 1
      return fn(*args, **kwargs)

    return wrapped

  return dataclasses.replace(
    layers.PORTABLE,
    name="recording",
    **{op: record(op, getattr(layers.PORTABLE, op)) for op in KERNEL_OPS},
  ), calls


def abstract_init(model, size, batch=2, channels=3):
  """init's variables as shapes (jax.eval_shape: traced, not compiled), eval-mode init."""
  x = jnp.zeros((batch, size, size, channels))
  return jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
    )
  )


def trace_train_apply(model, variables, size, batch=2, channels=3):
  """Traces (no compile) one train-mode apply with mutable batch_stats."""
  x = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)
  return jax.eval_shape(
    lambda v, x: model.apply(
      v, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"]
    ),
    variables,
    x,
  )


def count_leaves(tree, leaf: str, module: str) -> int:
  """How many leaves named `leaf` sit directly in a module named `module` (e.g. conv kernels)."""
  names = lambda path: [str(getattr(k, "key", k)) for k in path]
  return sum(
    names(p)[-2:] == [module, leaf] for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]
  )


def train_loss_jaxprs(name, size, **kw) -> list[str]:
  """The jaxprs (as text) of a train-mode cross-entropy loss through `create_model(name)` and of its
  gradient, traced on abstract values (no compile). A custom VJP shows only in the loss's jaxpr
  (`jax.grad` inlines the rule), a foreign call in both."""
  info = model_info(name)
  model = create_model(name, **kw)
  v = abstract_variables(name, size, **kw)
  params, rest = v["params"], {k: t for k, t in v.items() if k != "params"}
  x = jax.ShapeDtypeStruct((2, size, size, info.in_channels), jnp.float32)
  labels = np.arange(2) % 10

  def loss(params, rest, x):
    logits, _ = model.apply(
      {"params": params, **rest},
      x,
      train=True,
      rngs={"dropout": jax.random.PRNGKey(0)},
      mutable=["batch_stats"],
    )
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], -1))

  return [str(jax.make_jaxpr(f)(params, rest, x)) for f in (loss, jax.grad(loss))]


def kernel_calls(name, size, **kw) -> dict[str, int]:
  """How often each `Kernels` op is called by one train-mode forward of `create_model(name,
  kernels=recording)`; also checks that the variables do not depend on the kernels."""
  kernels, calls = recording_kernels()
  shapes = lambda tree: jax.tree.map(lambda a: (a.shape, a.dtype), tree)
  v = abstract_variables(name, size, **kw)
  assert shapes(abstract_variables(name, size, kernels=kernels, **kw)) == shapes(v)
  model = create_model(name, kernels=kernels, **kw)
  calls.clear()
  trace_train_apply(model, v, size, channels=model_info(name).in_channels)
  return dict(calls)
