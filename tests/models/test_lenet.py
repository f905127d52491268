import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.models import create_model, list_models, model_info
from classic_cnns.models.lenet import C3_TABLE, rbf_centres
from tests.models.helpers import (
  assert_exact_param_count,
  count_params,
  forward_backward_is_finite,
  kernel_calls,
  train_loss_jaxprs,
)


@pytest.mark.parametrize("name", ["lenet5", "lenet5_lecun"])
def test_exact_param_count(name):
  assert_exact_param_count(name)


def test_reference_counts_are_the_papers():
  assert model_info("lenet5").paper_params == 61_706
  assert model_info("lenet5_lecun").paper_params == 60_000


@pytest.mark.parametrize("name", ["lenet5", "lenet5_lecun"])
def test_forward_backward_and_shape(name):
  forward_backward_is_finite(name, 32)
  m = create_model(name)
  v = jax.eval_shape(lambda: m.init(jax.random.PRNGKey(0), jnp.zeros((3, 32, 32, 1))))
  assert jax.eval_shape(m.apply, v, jnp.ones((3, 32, 32, 1))).shape == (3, 10)


def test_lecun_c3_is_sparse_as_table_one():
  """Perturbing S2 map i changes only the C3 maps that Table I connects to it."""
  from classic_cnns.models.lenet import SparseC3

  m = SparseC3()
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 14, 14, 6))
  v = m.init(jax.random.PRNGKey(1), x)
  assert count_params(v["params"]) == 60 * 25 + 16
  base = m.apply(v, x)
  for i in range(6):
    changed = np.abs(np.asarray(m.apply(v, x.at[..., i].add(1.0)) - base)).max(axis=(0, 1, 2)) > 0
    expected = np.array([i in ins for ins in C3_TABLE])
    np.testing.assert_array_equal(changed, expected)


def test_lecun_rbf_centres_fixed_and_not_parameters():
  c = rbf_centres(10)
  assert c.shape == (10, 84) and set(np.unique(c)) == {-1.0, 1.0}
  assert len({tuple(r) for r in c}) == 10  # distinct codes
  v = create_model("lenet5_lecun").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  assert set(v) == {"params"} and "output" not in v["params"]


def test_activation_option():
  a = create_model("lenet5", act="relu")
  v = a.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)))
  b = create_model("lenet5")
  assert not np.allclose(a.apply(v, jnp.ones((1, 32, 32, 1))), b.apply(v, jnp.ones((1, 32, 32, 1))))


def test_registry_errors():
  with pytest.raises(ValueError, match="did you mean lenet5"):
    create_model("lenet6")
  with pytest.raises(ValueError, match="does not accept"):
    create_model("lenet5", no_such_option=1)
  assert {"lenet5", "lenet5_lecun"} <= set(list_models())


# --------------------------------------------------------------------------- kernels
@pytest.mark.parametrize("name", ["lenet5", "lenet5_lecun"])
def test_train_step_is_plain_autodiff(name):
  for jaxpr in train_loss_jaxprs(name, 32):
    assert "custom_vjp_call" not in jaxpr and "ffi_call" not in jaxpr


@pytest.mark.parametrize("name", ["lenet5", "lenet5_lecun"])
def test_convs_use_the_given_kernels(name):
  # C1, C3 (sparse C3 too), C5; the pooling is average pooling (not a `Kernels` op).
  assert kernel_calls(name, 32) == {"conv": 3}
