"""Fuzzing the config space: any override gives a clean run or one clean error, never a traceback;
and on a finished run, any bad input (override, data corruption, busy workdir, broken config file)
is refused by the command line in at most 3 lines of stderr, leaving the workdir as it was."""

import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl import flags
from hypothesis import HealthCheck, given, settings, strategies as st
from ml_collections import config_flags

from classic_cnns import cli, train
from classic_cnns import build
from classic_cnns import workdir as workdir_lib
from classic_cnns.config import base_config, validate_config
from tests.test_workdir import finished_run, main_cmd, snapshot, write_npz  # noqa: F401  (the shared fixture)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "lenet5_mnist.py")


def _leaf_keys(cfg, prefix=""):
  for k, v in cfg.items():
    if hasattr(v, "items"):
      yield from _leaf_keys(v, f"{prefix}{k}.")
    else:
      yield f"{prefix}{k}"


KEYS = sorted(_leaf_keys(base_config())) + ["optimizer.learning_rate", "model.depth", "nope"]
VALUES = st.one_of(
  st.integers(-5, 300).map(str),
  st.floats(-1e3, 1e3).map(str),
  st.sampled_from(
    [
      "relu",
      "tanh",
      "sigmoid",
      "batch",
      "sgd",
      "adam",
      "cosine",
      "npz",
      "tfds",
      "lenet5",
      "lenet5_lecun",
      "resnet20",
      "True",
      "False",
      "",
      "()",
      "(1,2)",
      "abc",
      "nan",
      "inf",
      "-0",
    ]
  ),
)
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
      model = build.build_model(config, 1)
      try:
        jax.eval_shape(
          lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1)), train=False)
        )
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
@given(
  st.lists(
    st.tuples(
      st.sampled_from(
        [
          "optimizer.lr",
          "batch_size",
          "model.act",
          "data.pad_to",
          "optimizer.name",
          "schedule.name",
          "data.val_size",
          "loss.label_smoothing",
          "optimizer.weight_decay",
        ]
      ),
      VALUES,
    ),
    min_size=1,
    max_size=2,
  )
)
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


# ----------------------------------------------------------------------------- the command line on a finished run
# Each example is one thing that must be refused -- a bad override, a change that makes another run,
# a corruption of the run's data file, a busy workdir, a broken config file -- plus harmless overrides.
# The command must end with a non-zero exit, at most 3 lines on stderr, no traceback, and the
# workdir's files exactly as they were.
REFUSED_OVERRIDES = st.sampled_from(
  [
    ("optimizer.lr", "nan"),
    ("optimizer.lr", "inf"),
    ("optimizer.lr", "-0.1"),
    ("optimizer.lr", "0"),
    ("optimizer.momentum", "-0.5"),
    ("optimizer.momentum", "nan"),
    ("optimizer.weight_decay", "-1"),
    ("optimizer.weight_decay", "inf"),
    ("optimizer.eps", "0"),
    ("optimizer.b2", "1.5"),
    ("schedule.warmup", "-1"),
    ("loss.label_smoothing", "nan"),
    ("loss.aux_weight", "-inf"),
    ("batch_size", "0"),
    ("batch_size", "100000"),
    ("eval_batch_size", "-1"),
    ("seed", "-1"),
    ("num_epochs", "inf"),
    ("model.num_classes", "3"),
    ("model.name", "lenet6"),
    ("optimizer.learning_rate", "0.1"),
    ("batch_size", "abc"),
    ("data.val_size", "-4"),
    # changes that would make another run in this workdir
    ("num_steps", "2"),
    ("seed", "1"),
    ("model.act", "relu"),
    ("optimizer.name", "sgd"),
    ("optimizer.lr", "0.02"),
    ("data.pad_to", "36"),
    ("data.val_size", "8"),
    ("data.normalize", "none"),
    ("data.augment.flip", "True"),
    ("dtype", "bfloat16"),
    ("schedule.name", "constant"),
    ("batch_size", "16"),
    ("data.source", "embedded"),
  ]
)
CORRUPTIONS = st.sampled_from(
  [
    "truncate",
    "junk",
    "negative_label",
    "nan_label",
    "empty_test",
    "empty_train",
    "float_images",
    "missing_key",
    "test_size",
    "fewer_classes",
    "lengths",
    "few_examples",
  ]
)
HARMLESS = st.lists(
  st.sampled_from(
    [
      ("log_every_steps", "1"),
      ("log_every_steps", "3"),
      ("eval_every_steps", "2"),
      ("checkpoint_every_steps", "1"),
      ("num_steps", "6"),
      ("eval_batch_size", "16"),
      ("kernels", "portable"),
      ("compilation_cache_dir", ""),
      ("skip_nonfinite_steps", "True"),
    ]
  ),
  max_size=2,
)
BAD = st.one_of(
  st.tuples(st.just("override"), REFUSED_OVERRIDES),
  st.tuples(st.just("corrupt"), st.tuples(CORRUPTIONS, st.floats(0.0, 0.95))),
  st.tuples(st.just("busy"), st.none()),
  st.tuples(st.just("config_file"), st.tuples(st.integers(0, 30), st.booleans())),
)


def corrupt(path, how: str, where: float) -> None:
  """Rewrites the .npz at `path` into a file the run must refuse."""
  n = 96
  i = int(where * n)
  if how == "truncate":
    data = path.read_bytes()
    path.write_bytes(data[: int(where * len(data))])
  elif how == "junk":
    path.write_bytes(np.random.default_rng(i).bytes(1000))
  elif how in ("negative_label", "nan_label"):
    y = (np.arange(n) % 10).astype(np.float64 if how == "nan_label" else np.int64)
    y[i] = np.nan if how == "nan_label" else -1 - i
    write_npz(path, y_train=y)
  elif how == "empty_test":
    write_npz(path, x_test=np.zeros((0, 28, 28), np.uint8), y_test=np.zeros((0,), np.int64))
  elif how == "empty_train":
    write_npz(path, x_train=np.zeros((0, 28, 28), np.uint8), y_train=np.zeros((0,), np.int64))
  elif how == "float_images":
    write_npz(path, x_train=np.random.default_rng(i).random((n, 28, 28)))
  elif how == "missing_key":
    write_npz(path, **{["x_train", "y_train", "x_test", "y_test"][i % 4]: None})
  elif how == "test_size":
    write_npz(path, x_test=np.zeros((40, 20 + i % 8, 28), np.uint8))
  elif how == "fewer_classes":  # the same config, data of other classes than the run's
    write_npz(path, classes=2 + i % 8)
  elif how == "lengths":
    write_npz(path, y_test=np.arange(40 + 1 + i) % 10)
  elif how == "few_examples":  # fewer training examples than one batch of 32
    write_npz(path, n_train=10 + i % 20)
  else:
    raise AssertionError(how)


def broken_config(path, line: int, syntax: bool) -> str:
  """configs/lenet5_mnist.py with a broken line inserted into get_config's body."""
  with open(os.path.join(REPO, "configs", "lenet5_mnist.py")) as f:
    lines = f.read().splitlines()
  body = lines.index("def get_config():") + 1
  at = body + line % (len(lines) - body)
  lines.insert(at, "  x = (" if syntax else "  undefined_name_in_config")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")
  return str(path)


def refused_cleanly(finished, tmp_path, bad, harmless) -> None:
  wd, data, before = finished
  original = data.read_bytes()
  kind, what = bad
  config = "configs/lenet5_mnist.py"
  args = [f"--config.{k}={v}" for k, v in harmless]
  if kind == "override":
    args = [a for a in args if not a.startswith(f"--config.{what[0]}=")] + [
      f"--config.{what[0]}={what[1]}"
    ]
  elif kind == "corrupt":
    corrupt(data, *what)
  elif kind == "config_file":
    config = broken_config(tmp_path / "broken.py", *what)
  try:
    if kind == "busy":
      with workdir_lib.lock(str(wd)):
        p = subprocess.run(
          main_cmd(wd, data, *args, config=config),
          cwd=REPO,
          capture_output=True,
          text=True,
          timeout=300,
        )
    else:
      p = subprocess.run(
        main_cmd(wd, data, *args, config=config),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
      )
  finally:
    data.write_bytes(original)
  err = p.stderr.strip().splitlines()
  assert p.returncode != 0, (bad, harmless, p.stdout[-1000:])
  assert "Traceback" not in p.stderr and 1 <= len(err) <= 3 and err[-1].startswith("error: "), (
    bad,
    harmless,
    err,
  )
  assert snapshot(wd) == before, (bad, harmless)


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=BAD, harmless=HARMLESS)
def test_cli_refuses_bad_input_on_a_finished_run_cleanly(finished_run, tmp_path, bad, harmless):
  refused_cleanly(finished_run, tmp_path, bad, harmless)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(bad=BAD, harmless=HARMLESS)
def test_cli_refuses_bad_input_on_a_finished_run_cleanly_many(
  finished_run, tmp_path, bad, harmless
):
  refused_cleanly(finished_run, tmp_path, bad, harmless)
