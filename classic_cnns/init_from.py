"""Fine-tuning: `config.init_from=DIR` starts a run from the params and BatchNorm statistics of the
newest checkpoint in DIR (a finished run's workdir, or weights converted by classic_cnns.convert).

`check(config)` (the trainer, before anything is written): DIR holds a run's config.json
and a checkpoint, of the same model. `apply(config, state, workdir)` (the trainer, after building
the initial state; skipped when `workdir` already has checkpoints, i.e. when the run resumes):
every variable is taken from DIR, except the classifier head when the class count differs -- it
keeps its fresh initialisation, said in one printed line. The optimizer state, the step and the
RNG stay fresh; a parameter average (config.ema_decay) starts at the loaded params.

ResNet's scan_blocks=True layout is filled from an unscanned checkpoint (resnet.stack_blocks).
Any other difference (a missing variable, another shape) is a ConfigError naming the variable.
"""

from __future__ import annotations

import os
from typing import Any

import ml_collections

from classic_cnns.errors import ConfigError


def check(config: ml_collections.ConfigDict) -> None:
  """ConfigError (one line) unless config.init_from is empty or a run's workdir of
  config.model.name."""
  if not config.get("init_from"):
    return
  from classic_cnns.convert import runs

  src = config.init_from
  if not os.path.isdir(src):
    raise ConfigError(f"config.init_from={src}: no such directory")
  ckdir = os.path.join(src, "checkpoints")
  if not os.path.isdir(ckdir) or not any(d.isdigit() for d in os.listdir(ckdir)):
    raise ConfigError(
      f"config.init_from={src} holds no checkpoint; give a finished run's workdir or weights "
      f"converted with python -m classic_cnns.convert"
    )
  model, _ = runs.read_run_model(src)
  if model != config.model.name:
    raise ConfigError(
      f"config.init_from={src} holds model {model!r}, this config trains {config.model.name!r}; "
      f"use --config.model.name={model}"
    )


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if hasattr(v, "items"):
      out.update(_flat(v, prefix + (str(k),)))
    else:
      out[prefix + (str(k),)] = v
  return out


def load(config: ml_collections.ConfigDict, params: Any, batch_stats: Any) -> tuple[Any, Any, str]:
  """(params, batch_stats, message): `params` / `batch_stats` (the fresh ones, for the structure,
  shapes and the head's initialisation) with every variable of config.init_from's checkpoint in
  place; `message` names a re-initialised head ("" when none)."""
  import jax
  import numpy as np

  from classic_cnns.convert import runs

  src = config.init_from
  variables, _ = runs.read_variables(src)
  _, src_classes = runs.read_run_model(src)
  if config.model.get("scan_blocks") and config.model.name.startswith(("resnet", "plain")):
    from classic_cnns.models import create_model, resnet

    stages = create_model(config.model.name).stage_sizes
    if not any(k.endswith("_rest") for k in variables["params"]):
      variables = resnet.stack_blocks(variables, stages)
  head: list[str] = []

  def merge(collection: str, fresh: Any) -> Any:
    loaded = _flat(variables.get(collection, {}))
    fresh_flat = _flat(fresh)
    extra = sorted(set(loaded) - set(fresh_flat))
    if extra:
      raise ConfigError(
        f"config.init_from={src}: {collection}/{'/'.join(extra[0])} has no place in "
        f"{config.model.name} as configured"
      )
    leaves = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(fresh)[0]:
      key = tuple(str(getattr(p, "key", p)) for p in path)
      name = f"{collection}/{'/'.join(key)}"
      if key not in loaded:
        raise ConfigError(f"config.init_from={src}: the checkpoint has no {name}")
      value = np.asarray(loaded[key])
      if value.shape != tuple(leaf.shape):
        is_head = (
          value.shape[-1:] == (src_classes,)
          and tuple(leaf.shape[-1:]) == (config.model.num_classes,)
          and value.shape[:-1] == tuple(leaf.shape[:-1])
        )
        if not is_head:
          raise ConfigError(
            f"config.init_from={src}: {name} is {value.shape} there, {tuple(leaf.shape)} here"
          )
        head.append("/".join(key[:-1]))
        leaves.append(leaf)
        continue
      leaves.append(jax.device_put(value.astype(leaf.dtype), leaf.sharding))
    return jax.tree.unflatten(jax.tree.structure(fresh), leaves)

  params = merge("params", params)
  batch_stats = merge("batch_stats", batch_stats)
  message = ""
  if head:
    layers = ", ".join(sorted(set(head)))
    message = (
      f"init_from {src}: {src_classes} -> {config.model.num_classes} classes: the classifier "
      f"head ({layers}) is re-initialised"
    )
  return params, batch_stats, message


def apply(config: ml_collections.ConfigDict, state: Any, workdir: str) -> Any:
  """The trainer's initial `state` with config.init_from loaded (see module docstring); `state`
  itself when init_from is unset or the run resumes from `workdir`'s own checkpoints."""
  import jax

  from classic_cnns import workdir as workdir_lib

  if not config.get("init_from") or workdir_lib.has_checkpoints(workdir):
    return state
  params, batch_stats, message = load(config, state.params, state.batch_stats)
  state = state.replace(params=params, batch_stats=batch_stats)
  if getattr(state, "ema_params", None) is not None:
    state = state.replace(ema_params=params)
  if jax.process_index() == 0:
    print(message or f"init_from {config.init_from}: every variable loaded", flush=True)
  return state
