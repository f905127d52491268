"""Top-5 predictions of a trained run for image files:

    python -m classic_cnns.predict --workdir=DIR IMAGE [IMAGE ...]
    python -m classic_cnns.predict --config=configs/X.py --config.kernels=portable --workdir=DIR IMAGE

Reads DIR/config.json (or the --config file with its overrides, as evaluate takes it: the model must
be the run's, checked before anything is restored; the compute settings such as kernels, dtype and
compilation_cache_dir are then this config's), DIR/classes.json and DIR/preprocess.npz (the normalisation fitted at training
time; recomputed from the training data for a workdir that predates it), restores the newest
checkpoint, and prints for each image its top-5 classes with probabilities. Each image is decoded
with PIL, converted to the training channel count (greyscale or RGB) and resized to the training
image size, then given the evaluation view (normalise, pad, resize + centre crop as configured).
A file that cannot be read (an image, or the workdir's config.json, classes.json, preprocess.npz)
ends with one line `error: ...` and exit status 2 (classic_cnns/cli.py; --debug shows the
traceback). The command holds the workdir's lock shared (classic_cnns/workdir.py): it runs beside
evaluations, but not beside a training run in the same workdir (one line, exit status 1).
"""

from __future__ import annotations

import json
import os

from absl import flags
from ml_collections import config_flags

from classic_cnns import cli

_FLAGS: dict = {}


def _define_flags() -> dict:
  return {
    "config": config_flags.DEFINE_config_file(
      "config",
      None,
      "Optional: the run's config file (as given to classic_cnns.main) with any --config.KEY=VALUE "
      "overrides, e.g. --config.kernels=portable on another machine; its model must be the run's. "
      "Default: the workdir's config.json.",
      lock_config=True,
    ),
    "workdir": flags.DEFINE_string("workdir", None, "A training run's workdir."),
    "top": flags.DEFINE_integer("top", 5, "How many classes to print per image."),
  }


def _tuples(v):
  if isinstance(v, list):
    return tuple(_tuples(x) for x in v)
  if isinstance(v, dict):
    return {k: _tuples(x) for k, x in v.items()}
  return v


def _with_defaults(saved: dict, defaults: dict) -> dict:
  """`saved` plus any field it lacks (a run written before the field existed) from `defaults`."""
  out = dict(saved)
  for k, v in defaults.items():
    if k not in out:
      out[k] = v
    elif isinstance(v, dict) and isinstance(out[k], dict):
      out[k] = _with_defaults(out[k], v)
  return out


def load_run(workdir: str):
  """(config, class names) of a workdir written by the trainer."""
  import ml_collections
  from classic_cnns.config import ConfigError, base_config

  paths = [os.path.join(workdir, f) for f in ("config.json", "classes.json")]
  for p in paths:
    if not os.path.isfile(p):
      raise ConfigError(f"{p} not found; --workdir must be a training run's workdir")
  try:
    with open(paths[0]) as f:
      config = ml_collections.ConfigDict(
        _with_defaults(_tuples(json.load(f)), base_config().to_dict())
      )
    with open(paths[1]) as f:
      classes = [str(c) for c in json.load(f)]
  except (OSError, ValueError, TypeError, AttributeError) as e:
    raise ConfigError(
      f"cannot read the run in {workdir}: {' '.join(str(e).split())[:200]}"
    ) from None
  return config, classes


def read_images(paths: list[str], image_shape: tuple[int, int, int]):
  """uint8 [N, H, W, C]: each file decoded, converted to C channels and resized to H x W."""
  import numpy as np
  from PIL import Image, UnidentifiedImageError
  from classic_cnns.data.sources import DatasetError

  h, w, c = image_shape
  out = []
  for p in paths:
    try:
      with Image.open(p) as im:
        im = im.convert("L" if c == 1 else "RGB")
        if im.size != (w, h):
          im = im.resize((w, h), Image.BILINEAR)
        a = np.asarray(im, np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
      raise DatasetError(f"cannot read image {p}: {' '.join(str(e).split())[:200]}") from None
    out.append(a.reshape(h, w, c))
  return np.stack(out)


def predict(
  workdir: str, paths: list[str], top: int = 5, config=None
) -> list[list[tuple[str, float]]]:
  """For each image, its `top` (class name, probability) pairs, most probable first. `config`
  (default: the workdir's config.json) must be of the run's model (ConfigError otherwise). Holds the
  workdir's shared lock (WorkdirBusyError while a training run holds it)."""
  from classic_cnns import workdir as workdir_lib

  with workdir_lib.lock(workdir, shared=True):
    return _predict(workdir, paths, top, config)


def _predict(workdir: str, paths: list[str], top: int, config) -> list[list[tuple[str, float]]]:
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns.data import augment, sources
  from classic_cnns import backends
  from classic_cnns import steps
  from classic_cnns.evaluate import restore

  saved_config, classes = load_run(workdir)
  if config is None:
    config = saved_config
  else:
    from classic_cnns import workdir as workdir_lib

    workdir_lib.check_workdir_model(workdir, config)
  cli.set_xla_flags(config.get("kernels", "auto"), echo=False)  # before JAX starts its backends
  if config is not saved_config:
    from classic_cnns.config import validate_config

    validate_config(config, jax.device_count())
  backends.use_compilation_cache(config.compilation_cache_dir)  # the run's own setting
  saved = os.path.join(workdir, "preprocess.npz")
  if os.path.isfile(saved):
    prep, image_shape = augment.load_preprocess(saved)
  else:  # a run from before preprocess.npz: refit the statistics on its training data
    ds = sources.load_dataset(config.data, config.seed)
    prep, image_shape = augment.preprocess_config(config.data, ds), tuple(ds.image_shape)
  images = read_images(paths, image_shape)
  model, state, _ = restore(config, workdir, prep.eval_shape(image_shape))
  variables = steps.eval_variables(state)
  dtype = jnp.dtype(config.dtype)

  @jax.jit
  def probabilities(variables, x):
    x = augment.preprocess(x, prep, train=False, rng=None, dtype=dtype)
    return jax.nn.softmax(model.apply(variables, x, train=False).astype(jnp.float32))

  probs = np.asarray(jax.device_get(probabilities(variables, images)))
  names = classes if len(classes) == probs.shape[-1] else [str(i) for i in range(probs.shape[-1])]
  k = min(top, probs.shape[-1])
  return [[(names[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:k]] for p in probs]


def main(argv: list[str]) -> None:
  paths = argv[1:]
  if not paths:
    cli.fail("give one or more image files: python -m classic_cnns.predict --workdir=DIR IMAGE...")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if _FLAGS["top"].value < 1:
    cli.fail(f"--top must be positive, got {_FLAGS['top'].value}")
  with cli.user_errors():
    config = cli.load_config(_FLAGS["config"]) if _FLAGS["config"].value is not None else None
    results = predict(_FLAGS["workdir"].value, paths, _FLAGS["top"].value, config)
  for path, best in zip(paths, results):
    print(f"{path}: " + ", ".join(f"{name} {100 * p:.1f}%" for name, p in best), flush=True)


if __name__ == "__main__":
  _FLAGS.update(_define_flags())
  flags.mark_flags_as_required(["workdir"])
  cli.run(main)
