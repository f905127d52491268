import jax.numpy as jnp
import numpy as np
import optax
import pytest

from classic_cnns import optim
from classic_cnns.config import base_config


def _cfg(**schedule):
  c = base_config()
  c.optimizer.lr = 0.1
  for k, v in schedule.items():
    c.schedule[k] = v
  return c


def test_multistep_by_epoch_and_by_step_agree():
  by_epoch = optim.make_schedule(
    _cfg(name="multistep", boundaries=(2, 4)), steps_per_epoch=10, total_steps=60
  )
  by_step = optim.make_schedule(_cfg(name="multistep", boundaries=(20, 40), unit="step"), 10, 60)
  for s, lr in [(0, 0.1), (19, 0.1), (20, 0.01), (39, 0.01), (40, 0.001)]:
    assert by_epoch(s) == pytest.approx(lr) and by_step(s) == pytest.approx(lr)


def test_warmup_then_cosine():
  f = optim.make_schedule(_cfg(name="cosine", warmup=10, unit="step"), 10, 110)
  assert f(0) == pytest.approx(0.0) and f(5) == pytest.approx(0.05) and f(10) == pytest.approx(0.1)
  assert f(110) == pytest.approx(0.0, abs=1e-6)


def test_step_schedule():
  f = optim.make_schedule(_cfg(name="step", step_size=3), 10, 100)
  assert f(29) == pytest.approx(0.1) and f(30) == pytest.approx(0.01)


def test_decay_mask_and_l2_penalty():
  params = {
    "conv": {"kernel": jnp.ones((3, 3, 1, 2)), "bias": jnp.ones(2)},
    "norm": {"scale": jnp.ones(2)},
  }
  assert optim.l2_penalty(params, "kernels") == pytest.approx(0.5 * 18)
  assert optim.l2_penalty(params, "all") == pytest.approx(0.5 * 22)


def test_decoupled_decay_and_l2_differ_for_adam_and_agree_for_plain_sgd():
  params = {"dense": {"kernel": jnp.ones((2, 2))}}
  grads = {"dense": {"kernel": jnp.zeros((2, 2))}}
  c = base_config()
  c.optimizer.name, c.optimizer.momentum, c.optimizer.weight_decay = "sgd", 0.0, 0.1
  c.optimizer.weight_decay_mode = "decoupled"
  tx = optim.make_optimizer(c, optax.constant_schedule(1.0), params)
  upd, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(upd["dense"]["kernel"], -0.1)  # w <- w - lr * wd * w
  c.optimizer.name = "adamw"
  assert not optim.uses_l2_loss(c)
