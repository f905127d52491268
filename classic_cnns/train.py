"""The trainer, read top to bottom: model -> data -> state -> step -> loop -> eval -> checkpoint.

One `jax.jit`-compiled train step (state donated) over a 1-D device mesh: parameters replicated,
batches sharded on their first axis (data parallel; one device works the same). BatchNorm
statistics are over the global batch, each device's slice or ghost batches (config.bn.stats).
The whole run is a pure function of (config, seed): batch order, augmentation and dropout are
keyed by the step, so a run resumed from a checkpoint continues exactly.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from classic_cnns import backends, checkpoint, machine, optim, parallel
from classic_cnns import workdir as workdir_lib
from classic_cnns.config import ConfigError, validate_config
from classic_cnns.data import augment, pipeline, sources
from classic_cnns.metrics import MetricsWriter, Progress, format_duration
from classic_cnns.models import create_model, registry
from classic_cnns.models.layers import PORTABLE, AttnSpec, Kernels


class TrainingDivergedError(RuntimeError):
  """Loss or parameters became NaN/Inf; the message is one line meant for the user."""


# ----------------------------------------------------------------------------- model
def bn_virtual_batch_size(config: ml_collections.ConfigDict, num_devices: int) -> int | None:
  """Examples per BatchNorm statistics group in one forward pass (a micro-batch when accumulating)."""
  if config.bn.stats == "per_device":
    return config.batch_size // (num_devices * config.accum_steps)
  if config.bn.stats == "ghost":
    return config.bn.ghost_batch_size
  return None


def build_model(config: ml_collections.ConfigDict, num_devices: int = 1, kernels: Kernels = PORTABLE) -> nn.Module:
  """config.model -> module, computing with `kernels` (the backend's, `backends.select`). The norm is
  the model's own (`registry.model_norm`: its paper defaults, e.g. Inception-v3's BatchNorm epsilon
  1e-3) with the config's explicit values on top: `norm` (kind), `norm_groups`, `norm_epsilon`,
  `norm_momentum`, and the BatchNorm statistics scope of config.bn.stats. `attn` + `attn_reduction`
  become an AttnSpec. bn.stats other than global on a model without BatchNorm is a ConfigError."""
  kw = {k: v for k, v in config.model.to_dict().items() if v is not None}
  name = kw.pop("name")
  norm_fields = {"groups": kw.pop("norm_groups", None), "epsilon": kw.pop("norm_epsilon", None),
                 "momentum": kw.pop("norm_momentum", None)}
  kind = kw.pop("norm", None)
  spec = registry.model_norm(name, kind, **norm_fields)
  explicit = [key for key, v in (("norm", kind), *((f"norm_{k}", v) for k, v in norm_fields.items())) if v is not None]
  if spec is None and explicit:
    raise ConfigError(f"model {name!r} has no norm layers; remove config.model.{explicit[0]}")
  if config.bn.stats != "global":
    if spec is None or spec.kind != "batch":
      what = "no norm layers" if spec is None else f"norm {spec.kind!r}"
      raise ConfigError(f"config.bn.stats={config.bn.stats} applies to BatchNorm, but model {name!r} has "
                        f"{what}; use config.bn.stats=global")
    spec = dataclasses.replace(spec, virtual_batch_size=bn_virtual_batch_size(config, num_devices))
  if spec is not None:
    kw["norm"] = spec
  reduction = kw.pop("attn_reduction", 16)
  if kw.get("attn"):
    kw["attn"] = AttnSpec(kw["attn"], reduction=reduction)
  elif "attn" in kw:
    kw["attn"] = None
  if config.dtype != "float32":  # mixed precision: compute dtype; params, optimizer, BN stats stay float32
    kw["dtype"] = jnp.dtype(config.dtype)
  if kernels is not PORTABLE or registry.has_field(name, "kernels"):
    kw["kernels"] = kernels
  return create_model(name, **kw)


def select_backend(config: ml_collections.ConfigDict) -> backends.Backend:
  """config.kernels / config.cpu_convs -> this run's backend (`classic_cnns.backends`); ConfigError
  (one line) where it cannot run here."""
  try:
    backend = backends.select(config.kernels, config.cpu_convs)
  except backends.BackendError as e:
    raise ConfigError(str(e)) from None
  name = config.model.name
  if backend.name != "portable" and not registry.has_field(name, "kernels"):  # a model of one's own
    if config.kernels != "auto":
      raise ConfigError(f"model {name!r} has no `kernels` field, so config.kernels={config.kernels} cannot "
                        f"reach it; use --config.kernels=portable")
    return backends.Backend("portable", f"auto: model {name!r} has no kernels field")
  return backend


# ----------------------------------------------------------------------------- state
class TrainState(train_state.TrainState):
  batch_stats: Any
  rng: jax.Array  # base key; each step uses fold_in(rng, step)
  # Exponential moving average of the parameters (config.ema_decay > 0), what evaluation uses
  # (Inception-v3 Sec. 8); None when off, so the checkpoint holds no extra arrays.
  ema_params: Any = None


def eval_variables(state: TrainState) -> dict[str, Any]:
  """The variables a model is evaluated with: the moving average of the parameters where the run
  keeps one (config.ema_decay), else the parameters; the running BatchNorm statistics."""
  ema = getattr(state, "ema_params", None)
  params = state.params if ema is None else ema
  return {"params": params, "batch_stats": state.batch_stats}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple[int, ...],
                       seed: int, mesh, backend: backends.Backend | None = None, ema: bool = False) -> TrainState:
  """Initialises replicated parameters and optimizer state on the mesh (jit, out_shardings), compiled
  as `backend` compiles initialisations; `ema`: also the parameters' moving average, starting at
  the initial parameters. The parameters depend on the seed only, not the backend: the
  initialisation is traced with the portable kernels."""
  if "kernels" in {f.name for f in dataclasses.fields(model)}:
    model = model.clone(kernels=PORTABLE)

  def init():
    key = jax.random.PRNGKey(seed)
    params_key, dropout_key, state_key = jax.random.split(key, 3)
    variables = model.init({"params": params_key, "dropout": dropout_key},
                           jnp.zeros((1,) + input_shape, jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}), rng=state_key,
                             ema_params=variables["params"] if ema else None)

  shardings = jax.tree.map(lambda _: parallel.replicated(mesh), jax.eval_shape(init))
  return (backend or backends.PORTABLE_BACKEND).compile_init(init, shardings)()


# ----------------------------------------------------------------------------- steps
def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """Per-example softmax cross-entropy; label smoothing as Inception-v3 Sec. 7."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  k = min(k, logits.shape[-1])
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def split_aux(out) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  return (out[0], tuple(out[1])) if isinstance(out, tuple) else (out, ())


def all_finite(tree: Any) -> jax.Array:
  """True iff every element of every floating leaf is finite: one reduction per leaf of `x * 0`
  (0 where finite, NaN where not), so nothing is copied or concatenated and nothing overflows."""
  sums = [jnp.sum(x * 0) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.isfinite(sum(sums)) if sums else jnp.array(True)


def make_train_step(model: nn.Module, config: ml_collections.ConfigDict, prep: augment.Preprocess,
                    schedule: optax.Schedule, dtype):
  l2 = optim.uses_l2_loss(config)

  accum = config.accum_steps

  def grads_of(params, batch_stats, images, labels, dropout_key):
    def loss_fn(params):
      out, new_vars = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                  train=True, rngs={"dropout": dropout_key}, mutable=["batch_stats"])
      logits, aux = split_aux(out)
      data_loss = cross_entropy(logits, labels, config.loss.label_smoothing).mean()
      # GoogLeNet Sec. 5: auxiliary losses added with weight 0.3 during training only.
      aux_loss = sum(cross_entropy(a, labels, config.loss.label_smoothing).mean() for a in aux)
      loss = data_loss + config.loss.aux_weight * aux_loss
      if l2:
        loss = loss + config.optimizer.weight_decay * optim.l2_penalty(params, config.optimizer.decay_mask)
      return loss, (data_loss, logits.astype(jnp.float32), new_vars.get("batch_stats", {}))

    (loss, (data_loss, logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, loss, data_loss, logits, new_stats

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    images = augment.preprocess(batch["image"], prep, train=True, rng=aug_key, dtype=dtype)
    labels = batch["label"]
    if accum == 1:
      grads, loss, data_loss, logits, batch_stats = grads_of(state.params, state.batch_stats, images, labels,
                                                             dropout_key)
    else:
      # Gradient accumulation: `accum` micro-batches, rows strided (i, i+accum, ...) so that every
      # micro-batch spans all devices; gradients averaged = one step on the whole batch (without BN).
      micro = lambda x: x.reshape((x.shape[0] // accum, accum) + x.shape[1:]).swapaxes(0, 1)

      def body(carry, xs):
        grad_sum, stats = carry
        imgs, lbls, i = xs
        g, l, dl, lg, stats = grads_of(state.params, stats, imgs, lbls, jax.random.fold_in(dropout_key, i))
        return (jax.tree.map(jnp.add, grad_sum, g), stats), (l, dl, lg)

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, batch_stats), (losses, data_losses, logits) = jax.lax.scan(
          body, (zeros, state.batch_stats), (micro(images), micro(labels), jnp.arange(accum)))
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss, data_loss = losses.mean(), data_losses.mean()
      logits = logits.swapaxes(0, 1).reshape((labels.shape[0],) + logits.shape[2:])
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if config.ema_decay:  # Inception-v3 Sec. 8: evaluate a running average of the parameters
      d = config.ema_decay
      new_state = new_state.replace(ema_params=jax.tree.map(lambda e, p: d * e + (1 - d) * p,
                                                            state.ema_params, new_state.params))
    ok = jnp.isfinite(loss)
    if config.skip_nonfinite_steps:  # keep the previous state; the step counter (data order) advances
      ok = ok & all_finite(grads)  # a finite loss can still have non-finite gradients
      kept = state.replace(step=new_state.step)
      new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, kept)
    metrics = {"loss": data_loss, "total_loss": loss,
               "top1": topk_correct(logits, labels, 1).mean(),
               "top5": topk_correct(logits, labels, 5).mean(),
               "lr": schedule(state.step),
               "skipped": 1.0 - ok.astype(jnp.float32),
               "finite": jnp.isfinite(loss)}
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, prep: augment.Preprocess, dtype):
  def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    images = augment.preprocess(batch["image"], prep, train=False, rng=None, dtype=dtype)
    logits = model.apply(eval_variables(state), images, train=False)
    labels, mask = batch["label"], batch["mask"]
    return {"loss": jnp.sum(cross_entropy(logits, labels, 0.0) * mask),
            "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
            "top5": jnp.sum(topk_correct(logits, labels, 5) * mask),
            "count": jnp.sum(mask)}

  return eval_step


def make_train_batches(split, config: ml_collections.ConfigDict, mesh):
  """In-memory splits: sharded gathers (on device by default); streamed splits (image folder files
  or a TFDS split): tf.data on the host."""
  from classic_cnns.data import streaming
  if streaming.is_streamed(split):
    s = config.data.streaming
    kw = dict(mode=s.augment, resize=s.resize, crop=s.crop, channels=split.image_shape[-1], threads=s.threads,
              scale_range=(s.scale_min, s.scale_max))
    if hasattr(split, "files"):
      return streaming.StreamingTrainBatches(split.files, split.labels, config.batch_size, config.seed, mesh, **kw)
    from classic_cnns.data import tfds_stream
    return tfds_stream.TfdsTrainBatches(split, config.batch_size, config.seed, mesh, **kw)
  return pipeline.TrainBatches(split, config.batch_size, config.seed, mesh, config.data.on_device)


def eval_batches(split, batch_size: int, config: ml_collections.ConfigDict, mesh, canvas: int = 0):
  """Every example once, padded + masked. Streamed splits give the host's evaluation view (resize +
  centre crop; the canvas square in canvas mode) or, with `canvas`, the central canvas x canvas square
  of the image rescaled to that shorter side (evaluate.py's multi-view protocols)."""
  from classic_cnns.data import streaming
  if streaming.is_streamed(split):
    s = config.data.streaming
    side = canvas or streaming.streamed_shape(s)[0]
    return streaming.eval_batches(split, batch_size, mesh, resize=canvas or s.resize, crop=side, threads=s.threads)
  return pipeline.eval_batches(split, batch_size, mesh)


def evaluate(eval_step, state: TrainState, batches) -> dict[str, float]:
  """Loss, top-1 and top-5 accuracy over every example of `batches` (padded, masked tail)."""
  totals = None
  for batch in batches:
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  n = float(totals["count"])
  return {"loss": float(totals["loss"]) / n, "top1": float(totals["top1"]) / n,
          "top5": float(totals["top5"]) / n, "count": n}


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass
class RunResult:
  final_step: int
  test: dict[str, float]
  interrupted: int = 0  # signal number when stopped by SIGTERM/SIGINT


def _summarise(step_metrics: list[dict[str, np.ndarray]]) -> tuple[dict[str, float], int]:
  """Mean of each metric over the logged steps (skipped steps excluded), #skipped."""
  kept = [m for m in step_metrics if m["skipped"] == 0] or step_metrics
  values = {k: float(np.mean([m[k] for m in kept])) for k in kept[0] if k not in ("skipped", "finite")}
  skipped = int(sum(m["skipped"] for m in step_metrics))
  return values, skipped


# The whole state (parameters, BatchNorm statistics, optimizer state), checked wherever the loop
# logs, evaluates or saves: nothing NaN/Inf is ever written to a checkpoint.
state_all_finite = jax.jit(lambda state: all_finite((state.params, state.batch_stats, state.opt_state)))


def check_finite(window: list[dict[str, np.ndarray]], window_start: int, state: TrainState, config,
                 directory: str) -> None:
  """Raises TrainingDivergedError if a step of `window` (the host metrics of steps window_start+1 ..
  window_start+len(window)) has a NaN/Inf loss and was not skipped, or if `state` (after the last of
  them) is not finite. The step named is the first such loss, else the last step: the same at every
  rerun from the last checkpoint, since every earlier step was checked before it was saved or logged."""
  bad = next((i for i, m in enumerate(window) if not bool(m["finite"]) and not m["skipped"]), None)
  if bad is None and bool(state_all_finite(state)):
    return
  index = bad if bad is not None else len(window) - 1
  what = "the loss became" if bad is not None else "the model or optimizer state holds"
  hint = "" if config.skip_nonfinite_steps else ", or set config.skip_nonfinite_steps=True"
  raise TrainingDivergedError(
      f"training diverged: {what} NaN/Inf at step {window_start + index + 1} (lr {float(window[index]['lr']):.4g}); "
      f"start again in a new --workdir with a lower config.optimizer.lr or warmup (config.schedule.warmup)"
      f"{hint}; nothing from that step on was saved, the last good checkpoint is kept in {directory}")


def window_meta(window: list[dict[str, np.ndarray]], window_start: int) -> dict:
  """The per-step metrics since the last train record, for a checkpoint's metadata: a run resumed
  from it logs the same averages as an uninterrupted run."""
  keys = list(window[0]) if window else []
  return {"start": window_start,
          "metrics": {k: {"dtype": str(np.asarray(window[0][k]).dtype),
                          "values": [np.asarray(m[k]).item() for m in window]} for k in keys}}


def window_from_meta(carried: dict | None, resume_step: int, log_every: int) -> tuple[list[dict[str, np.ndarray]], int]:
  """(per-step metrics, the step before the first of them) to continue the logging window of a run
  resumed at `resume_step` from what its checkpoint carried: the steps after the last multiple of
  `log_every`, or as many as it carried (a partial window) or none (a checkpoint without them)."""
  try:
    start, metrics = int(carried["start"]), carried["metrics"]
    n = resume_step - start
    window = [{k: np.asarray(v["values"][i], v["dtype"]) for k, v in metrics.items()} for i in range(n)]
    if n < 0 or any(len(v["values"]) != n for v in metrics.values()):
      raise ValueError(n)
  except (TypeError, KeyError, ValueError, IndexError):
    return [], resume_step
  boundary = resume_step - resume_step % log_every
  if start < boundary:
    window, start = window[boundary - start:], boundary
  return window, start


def check_workdir_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError if the run in `workdir` (its config.json, if any) is of another model or
  model option (e.g. the ResNet scan_blocks parameter layout) than `config`: its checkpoints would
  not fit, or would compute another function."""
  workdir_lib.check_compatible(workdir, config, prefixes=("model.",))


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Checks that `workdir` can take this run, changing nothing in it: a workdir with checkpoints is
  continued only by a config of the same run (`workdir.check_compatible`: same model, data,
  preprocessing, seed, batch, optimizer, schedule, ...; a longer run allowed), one whose run has
  not saved a checkpoint yet only by the same model; it must be writable. Creates it if missing."""
  if workdir_lib.has_checkpoints(workdir):
    workdir_lib.check_compatible(workdir, config)
  elif os.path.isdir(os.path.join(workdir, "checkpoints")):
    check_workdir_model(workdir, config)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None


def load_training_data(config: ml_collections.ConfigDict, workdir: str) -> sources.Dataset:
  """The dataset of `config`, checked for this run (DatasetError / ConfigError, one line): labels in
  [0, config.model.num_classes), no empty split, a batch that fits the training split, and, for a
  workdir with checkpoints, the classes of the run it holds (classes.json)."""
  ds = sources.load_dataset(config.data, config.seed)
  if config.model.num_classes < len(ds.class_names):  # labels past the head would train on nothing
    raise ConfigError(f"config.model.num_classes={config.model.num_classes} is smaller than the "
                      f"{len(ds.class_names)} classes of dataset {ds.name}")
  sources.check_for_training(ds, config.batch_size, config.model.num_classes)
  if workdir_lib.has_checkpoints(workdir):
    workdir_lib.check_classes(workdir, ds.class_names)
  return ds


COMPILATION_CACHE_MAX_BYTES = 4 * 2 ** 30


def use_compilation_cache(setting: str) -> str | None:
  """config.compilation_cache_dir -> the persistent XLA compilation cache directory this process
  uses from now on (None: off). Programs that took >= 1 s to compile are stored there (JAX's
  persistent cache, keyed by the program, the XLA flags, the devices and the jax version), so a
  rerun or a resumed run skips the first-step compile (BENCHMARKS.md "First-step wait"). JAX sets
  its cache up at the first compile of the process: call this before anything is compiled. The
  directory is trusted (JAX runs what it loads from there): keep it private to you."""
  if not setting:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  if setting == "auto":
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(machine.cache_root(), "xla")
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
      jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
  else:
    path = os.path.abspath(os.path.expanduser(setting))
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  return path


@workdir_lib.training_lock  # the workdir is this run's alone while it runs (workdir.py)
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
  use_compilation_cache(config.get("compilation_cache_dir", "auto"))
  mesh = parallel.make_mesh()
  n_dev = jax.device_count()
  # Everything the run needs is checked before the workdir is written: the config, the run the
  # workdir holds, the data, the model. The run's files are written after the model is built.
  validate_config(config, n_dev)
  prepare_workdir(workdir, config)

  # Data: in-memory uint8 splits; preprocessing + augmentation run inside the jitted step.
  ds = load_training_data(config, workdir)
  prep = augment.preprocess_config(config.data, ds)
  train_batches = make_train_batches(ds.train, config, mesh)
  spe = train_batches.steps_per_epoch
  total_steps = config.num_steps if config.num_steps > 0 else int(round(config.num_epochs * spe))
  if total_steps < 1:
    raise ConfigError(f"config.num_epochs={config.num_epochs} is less than one step of {spe} per epoch; "
                      f"train longer or set config.num_steps")
  eval_every = config.eval_every_steps if config.eval_every_steps > 0 else max(int(round(config.eval_every_epochs * spe)), 1)
  eval_split, eval_name = (ds.val, "val") if ds.val is not None else (ds.test, "test")
  # The final numbers are on the test split; a train-only image folder has none, then on val.
  final_split, final_name = (ds.test, "test") if ds.test is not None else (ds.val, "val")
  eval_bs = -(-config.eval_batch_size // n_dev) * n_dev

  # Model, optimizer, state.
  dtype = jnp.dtype(config.dtype)
  h, w, c = ds.image_shape
  input_shape = prep.eval_shape(ds.image_shape)  # after pad_to / crops
  backend = select_backend(config)
  try:  # model options are checked abstractly (no compilation) before anything runs
    model = build_model(config, n_dev)
    abstract_params = jax.eval_shape(lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1,) + input_shape), train=False))["params"]
  except ConfigError:
    raise
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise ConfigError(f"config.model {config.model.name!r} cannot be built for input {input_shape}: "
                      f"{' '.join(str(e).split())[:300]}") from None
  if jax.process_index() == 0:  # checked: from here on the run writes its files
    augment.save_preprocess(prep, os.path.join(workdir, "preprocess.npz"), ds.image_shape)
  # The backend's kernels, prepared for this step's batch (the CPU `measured` policy times its convs).
  backend = backend.prepare(lambda kernels: build_model(config, n_dev, kernels),
                            (config.batch_size // config.accum_steps,) + input_shape)
  model = model.clone(kernels=backend.kernels)
  schedule = optim.make_schedule(config, spe, total_steps)
  tx = optim.make_optimizer(config, schedule, abstract_params)
  state = create_train_state(model, tx, input_shape, config.seed, mesh, backend, ema=config.ema_decay > 0)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))

  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint_every_steps, config.keep_checkpoints, cleanup_tmp=True)
  restored = ckpt.restore_latest(checkpoint.abstract_like(state))
  carried_window = None  # the per-step metrics since the checkpoint's last train record
  if restored is not None:
    state, carried_window = restored[0], restored[1].get("window")
  start_step = int(jax.device_get(state.step))
  if jax.process_index() == 0:
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
    with open(os.path.join(workdir, "classes.json"), "w") as f:
      json.dump(ds.class_names, f)
  writer = MetricsWriter(workdir, start_step)
  say = print if jax.process_index() == 0 else (lambda *a, **k: None)
  say(f"model {config.model.name}: {n_params:,} params | data {ds.name}: {len(ds.train)} train, "
      f"{len(ds.val) if ds.val is not None else 0} val, {len(ds.test) if ds.test is not None else 0} test, image {ds.image_shape} -> {input_shape} | "
      f"{n_dev} device(s) {jax.devices()[0].platform}, batch {config.batch_size}, {backend.describe()} | "
      f"{total_steps} steps ({total_steps / spe:.1f} epochs of {spe})", flush=True)
  if start_step:
    say(f"resuming from checkpoint at step {start_step} (epoch {start_step / spe:.2f})", flush=True)

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  train_step = jax.jit(make_train_step(model, config, prep, schedule, dtype), donate_argnums=0,
                       in_shardings=(rep, data), out_shardings=(rep, rep))
  eval_step = jax.jit(make_eval_step(model, prep, dtype), in_shardings=(rep, data), out_shardings=rep)

  # SIGTERM / SIGINT: finish the current step, save a checkpoint, exit cleanly.
  stop_signal = []
  handlers = {s: signal.signal(s, lambda signum, _: stop_signal.append(signum))
              for s in (signal.SIGTERM, signal.SIGINT)}
  progress = Progress(total_steps, start_step, config.batch_size, spe)
  # The per-step metrics of the current logging window (steps window_start+1 ..), device arrays
  # until the loop next looks at them; a resumed run continues its checkpoint's window.
  pending, window_start = window_from_meta(carried_window, start_step, config.log_every_steps)
  t0 = time.perf_counter()
  try:
    for step, batch in train_batches.iterate(start_step, total_steps):
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      done = step + 1
      stopping = bool(stop_signal)  # read once: a signal arriving later in this step is handled next step
      log_now = done % config.log_every_steps == 0 or done == total_steps
      eval_now = done % eval_every == 0 and done != total_steps
      save_now = ckpt.due(done, force=stopping or done == total_steps)
      if log_now or eval_now or save_now:  # nothing NaN/Inf is logged, evaluated or saved
        pending = jax.device_get(pending)
        check_finite(pending, window_start, state, config, ckpt.directory)
      if log_now:
        values, skipped = _summarise(pending)
        if skipped:
          say(f"warning: skipped {skipped} update(s) with NaN/Inf loss or gradients in steps "
              f"{window_start + 1}-{done}", flush=True)
        if not np.isfinite(values["loss"]):
          raise TrainingDivergedError(
              f"training diverged: every update of steps {window_start + 1}-{done} had a NaN/Inf loss or "
              f"gradients and was skipped (lr {values['lr']:.4g}); start again in a new --workdir with a lower "
              f"config.optimizer.lr or warmup (config.schedule.warmup); the last good checkpoint is kept in "
              f"{ckpt.directory}")
        rates = progress.rates(done)
        # Fewer steps than an uninterrupted run averages: resumed from a checkpoint without them.
        partial = window_start > (done - 1) // config.log_every_steps * config.log_every_steps
        writer.write(done, "train", values, extra_tb=rates, partial_window=partial)
        progress.line(done, values, rates)
        pending, window_start = [], done
      if eval_now:
        ev = evaluate(eval_step, state, eval_batches(eval_split, eval_bs, config, mesh))
        writer.write(done, eval_name, ev)
        say(f"  eval {eval_name} @ step {done}: loss {ev['loss']:.4f} top1 {100 * ev['top1']:.2f}% "
            f"top5 {100 * ev['top5']:.2f}% ({int(ev['count'])} images)", flush=True)
      if save_now:
        meta = {"model": config.model.name, "step": done, "epoch": done / spe,
                "window": window_meta(pending, window_start)}
        ckpt.save(done, state, meta)
      if stopping:
        ckpt.wait()
        say(f"stopped by signal {stop_signal[0]} at step {done}; checkpoint saved in {ckpt.directory}; "
            f"rerun the same command to resume", flush=True)
        return RunResult(done, {}, interrupted=stop_signal[0])
    test = evaluate(eval_step, state, eval_batches(final_split, eval_bs, config, mesh))
    writer.write(total_steps, f"{final_name}_final", test)
  finally:
    for s, h in handlers.items():
      signal.signal(s, h)
    try:
      ckpt.close()  # waits for the last save; CheckpointWriteError if it failed
    finally:
      writer.close()
  say(f"final {final_name} accuracy: {100 * test['top1']:.2f}% top-1, {100 * test['top5']:.2f}% top-5, "
      f"loss {test['loss']:.4f} on {int(test['count'])} {final_name} images (step {total_steps}, "
      f"{format_duration(time.perf_counter() - t0)} wall time in this run)", flush=True)
  return RunResult(total_steps, test)
