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

from classic_cnns import checkpoint, optim, parallel
from classic_cnns.batched_init import batch_random_bits
from classic_cnns.config import ConfigError
from classic_cnns.data import augment, pipeline, sources
from classic_cnns.kernels import onednn
from classic_cnns.metrics import MetricsWriter, Progress, format_duration
from classic_cnns.models import create_model
from classic_cnns.models import layers
from classic_cnns.models.layers import AttnSpec, NormSpec


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


def select_conv_backend(config: ml_collections.ConfigDict, num_devices: int) -> tuple[str, str]:
  """config.conv_backend -> (backend, why), and sets it for the steps this process traces next
  (layers.set_conv_backend). `auto` takes `mixed` on a 1-device CPU run when oneDNN's kernels build
  here: oneDNN for every float32 conv, except those with a kernel larger than 1x1 and >= 128 input
  and output channels on a CPU without AVX-512, where XLA's are faster (BENCHMARKS.md, AMD EPYC section). `measured` (opt-in) runs each
  conv pass on oneDNN or XLA, whichever kernels/autotune.py timed faster. An explicit
  `onednn`/`mixed`/`measured` that cannot work is a ConfigError (one line), never a silent fallback."""
  want = config.get("conv_backend", "auto")
  platform = jax.default_backend()
  needs_onednn = ("onednn", "mixed", "measured")
  if want == "xla":
    name, why = "xla", "config.conv_backend=xla"
  elif platform != "cpu" or num_devices != 1:
    if want in needs_onednn:
      raise ConfigError(f"config.conv_backend={want} runs on one CPU device; this run has {num_devices} "
                        f"{platform} device(s) (use auto or xla)")
    name, why = "xla", f"auto: {num_devices} {platform} device(s)"
  else:
    ok, reason = onednn.available()
    if not ok and want in needs_onednn:
      raise ConfigError(f"config.conv_backend={want}: {reason}")
    if not ok:
      name, why = "xla", f"auto: oneDNN unavailable, {reason}"
    elif want == "measured":  # per conv shape and pass, the library measured faster here (kernels/autotune.py)
      name, why = "measured", "measured: float32 convs on oneDNN or XLA, per pass as timed on this machine"
    elif want == "onednn" or onednn.cpu_has_avx512():
      name, why = ("onednn" if want == "onednn" else "mixed"), f"{want}: float32 convs on oneDNN"
    else:
      name, why = "mixed", (f"{want}: float32 convs on oneDNN, those with a kernel > 1x1 and >= "
                            f"{layers.MIXED_XLA_MIN_CHANNELS} input and output channels on XLA (no AVX-512 here)")
  layers.set_conv_backend(name)
  return name, why


def build_model(config: ml_collections.ConfigDict, num_devices: int = 1) -> nn.Module:
  """config.model -> module; `norm`/`norm_groups` and `attn`/`attn_reduction` become specs. Also
  selects the process's convolution backend from config.conv_backend (select_conv_backend)."""
  select_conv_backend(config, num_devices)
  kw = dict(config.model.to_dict())
  name = kw.pop("name")
  groups = kw.pop("norm_groups", 32)
  if "norm" in kw:
    kw["norm"] = NormSpec(kw["norm"], groups=groups,
                          virtual_batch_size=bn_virtual_batch_size(config, num_devices))
  reduction = kw.pop("attn_reduction", 16)
  if kw.get("attn"):
    kw["attn"] = AttnSpec(kw["attn"], reduction=reduction)
  elif "attn" in kw:
    kw["attn"] = None
  if config.dtype != "float32":  # mixed precision: compute dtype; params, optimizer, BN stats stay float32
    kw["dtype"] = jnp.dtype(config.dtype)
  return create_model(name, **kw)


# ----------------------------------------------------------------------------- state
class TrainState(train_state.TrainState):
  batch_stats: Any
  rng: jax.Array  # base key; each step uses fold_in(rng, step)


# XLA options for compiling the parameter initialisation only (the train step keeps the defaults:
# level 1 made it no faster to compile and no faster to run, benchmarks/torch_comparison.md section 4).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def create_train_state(model: nn.Module, tx: optax.GradientTransformation, input_shape: tuple[int, ...],
                       seed: int, mesh) -> TrainState:
  """Initialises replicated parameters and optimizer state on the mesh (jit, out_shardings)."""

  def init():
    key = jax.random.PRNGKey(seed)
    params_key, dropout_key, state_key = jax.random.split(key, 3)
    variables = model.init({"params": params_key, "dropout": dropout_key},
                           jnp.zeros((1,) + input_shape, jnp.float32), train=False)
    return TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx,
                             batch_stats=variables.get("batch_stats", {}), rng=state_key)

  # The forward pass is dead code here; what XLA compiles is the parameters' sampling. Drawn one by
  # one that is ~13 kernels per parameter (threefry loops); `batch_random_bits` draws the same bits
  # in one call per size bucket (DenseNet-BC-100's init compile 12.4 -> 5.7 s on 2 AMD cores,
  # benchmarks/batched_init_compile.py). Backend level 1
  # compiles the rest 2-5x faster than LLVM's -O2 with bit-identical parameters (level 0 changes
  # the sampler's last bit); benchmarks/torch_comparison.md, section 4. Traced with XLA's
  # convolutions, so that the `measured` backend does not time this batch-1 pass's convs.
  with layers.conv_backend("xla"):
    abstract = jax.eval_shape(init)
    shardings = jax.tree.map(lambda _: parallel.replicated(mesh), abstract)
    return compile_init(batch_random_bits(init), out_shardings=shardings)()


def compile_init(init_fn, *args: Any, out_shardings: Any = None):
  """`jax.jit(init_fn)` lowered for `args` and compiled with INIT_COMPILER_OPTIONS (call it with `args`)."""
  lowered = jax.jit(init_fn, out_shardings=out_shardings).lower(*args)
  return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)


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
  """True iff every element of every leaf is finite. One check over the concatenated leaves: a
  check per leaf made XLA compile an is-finite and a reduce kernel per parameter (DenseNet-264:
  ~3,200 of the step's ~8,000 kernels, half its compile time; BENCHMARKS.md "First-step wait")."""
  leaves = jax.tree.leaves(tree)
  if not leaves:
    return jnp.array(True)
  return jnp.all(jnp.isfinite(jnp.concatenate([jnp.ravel(x) for x in leaves])))


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
    ok = jnp.isfinite(loss) & all_finite(grads)
    if config.skip_nonfinite_steps:  # keep the previous state; the step counter (data order) advances
      kept = state.replace(step=new_state.step)
      new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, kept)
    metrics = {"loss": data_loss, "total_loss": loss,
               "top1": topk_correct(logits, labels, 1).mean(),
               "top5": topk_correct(logits, labels, 5).mean(),
               "lr": schedule(state.step),
               "skipped": 1.0 - ok.astype(jnp.float32),
               "finite": jnp.isfinite(loss) & all_finite(new_state.params)}
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, prep: augment.Preprocess, dtype):
  def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    images = augment.preprocess(batch["image"], prep, train=False, rng=None, dtype=dtype)
    logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, images, train=False)
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


def _summarise(step_metrics: list[dict[str, np.ndarray]]) -> tuple[dict[str, float], int, bool]:
  """Mean of each metric over the logged steps (skipped steps excluded), #skipped, params finite."""
  kept = [m for m in step_metrics if m["skipped"] == 0] or step_metrics
  values = {k: float(np.mean([m[k] for m in kept])) for k in kept[0] if k not in ("skipped", "finite")}
  skipped = int(sum(m["skipped"] for m in step_metrics))
  return values, skipped, all(bool(m["finite"]) for m in step_metrics)


def check_workdir_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError if the run in `workdir` (its config.json, if any) is of another model or
  parameter layout than `config`, whose checkpoints would not fit."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    previous_model = json.load(f).get("model", {})
  previous = previous_model.get("name")
  if previous != config.model.name:
    raise ConfigError(f"workdir {workdir} holds a run of model {previous!r}, not {config.model.name!r}; "
                      f"use another --workdir")
  # ResNet scan_blocks stacks parameters: the checkpoints of the other layout would not fit.
  before, now = previous_model.get("scan_blocks", False), config.model.get("scan_blocks", False)
  if before != now:
    raise ConfigError(f"workdir {workdir} holds a run with model.scan_blocks={before} (another parameter "
                      f"layout); use --config.model.scan_blocks={before} or another --workdir")


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Creates `workdir` and checks it is writable; refuses one holding a run of another model
  (its checkpoints would not fit). Touches no existing checkpoint."""
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    check_workdir_model(workdir, config)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None


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
    path = os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(onednn.cache_root(), "xla")
    if "JAX_COMPILATION_CACHE_MAX_SIZE" not in os.environ:
      jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_MAX_BYTES)
  else:
    path = os.path.abspath(os.path.expanduser(setting))
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", path)
  return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> RunResult:
  use_compilation_cache(config.get("compilation_cache_dir", "auto"))
  mesh = parallel.make_mesh()
  n_dev = jax.device_count()
  prepare_workdir(workdir, config)

  # Data: in-memory uint8 splits; preprocessing + augmentation run inside the jitted step.
  ds = sources.load_dataset(config.data, config.seed)
  if config.model.num_classes < len(ds.class_names):  # labels past the head would train on nothing
    raise ConfigError(f"config.model.num_classes={config.model.num_classes} is smaller than the "
                      f"{len(ds.class_names)} classes of dataset {ds.name}")
  prep = augment.preprocess_config(config.data, ds, save_to=workdir)
  train_batches = make_train_batches(ds.train, config, mesh)
  spe = train_batches.steps_per_epoch
  total_steps = config.num_steps if config.num_steps > 0 else int(round(config.num_epochs * spe))
  eval_every = config.eval_every_steps if config.eval_every_steps > 0 else max(int(round(config.eval_every_epochs * spe)), 1)
  eval_split, eval_name = (ds.val, "val") if ds.val is not None else (ds.test, "test")
  # The final numbers are on the test split; a train-only image folder has none, then on val.
  final_split, final_name = (ds.test, "test") if ds.test is not None else (ds.val, "val")
  eval_bs = -(-config.eval_batch_size // n_dev) * n_dev

  # Model, optimizer, state.
  dtype = jnp.dtype(config.dtype)
  h, w, c = ds.image_shape
  input_shape = prep.eval_shape(ds.image_shape)  # after pad_to / crops
  try:  # model options are checked abstractly (no compilation) before anything runs
    model = build_model(config, n_dev)
    abstract_params = layers.abstract_eval(lambda: model.init(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
        jnp.zeros((1,) + input_shape), train=False))["params"]
  except ConfigError:  # config.conv_backend that cannot work here: its own message
    raise
  except (ValueError, TypeError, ZeroDivisionError) as e:
    raise ConfigError(f"config.model {config.model.name!r} cannot be built for input {input_shape}: "
                      f"{' '.join(str(e).split())[:300]}") from None
  conv_backend, conv_why = select_conv_backend(config, n_dev)
  schedule = optim.make_schedule(config, spe, total_steps)
  tx = optim.make_optimizer(config, schedule, abstract_params)
  state = create_train_state(model, tx, input_shape, config.seed, mesh)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))

  ckpt = checkpoint.Checkpointer(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  restored = ckpt.restore_latest(checkpoint.abstract_like(state))
  if restored is not None:
    state = restored[0]
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
      f"{n_dev} device(s) {jax.devices()[0].platform}, batch {config.batch_size}, convs {conv_backend} ({conv_why}) | "
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
  pending: list[dict[str, jax.Array]] = []
  t0 = time.perf_counter()
  try:
    for step, batch in train_batches.iterate(start_step, total_steps):
      state, metrics = train_step(state, batch)
      pending.append(metrics)
      done = step + 1
      if done % config.log_every_steps == 0 or done == total_steps:
        values, skipped, params_finite = _summarise(jax.device_get(pending))
        pending = []
        if skipped:
          say(f"warning: skipped {skipped} update(s) with NaN/Inf loss or gradients in steps "
              f"{done - config.log_every_steps + 1}-{done}", flush=True)
        if not params_finite or not np.isfinite(values["loss"]):
          raise TrainingDivergedError(
              f"loss or parameters became NaN/Inf by step {done} (lr {values['lr']:.4g}); "
              f"lower config.optimizer.lr or add warmup (config.schedule.warmup), or set "
              f"config.skip_nonfinite_steps=True; the last good checkpoint is kept in {ckpt.directory}")
        rates = progress.rates(done)
        writer.write(done, "train", values, extra_tb=rates)
        progress.line(done, values, rates)
      if done % eval_every == 0 and done != total_steps:
        ev = evaluate(eval_step, state, eval_batches(eval_split, eval_bs, config, mesh))
        writer.write(done, eval_name, ev)
        say(f"  eval {eval_name} @ step {done}: loss {ev['loss']:.4f} top1 {100 * ev['top1']:.2f}% "
            f"top5 {100 * ev['top5']:.2f}% ({int(ev['count'])} images)", flush=True)
      meta = {"model": config.model.name, "step": done, "epoch": done / spe}
      ckpt.maybe_save(done, state, meta, force=bool(stop_signal) or done == total_steps)
      if stop_signal:
        ckpt.wait()
        say(f"stopped by signal {stop_signal[0]} at step {done}; checkpoint saved in {ckpt.directory}; "
            f"rerun the same command to resume", flush=True)
        return RunResult(done, {}, interrupted=stop_signal[0])
    test = evaluate(eval_step, state, eval_batches(final_split, eval_bs, config, mesh))
    writer.write(total_steps, f"{final_name}_final", test)
  finally:
    for s, h in handlers.items():
      signal.signal(s, h)
    ckpt.close()
    writer.close()
  say(f"final {final_name} accuracy: {100 * test['top1']:.2f}% top-1, {100 * test['top5']:.2f}% top-5, "
      f"loss {test['loss']:.4f} on {int(test['count'])} {final_name} images (step {total_steps}, "
      f"{format_duration(time.perf_counter() - t0)} wall time in this run)", flush=True)
  return RunResult(total_steps, test)
