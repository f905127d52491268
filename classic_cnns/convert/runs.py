"""Converted weights as a workdir, and the variables of any finished workdir.

`write_workdir` makes DIR look like a finished training run to `classic_cnns.evaluate`,
`classic_cnns.predict` and `main --config.init_from=DIR`: DIR/config.json (the config, written as
the trainer writes it), DIR/config.py (that config as a config file, for `--config=DIR/config.py`:
evaluate restores the whole train state, whose optimizer slots must match), DIR/classes.json,
DIR/preprocess.npz (the preset's evaluation view, for predict) and one Orbax checkpoint (step 0,
fresh optimizer state, the converted params and BatchNorm statistics).

`read_variables` restores {"params", "batch_stats"} of the newest checkpoint of any workdir without
knowing its optimizer (the checkpoint is read without a target), checksums verified.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from classic_cnns.convert import ConvertError, layout

CONFIG_PY = '''"""The config of the weights converted into this workdir by classic_cnns.convert: base_config()
with the fields of config.json (beside this file) on top. Use it as --config=THIS_FILE with
classic_cnns.evaluate or classic_cnns.main (override data fields on the command line)."""

import json
import os

from classic_cnns.config import base_config


def _update(config, saved):
  for key, value in saved.items():
    if isinstance(value, dict):
      _update(config[key], value)
    else:
      config[key] = tuple(value) if isinstance(value, list) else value


def get_config():
  c = base_config()
  with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "config.json")) as f:
    saved = json.load(f)
  c.model.update({k: v for k, v in saved.pop("model").items() if v is not None})
  _update(c, saved)
  return c
'''


def converted_config(model: str, num_classes: int, preset: str):
  """The run config of converted weights: ImageNet (TFDS imagenet2012), the preset's evaluation
  view, random-resized training crops of the preset's crop size."""
  from classic_cnns.config import base_config
  from classic_cnns.data import augment

  c = base_config()
  c.model.name = model
  c.model.num_classes = num_classes
  c.data.source = "tfds"
  c.data.name = "imagenet2012"
  c.data.download = False
  c.data.eval_preset = preset
  crop = 299 if model.startswith("inception_v3") else 224
  c.data.augment.crop = "inception"
  c.data.augment.crop_size = crop
  c.data.augment.flip = True
  c.data.eval_crop = crop
  c.data.eval_resize = augment.preset_resize(preset, crop)
  c.batch_size = 256
  c.eval_batch_size = 250
  return c


def write_workdir(workdir: str, model: str, variables: dict, preset: str, source: str) -> None:
  """Writes the converted `variables` of our `model` as a finished run in `workdir` (see module
  docstring). ConvertError when `workdir` already holds a run; on failure nothing is left behind."""
  import jax

  from classic_cnns import build, checkpoint, optim, parallel
  from classic_cnns import workdir as workdir_lib
  from classic_cnns.data import augment

  if os.path.exists(workdir) and (
    workdir_lib.has_checkpoints(workdir) or os.path.exists(os.path.join(workdir, "config.json"))
  ):
    raise ConvertError(f"workdir {workdir} already holds a run; use a new --workdir")
  num_classes = int(np.shape(variables["params"][_head(model)]["kernel"])[-1])
  config = converted_config(model, num_classes, preset)
  crop = config.data.augment.crop_size
  image_shape = (config.data.eval_resize, config.data.eval_resize, 3)
  mean, std = augment.PRESETS[preset].mean, augment.PRESETS[preset].std
  prep = augment.Preprocess(
    mean=tuple(255.0 * m for m in mean),
    std=tuple(255.0 * s for s in std),
    crop="inception",
    crop_size=crop,
    flip=True,
    eval_resize=config.data.eval_resize,
    eval_crop=crop,
  )
  model_def = build.build_model(config)
  mesh = parallel.make_mesh()
  abstract = jax.eval_shape(
    lambda: model_def.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jax.numpy.zeros((1, crop, crop, 3)),
      train=False,
    )
  )["params"]
  tx = optim.make_optimizer(config, optim.make_schedule(config, 1, 1), abstract)
  state = build.create_train_state(model_def, tx, (crop, crop, 3), config.seed, mesh)
  fresh = state.params
  rep = parallel.replicated(mesh)
  put = lambda tree: jax.tree.map(lambda a: jax.device_put(np.asarray(a, np.float32), rep), tree)
  params, stats = put(variables["params"]), put(variables.get("batch_stats", {}))
  if jax.tree.structure(params) != jax.tree.structure(fresh):
    raise ConvertError(f"the converted variables do not have the layout of {model}")
  state = state.replace(params=params, batch_stats=stats)
  with workdir_lib.lock(workdir):
    try:
      ckpt = checkpoint.Checkpointer(workdir, 1, 1)
      try:
        ckpt.save(0, state, {"model": model, "step": 0, "epoch": 0.0, "converted_from": source})
      finally:
        ckpt.close()
      with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
      with open(os.path.join(workdir, "config.py"), "w") as f:
        f.write(CONFIG_PY)
      with open(os.path.join(workdir, "classes.json"), "w") as f:
        json.dump([str(i) for i in range(num_classes)], f)
      augment.save_preprocess(prep, os.path.join(workdir, "preprocess.npz"), image_shape)
    except BaseException:
      for name in ("checkpoints", "config.json", "config.py", "classes.json", "preprocess.npz"):
        path = os.path.join(workdir, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else None
        if os.path.isfile(path):
          os.remove(path)
      raise


def _head(model: str) -> str:
  family = layout.FAMILIES.get(model, "")
  return {"alexnet": "fc3", "vgg": "fc3", "densenet": "classifier"}.get(family, "fc")


def read_run_model(workdir: str) -> tuple[str, int]:
  """(model name, num_classes) of the run in `workdir` (its config.json); ConfigError if none."""
  from classic_cnns import workdir as workdir_lib

  fields = workdir_lib.read_run_config(workdir)
  if fields is None or "model.name" not in fields:
    raise ConvertError(f"{os.path.join(workdir, 'config.json')} not found; not a run's workdir")
  return str(fields["model.name"]), int(fields.get("model.num_classes", 0))


def read_variables(workdir: str) -> tuple[dict, dict]:
  """({"params", "batch_stats"} as numpy, meta) of the newest usable checkpoint in `workdir`,
  read without a target (any optimizer); CheckpointError (one line) when there is none."""
  import orbax.checkpoint as ocp

  from classic_cnns import checkpoint

  directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
  steps = (
    sorted((int(d) for d in os.listdir(directory) if d.isdigit()), reverse=True)
    if os.path.isdir(directory)
    else []
  )
  if not steps:
    raise checkpoint.CheckpointError(f"no checkpoint in {directory}")
  problem = ""
  with ocp.CheckpointManager(directory) as manager:
    for step in steps:
      try:
        restored = manager.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
        state, meta = dict(restored["state"]), dict(restored["meta"])
        problem = checkpoint.verify(state, meta) or ""
      except Exception as e:  # pylint: disable=broad-except
        problem = " ".join(str(e).split())[:200] or type(e).__name__
      if not problem:
        import jax

        out = {
          "params": jax.tree.map(np.asarray, state["params"]),
          "batch_stats": jax.tree.map(np.asarray, state.get("batch_stats") or {}),
        }
        return out, meta
  raise checkpoint.CheckpointError(
    f"none of the checkpoints {steps} in {directory} can be read: {problem}"
  )
