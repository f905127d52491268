"""Command-line entry point (flax-example style):

    python -m classic_cnns.main --config=configs/lenet5_mnist.py --workdir=/tmp/lenet5
    python -m classic_cnns.main --config=configs/lenet5_mnist.py --workdir=/tmp/x --config.optimizer.lr=0.05

Any config field can be overridden with --config.a.b=value; unknown keys and values of the wrong
type are rejected. Rerunning the same command resumes from the newest checkpoint in --workdir
(with a larger num_steps / num_epochs it continues the run; any other change to what the run
trains -- model, data, preprocessing, seed, batch, optimizer, schedule, dtype -- is refused).

Everything the run needs (config, data, the workdir's previous run) is checked before anything is
written to the workdir. A run holds the workdir's lock: a second run on it stops at once. Errors
are one line on stderr: exit status 2 for bad input (flags, config, data, workdir), 1 for failures
while running (workdir in use, disk full, unreadable streamed image, divergence); see
classic_cnns/cli.py. --debug (or CLASSIC_CNNS_DEBUG=1) shows the traceback instead.

Multi-host: run the same command on every host with --coordinator_address=HOST0:PORT
--num_processes=N --process_id=I (or in an environment JAX detects, e.g. SLURM or Cloud TPU); each
process feeds its own slice of every global batch, only process 0 writes logs and metrics.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from classic_cnns import cli

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "A config file, configs/NAME.py[:ARG] (ARG: the file's variant, see its docstring); "
  "--config.KEY=VALUE overrides a field, e.g. --config.optimizer.lr=0.05.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Directory for checkpoints, metrics and TensorBoard files."
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address",
  None,
  "Multi-host: host:port of process 0 (or set JAX's cluster environment).",
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "Multi-host: this process's index.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
  config = cli.load_config(_CONFIG)
  cli.set_xla_flags(config.kernels)  # before JAX starts its backends
  import jax
  from classic_cnns import parallel, train
  from classic_cnns.config import validate_config

  with cli.user_errors():
    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    validate_config(config, jax.device_count())
    result = train.train_and_evaluate(config, _WORKDIR.value)
  if result.interrupted:
    sys.exit(128 + result.interrupted)


if __name__ == "__main__":
  cli.run(main)
