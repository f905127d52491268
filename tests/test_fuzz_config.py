"""Fuzzing the config space: any override gives a clean run or one clean error, never a traceback."""
import os

import jax
import jax.numpy as jnp
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings, strategies as st
from ml_collections import config_flags

from classic_cnns import cli, train
from classic_cnns.config import base_config, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "lenet5_mnist.py")


def _leaf_keys(cfg, prefix=""):
  for k, v in cfg.items():
    if hasattr(v, "items"):
      yield from _leaf_keys(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}"


KEYS = sorted(_leaf_keys(base_config())) + ["optimizer.learning_rate", "model.depth", "nope"]
VALUES = st.one_of(st.integers(-5, 300).map(str), st.floats(-1e3, 1e3).map(str),
                   st.sampled_from(["relu", "tanh", "sigmoid", "batch", "sgd", "adam", "cosine", "npz", "tfds",
                                    "lenet5", "lenet5_lecun", "resnet20", "True", "False", "", "()", "(1,2)",
                                    "abc", "nan", "inf", "-0"]))
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3)


def parse(overrides):
  argv = ["prog", f"--config={CONFIG}"] + [f"--config.{k}={v}" for k, v in overrides]
  fv = flags.FlagValues()
  config_flags.DEFINE_config_file("config", None, flag_values=fv, lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def check(overrides, run_steps):
  """Returns normally, or raises SystemExit(2) after printing one `error:` line (as the CLI does)."""
  try:
    config = parse(overrides)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError, OSError):
    raise SystemExit(2)  # cli.run turns these into one line
  with cli.user_errors():
    validate_config(config, jax.device_count())
    if run_steps:
      config.num_steps, config.log_every_steps, config.eval_batch_size = 2, 1, 500
      import tempfile
      with tempfile.TemporaryDirectory() as d:
        train.train_and_evaluate(config, d)
    else:  # build the model abstractly, as the trainer does before compiling
      model = train.build_model(config, 1)
      try:
        jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False))
      except (ValueError, TypeError) as e:
        from classic_cnns.config import ConfigError
        raise ConfigError(str(e)) from None


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(OVERRIDES)
def test_overrides_validate_cleanly(overrides):
  try:
    check(overrides, run_steps=False)
  except SystemExit as e:
    assert e.code == 2


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["optimizer.lr", "batch_size", "model.act", "data.pad_to",
                                           "optimizer.name", "schedule.name", "data.val_size",
                                           "loss.label_smoothing", "optimizer.weight_decay"]), VALUES),
                min_size=1, max_size=2))
def test_overrides_run_cleanly(overrides):
  try:
    check(overrides, run_steps=True)
  except SystemExit as e:
    assert e.code == 2


def test_the_fuzz_harness_accepts_good_overrides():
  check([("optimizer.lr", "0.05"), ("model.act", "relu")], run_steps=False)
  check([("optimizer.lr", "0.05")], run_steps=True)
  with pytest.raises(SystemExit):
    check([("optimizer.learning_rate", "0.05")], run_steps=False)
