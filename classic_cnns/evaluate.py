"""Test-time evaluation of a trained workdir with one of the papers' protocols:

    python -m classic_cnns.evaluate --config=configs/X.py --workdir=DIR --protocol=ten_crop
    python -m classic_cnns.evaluate --config=configs/vgg_imagenet.py --workdir=DIR
        --protocol=dense_multiscale --scales=256,384,512    (one command line)

Restores the newest checkpoint in DIR, runs the protocol over the test split (the validation split
of a dataset without one; every example once, the last batch padded and masked, as the trainer's
evaluation), prints top-1/top-5 error and writes them to DIR/eval_<protocol>.json. The protocols
(centre, center_crop, full, ten_crop, dense_multiscale, multi_crop_144; aliases single, dense) are
the evaluators of classic_cnns/evaluators.py, which the trainer's evaluations use too.

Bad input (no or unreadable checkpoint, a model without a dense mode, crops that do not fit) ends
with one line `error: ...` and exit status 2 (classic_cnns/cli.py; --debug shows the traceback).
The command holds the workdir's lock shared (classic_cnns/workdir.py): evaluations run beside each
other, but not beside a training run in the same workdir (one line, exit status 1).
"""

from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from classic_cnns import cli
from classic_cnns.evaluators import NAMES as PROTOCOLS


def _define_flags() -> dict:
  """Defined only when run as a program, so that importing this module (tests, predict) adds no
  flags that would collide with classic_cnns.main's."""
  return {
    "config": config_flags.DEFINE_config_file(
      "config", None, "The run's config file (as given to classic_cnns.main).", lock_config=True
    ),
    "workdir": flags.DEFINE_string("workdir", None, "The run's workdir (holds checkpoints/)."),
    "protocol": flags.DEFINE_enum(
      "protocol",
      "centre",
      PROTOCOLS,
      "Test-time protocol: centre (the trainer's evaluation view), center_crop (one centre crop), "
      "full (the whole image), ten_crop (4 corners + centre and their flips, AlexNet / ResNet "
      "Table 3), dense_multiscale (the fully-convolutional net at --scales and flips, VGG Sec. 3.2 "
      "/ ResNet Table 4), multi_crop_144 (GoogLeNet Sec. 10); single = centre, dense = "
      "dense_multiscale.",
    ),
    "scales": flags.DEFINE_list(
      "scales",
      [],
      "dense_multiscale: test scales Q (shorter side), e.g. 256,384,512 (default: the evaluation "
      "resize, else the image's shorter side); multi_crop_144: its 4 scales (default: "
      "256,288,320,352 times crop/224).",
    ),
    "resize": flags.DEFINE_integer(
      "resize",
      0,
      "center_crop/ten_crop: shorter side before cropping (0 = the config's evaluation resize, "
      "else 8/7 of the crop).",
    ),
    "crop": flags.DEFINE_integer(
      "crop",
      0,
      "center_crop/ten_crop/multi_crop_144: crop size (0 = the config's evaluation crop, else the "
      "model's input side).",
    ),
  }


_FLAGS: dict = {}


# ----------------------------------------------------------------------------- restore
def restore(config, workdir: str, input_shape: tuple[int, int, int], mesh=None):
  """(model, state, meta) of the newest readable checkpoint in `workdir`, built for `input_shape`
  (the model's input as trained). CheckpointError when there is none or none can be read."""
  import jax
  from classic_cnns import build, checkpoint, optim, parallel
  from classic_cnns import workdir as workdir_lib
  from classic_cnns.config import ConfigError

  ckdir = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckdir) or not any(d.isdigit() for d in os.listdir(ckdir)):
    raise checkpoint.CheckpointError(
      f"no checkpoint in {ckdir}; train first with python -m classic_cnns.main "
      f"--config=... --workdir={workdir}"
    )
  workdir_lib.check_workdir_model(workdir, config)
  mesh = mesh or parallel.make_mesh()
  backend = build.select_backend(config)
  try:
    model = build.build_model(config, jax.device_count(), backend.kernels)
    params = jax.eval_shape(
      lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jax.numpy.zeros((1,) + tuple(input_shape)),
        train=False,
      )
    )["params"]
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:
    raise ConfigError(
      f"config.model {config.model.name!r} cannot be built for input {tuple(input_shape)}: "
      f"{' '.join(str(e).split())[:300]}"
    ) from None
  schedule = optim.make_schedule(
    config, 1, 1
  )  # the optimizer state's structure does not depend on it
  tx = optim.make_optimizer(config, schedule, params)
  abstract = jax.eval_shape(
    lambda: build.create_train_state(
      model, tx, tuple(input_shape), config.seed, mesh, ema=config.get("ema_decay", 0.0) > 0
    )
  )
  rep = parallel.replicated(mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
  ckpt = checkpoint.Checkpointer(workdir, 1, max(int(config.keep_checkpoints), 1))
  try:
    restored = ckpt.restore_latest(abstract)
  finally:
    ckpt.close()
  if restored is None:
    raise checkpoint.CheckpointError(f"no checkpoint in {ckdir}")
  state, meta = restored
  if meta.get("model") not in (None, config.model.name):
    raise ConfigError(
      f"workdir {workdir} holds a run of model {meta.get('model')!r}, not {config.model.name!r}"
    )
  return model, state, meta


def run_protocol(
  config,
  workdir: str,
  protocol: str,
  scales: list[int] | None = None,
  resize: int = 0,
  crop: int = 0,
) -> dict:
  """Evaluates the newest checkpoint in `workdir` with `protocol`; returns (and writes) the result.
  Holds the workdir's shared lock (WorkdirBusyError while a training run holds it)."""
  from classic_cnns import workdir as workdir_lib

  with workdir_lib.lock(workdir, shared=True):
    return _run_protocol(config, workdir, protocol, scales, resize, crop)


def _run_protocol(
  config, workdir: str, protocol: str, scales: list[int] | None, resize: int, crop: int
) -> dict:
  import jax
  from classic_cnns import evaluators, parallel
  from classic_cnns.data import augment, sources

  evaluator_cls = evaluators.get(protocol)  # an unknown name: ConfigError before any work
  mesh = parallel.make_mesh()
  ds = sources.load_dataset(config.data, config.seed)
  split, split_name = (ds.test, "test") if ds.test is not None else (ds.val, "val")
  prep = augment.preprocess_config(config.data, ds)
  model, state, meta = restore(config, workdir, prep.eval_shape(ds.image_shape), mesh)
  evaluator = evaluator_cls(
    model, prep, config, mesh, resize=resize, crop=crop, scales=scales or None
  )
  info = evaluator.prepare(split)
  evaluator.check(state, split)
  res = evaluator.evaluate(state, split)
  result = {
    "protocol": protocol,
    **info,
    "split": split_name,
    "step": int(meta.get("step", -1)),
    "model": config.model.name,
    "count": int(res["count"]),
    "top1_error": 1.0 - res["top1"],
    "top5_error": 1.0 - res["top5"],
    "top1": res["top1"],
    "top5": res["top5"],
    "loss": res["loss"],
  }
  if jax.process_index() == 0:  # atomically: another evaluation may write the same file
    path = os.path.join(workdir, f"eval_{protocol}.json")
    with open(f"{path}.tmp{os.getpid()}", "w") as f:
      json.dump(result, f, indent=2)
    os.replace(f"{path}.tmp{os.getpid()}", path)
  return result


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  config = cli.load_config(_FLAGS["config"])
  try:
    scales = [int(q) for q in _FLAGS["scales"].value]
  except ValueError:
    cli.fail(f"--scales must be integers, got {','.join(_FLAGS['scales'].value)}")
  cli.set_xla_flags(config.kernels)  # before JAX starts its backends
  import jax
  from classic_cnns import backends
  from classic_cnns.config import validate_config

  with cli.user_errors():
    validate_config(config, jax.device_count())
    backends.use_compilation_cache(config.compilation_cache_dir)
    workdir = _FLAGS["workdir"].value
    r = run_protocol(
      config,
      workdir,
      _FLAGS["protocol"].value,
      scales,
      _FLAGS["resize"].value,
      _FLAGS["crop"].value,
    )
  views = {k: r[k] for k in ("resize", "crop", "scales") if k in r}
  print(
    f"{r['protocol']} {views}: top-1 error {100 * r['top1_error']:.2f}%, top-5 error "
    f"{100 * r['top5_error']:.2f}% on {r['count']} {r['split']} images (checkpoint step {r['step']}); "
    f"written to {os.path.join(workdir, 'eval_' + r['protocol'] + '.json')}",
    flush=True,
  )


if __name__ == "__main__":
  _FLAGS.update(_define_flags())
  flags.mark_flags_as_required(["config", "workdir"])
  cli.run(main)
