"""The trainer, read top to bottom: checks -> data -> model -> state -> steps -> loop ->
evaluators -> checkpoint.

One `jax.jit`-compiled train step (state donated) over a 1-D device mesh: parameters replicated,
batches sharded on their first axis (data parallel; one device works the same). BatchNorm
statistics are over the global batch, each device's slice or ghost batches (config.bn.stats).
The whole run is a pure function of (config, seed): batch order, augmentation and dropout are
keyed by the step, so a run resumed from a checkpoint continues exactly.

The pieces live beside it: `build.py` (config -> backend, model, initial state), `steps.py` (the
jitted steps, the non-finite guard), `data/split.py` (the splits the loop and the evaluators
iterate, whatever their source), `evaluators.py` (the test-time protocols: periodic evaluations use
`centre`, the final one config.eval_protocol), `workdir.py` (lock, compatibility),
`checkpoint.py`, `metrics.py`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from classic_cnns import backends, build, checkpoint, evaluators, metrics, optim, parallel, steps
from classic_cnns import init_from
from classic_cnns import workdir as workdir_lib
from classic_cnns.config import ConfigError, validate_config
from classic_cnns.data import augment, sources
from classic_cnns.metrics import MetricsWriter, Progress, format_duration
from classic_cnns.steps import TrainingDivergedError  # noqa: F401  (the run's error, raised by steps)


# ----------------------------------------------------------------------------- the run
@dataclasses.dataclass
class RunResult:
  final_step: int
  test: dict[str, float]
  interrupted: int = 0  # signal number when stopped by SIGTERM/SIGINT


def load_training_data(config: ml_collections.ConfigDict, workdir: str) -> sources.Dataset:
  """The dataset of `config`, checked for this run (DatasetError / ConfigError, one line): labels in
  [0, config.model.num_classes), no empty split, a batch that fits the training split, and, for a
  workdir with checkpoints, the classes of the run it holds (classes.json)."""
  ds = sources.load_dataset(config.data, config.seed)
  if config.model.num_classes < len(ds.class_names):  # labels past the head would train on nothing
    raise ConfigError(
      f"config.model.num_classes={config.model.num_classes} is smaller than the "
      f"{len(ds.class_names)} classes of dataset {ds.name}"
    )
  sources.check_for_training(ds, config.batch_size, config.model.num_classes)
  if workdir_lib.has_checkpoints(workdir):
    workdir_lib.check_classes(workdir, ds.class_names)
  return ds


@workdir_lib.training_lock  # the workdir is this run's alone while it runs (workdir.py)
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
  backends.use_compilation_cache(config.get("compilation_cache_dir", "auto"))
  mesh = parallel.make_mesh()
  n_dev = jax.device_count()
  # Everything the run needs is checked before the workdir is written: the config, the run the
  # workdir holds, the data, the model. The run's files are written after the model is built.
  validate_config(config, n_dev)
  init_from.check(config)  # config.init_from: a run's workdir of this model, before any write
  workdir_lib.prepare_workdir(workdir, config)

  # Data: uint8 splits (in memory, on device or streamed: data/split.py); preprocessing and the
  # in-jit augmentation run inside the jitted step.
  ds = load_training_data(config, workdir)
  prep = augment.preprocess_config(config.data, ds)
  train_batches = ds.train.train_batches(config, mesh)
  spe = train_batches.steps_per_epoch
  total_steps = config.num_steps if config.num_steps > 0 else int(round(config.num_epochs * spe))
  if total_steps < 1:
    raise ConfigError(
      f"config.num_epochs={config.num_epochs} is less than one step of {spe} per epoch; "
      f"train longer or set config.num_steps"
    )
  eval_every = (
    config.eval_every_steps
    if config.eval_every_steps > 0
    else max(int(round(config.eval_every_epochs * spe)), 1)
  )
  eval_split, eval_name = (ds.val, "val") if ds.val is not None else (ds.test, "test")
  # The final numbers are on the test split; a train-only image folder has none, then on val.
  final_split, final_name = (ds.test, "test") if ds.test is not None else (ds.val, "val")
  final_protocol = evaluators.get(config.get("eval_protocol", "centre"))  # ConfigError if unknown

  # Model, optimizer, state.
  dtype = jnp.dtype(config.dtype)
  h, w, c = ds.image_shape
  input_shape = prep.eval_shape(ds.image_shape)  # after pad_to / crops
  backend = build.select_backend(config)
  try:  # model options are checked abstractly (no compilation) before anything runs
    model = build.build_model(config, n_dev)
    abstract_vars = jax.eval_shape(
      lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1,) + input_shape),
        train=False,
      )
    )
    abstract_params = abstract_vars["params"]
  except ConfigError:
    raise
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise ConfigError(
      f"config.model {config.model.name!r} cannot be built for input {input_shape}: "
      f"{' '.join(str(e).split())[:300]}"
    ) from None
  # The final evaluation's protocol, traced abstractly on this model and data (ConfigError: a model
  # without a dense form, crops that do not fit), before anything is written.
  final_protocol(model, prep, config, mesh).check(abstract_vars, final_split)
  if jax.process_index() == 0:  # checked: from here on the run writes its files
    augment.save_preprocess(prep, os.path.join(workdir, "preprocess.npz"), ds.image_shape)
  # The backend's kernels, prepared for this step's batch (the CPU `measured` policy times its convs).
  backend = backend.prepare(
    lambda kernels: build.build_model(config, n_dev, kernels),
    (config.batch_size // config.accum_steps,) + input_shape,
  )
  model = model.clone(kernels=backend.kernels)
  schedule = optim.make_schedule(config, spe, total_steps)
  tx = optim.make_optimizer(config, schedule, abstract_params)
  state = build.create_train_state(
    model, tx, input_shape, config.seed, mesh, backend, ema=config.ema_decay > 0
  )
  state = init_from.apply(config, state, workdir)  # config.init_from: fine-tuning
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))

  ckpt = checkpoint.Checkpointer(
    workdir, config.checkpoint_every_steps, config.keep_checkpoints, cleanup_tmp=True
  )
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
  say(
    f"model {config.model.name}: {n_params:,} params | data {ds.name}: {len(ds.train)} train, "
    f"{len(ds.val) if ds.val is not None else 0} val, {len(ds.test) if ds.test is not None else 0} test, image {ds.image_shape} -> {input_shape} | "
    f"{n_dev} device(s) {jax.devices()[0].platform}, batch {config.batch_size}, {backend.describe()} | "
    f"{total_steps} steps ({total_steps / spe:.1f} epochs of {spe})",
    flush=True,
  )
  if start_step:
    say(f"resuming from checkpoint at step {start_step} (epoch {start_step / spe:.2f})", flush=True)

  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  train_step = jax.jit(
    steps.make_train_step(model, config, prep, schedule, dtype),
    donate_argnums=0,
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
  )
  # Periodic evaluations: the trainer's view (centre); the final one: config.eval_protocol.
  periodic_eval = evaluators.make("centre", model, prep, config, mesh)
  final_eval = (
    periodic_eval
    if final_protocol is evaluators.Centre
    else final_protocol(model, prep, config, mesh)
  )

  # SIGTERM / SIGINT: finish the current step, save a checkpoint, exit cleanly.
  stop_signal = []
  handlers = {
    s: signal.signal(s, lambda signum, _: stop_signal.append(signum))
    for s in (signal.SIGTERM, signal.SIGINT)
  }
  progress = Progress(total_steps, start_step, config.batch_size, spe)
  # The per-step metrics of the current logging window (steps window_start+1 ..), device arrays
  # until the loop next looks at them; a resumed run continues its checkpoint's window.
  pending, window_start = metrics.window_from_meta(
    carried_window, start_step, config.log_every_steps
  )
  t0 = time.perf_counter()
  try:
    for step, batch in train_batches.iterate(start_step, total_steps):
      state, step_metrics = train_step(state, batch)
      pending.append(step_metrics)
      done = step + 1
      stopping = bool(
        stop_signal
      )  # read once: a signal arriving later in this step is handled next step
      log_now = done % config.log_every_steps == 0 or done == total_steps
      eval_now = done % eval_every == 0 and done != total_steps
      save_now = ckpt.due(done, force=stopping or done == total_steps)
      if log_now or eval_now or save_now:  # nothing NaN/Inf is logged, evaluated or saved
        pending = jax.device_get(pending)
        steps.check_finite(pending, window_start, state, config, ckpt.directory)
      if log_now:
        values, skipped = metrics.summarise_window(pending)
        if skipped:
          say(
            f"warning: skipped {skipped} update(s) with NaN/Inf loss or gradients in steps "
            f"{window_start + 1}-{done}",
            flush=True,
          )
        if not np.isfinite(values["loss"]):
          raise steps.TrainingDivergedError(
            f"training diverged: every update of steps {window_start + 1}-{done} had a NaN/Inf loss or "
            f"gradients and was skipped (lr {values['lr']:.4g}); start again in a new --workdir with a lower "
            f"config.optimizer.lr or warmup (config.schedule.warmup); the last good checkpoint is kept in "
            f"{ckpt.directory}"
          )
        rates = progress.rates(done)
        # Fewer steps than an uninterrupted run averages: resumed from a checkpoint without them.
        partial = window_start > (done - 1) // config.log_every_steps * config.log_every_steps
        writer.write(done, "train", values, extra_tb=rates, partial_window=partial)
        progress.line(done, values, rates)
        pending, window_start = [], done
      if eval_now:
        ev = periodic_eval.evaluate(state, eval_split)
        writer.write(done, eval_name, ev)
        say(
          f"  eval {eval_name} @ step {done}: loss {ev['loss']:.4f} top1 {100 * ev['top1']:.2f}% "
          f"top5 {100 * ev['top5']:.2f}% ({int(ev['count'])} images)",
          flush=True,
        )
      if save_now:
        meta = {
          "model": config.model.name,
          "step": done,
          "epoch": done / spe,
          "window": metrics.window_meta(pending, window_start),
        }
        ckpt.save(done, state, meta)
      if stopping:
        ckpt.wait()
        say(
          f"stopped by signal {stop_signal[0]} at step {done}; checkpoint saved in {ckpt.directory}; "
          f"rerun the same command to resume",
          flush=True,
        )
        return RunResult(done, {}, interrupted=stop_signal[0])
    test = final_eval.evaluate(state, final_split)
    writer.write(total_steps, f"{final_name}_final", test)
  finally:
    for s, h in handlers.items():
      signal.signal(s, h)
    try:
      ckpt.close()  # waits for the last save; CheckpointWriteError if it failed
    finally:
      writer.close()
  say(
    f"final {final_name} accuracy: {100 * test['top1']:.2f}% top-1, {100 * test['top5']:.2f}% top-5, "
    f"loss {test['loss']:.4f} on {int(test['count'])} {final_name} images (step {total_steps}, "
    f"{format_duration(time.perf_counter() - t0)} wall time in this run)"
    + ("" if final_protocol is evaluators.Centre else f" [{final_eval.name} protocol]"),
    flush=True,
  )
  return RunResult(total_steps, test)
