"""Helpers shared by the model-family tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns.models import create_model, model_info


def init(model, rngs, x, **kwargs):
  """`model.init(rngs, x, **kwargs)` in one jit: run eagerly, init would compile every forward op of
  the model on its own."""
  return jax.jit(lambda rngs, x: model.init(rngs, x, **kwargs))(rngs, x)


def all_finite(tree) -> bool:
  """Every leaf of `tree` finite, checked in NumPy: an eager jnp op per leaf would compile once per
  distinct leaf shape (about 20 s of a GoogLeNet test went to such checks)."""
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
