"""Test-time evaluation protocols of the papers, on a trained workdir:

    python -m classic_cnns.evaluate --config=configs/X.py --workdir=DIR --protocol=ten_crop
    python -m classic_cnns.evaluate --config=configs/vgg_imagenet.py --workdir=DIR --protocol=dense --scales=256,384,512

Restores the newest checkpoint in DIR, runs the protocol over the test split (every example once;
the last batch padded and masked, as the trainer's evaluation), prints top-1/top-5 error and writes
them to DIR/eval_<protocol>.json. Protocols:

  single       the trainer's evaluation view (config.data.eval_resize / eval_crop: shorter side ->
               resize, centre crop; the full image when unset)
  center_crop  one centre crop: shorter side -> --resize, centre --crop (defaults: the config's
               eval view, else the training input size and 8/7 of it)
  ten_crop     the 4 corner crops + the centre crop and their horizontal flips, logits averaged
               (AlexNet Sec. 4.1, ResNet Sec. 3.4); sizes as center_crop
  dense        VGG dense evaluation (Sec. 3.2): the fully-convolutional net (`dense=True`) on the
               whole image rescaled to each Q in --scales, class-score map averaged, plus its flip;
               the soft-max posteriors are averaged over flips and scales (Sec. 3.2 / 4.2). Nets
               with a global-average-pooling head (ResNet, DenseNet) are fully convolutional as
               they are: ResNet's multi-scale testing, --scales=224,256,384,480,640 (Sec. 3.4, Table 4)
  full         the whole image (CIFAR), no resize or crop

Streamed data (config.data.streaming) supports every protocol: in `canvas` mode the host's squares are
the images; in the host-crop modes the multi-view protocols read the central square of each image
rescaled to the protocol's size (--resize for center/ten crop, the largest --scales for dense, whose
smaller scales are resized from it in jit), so dense evaluation sees the central square, not the
whole non-square image (a documented deviation from VGG Sec. 3.2); `full` needs canvas mode.

Bad input (no or unreadable checkpoint, a model without a dense mode, crops that do not fit) ends
with one line `error: ...` and exit status 2 (classic_cnns/cli.py; --debug shows the traceback).
The command holds the workdir's lock shared (classic_cnns/workdir.py): evaluations run beside each
other, but not beside a training run in the same workdir (one line, exit status 1).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os

from absl import flags
from ml_collections import config_flags

from classic_cnns import cli

PROTOCOLS = ("single", "center_crop", "ten_crop", "dense", "full")


def _define_flags() -> dict:
  """Defined only when run as a program, so that importing this module (tests, predict) adds no
  flags that would collide with classic_cnns.main's."""
  return {
    "config": config_flags.DEFINE_config_file(
      "config", None, "The run's config file (as given to classic_cnns.main).", lock_config=True
    ),
    "workdir": flags.DEFINE_string("workdir", None, "The run's workdir (holds checkpoints/)."),
    "protocol": flags.DEFINE_enum("protocol", "single", PROTOCOLS, "Test-time protocol."),
    "scales": flags.DEFINE_list(
      "scales",
      [],
      "dense: test scales Q (shorter side), e.g. 256,384,512; "
      "default: the evaluation resize, else the image's shorter side.",
    ),
    "resize": flags.DEFINE_integer(
      "resize", 0, "center_crop/ten_crop: shorter side before cropping (0 = default)."
    ),
    "crop": flags.DEFINE_integer("crop", 0, "center_crop/ten_crop: crop size (0 = default)."),
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


def has_dense_mode(model) -> bool:
  """VGG's dense form: FC layers applied as convolutions (`model(x, dense=True)`, Sec. 3.2)."""
  return "dense" in inspect.signature(type(model).__call__).parameters


def supports_dense(model) -> bool:
  """Whether the dense protocol applies: a dense form, or a global-average-pooling head that takes
  any input size (ResNet Sec. 3.4 / Table 4, DenseNet)."""
  return has_dense_mode(model) or getattr(type(model), "FULLY_CONVOLUTIONAL", False)


def dense_kwargs(model) -> dict:
  return {"dense": True} if has_dense_mode(model) else {}


# ----------------------------------------------------------------------------- eval steps
def _sums(scores, labels, mask, log_probs):
  import jax.numpy as jnp
  from classic_cnns import steps

  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return {
    "loss": jnp.sum(nll * mask),
    "top1": jnp.sum(steps.topk_correct(scores, labels, 1) * mask),
    "top5": jnp.sum(steps.topk_correct(scores, labels, 5) * mask),
    "count": jnp.sum(mask),
  }


def make_ten_crop_step(model, prep, resize: int, crop: int, dtype):
  """Eval step averaging the logits of 10 views (5 crops x flip), one view at a time (lax.map)."""
  import jax
  import jax.numpy as jnp
  from classic_cnns import steps
  from classic_cnns.data import augment

  def step(state, batch):
    x = augment.normalize(batch["image"], prep)
    windows = jnp.asarray(augment.ten_crop_windows(x.shape[1], x.shape[2], resize, crop))
    variables = steps.eval_variables(state)

    def view_logits(i):
      view = augment.crop_resize(x, (crop, crop), tuple(windows[i % 5]))
      view = jnp.where(i >= 5, view[:, :, ::-1, :], view)
      return model.apply(variables, view.astype(dtype), train=False).astype(jnp.float32)

    logits = jnp.mean(jax.lax.map(view_logits, jnp.arange(10)), axis=0)
    return _sums(logits, batch["label"], batch["mask"], jax.nn.log_softmax(logits))

  return step


def make_dense_step(model, prep, scales: list[int], dtype):
  """Eval step: dense (fully-convolutional) net at each scale Q and on the flipped image; soft-max
  posteriors averaged (VGG Sec. 3.2)."""
  import jax
  import jax.numpy as jnp
  from classic_cnns import steps
  from classic_cnns.data import augment

  def step(state, batch):
    x = augment.normalize(batch["image"], prep)
    variables = steps.eval_variables(state)
    probs = 0.0
    for q in scales:
      view = augment.resize_shorter(x, q)
      for v in (view, view[:, :, ::-1, :]):
        logits = model.apply(variables, v.astype(dtype), train=False, **dense_kwargs(model)).astype(
          jnp.float32
        )
        probs = probs + jax.nn.softmax(logits)
    log_probs = jnp.log(probs / (2 * len(scales)) + 1e-30)
    return _sums(log_probs, batch["label"], batch["mask"], log_probs)

  return step


# ----------------------------------------------------------------------------- the protocol run
def crop_sizes(prep, image_shape, resize: int = 0, crop: int = 0) -> tuple[int, int]:
  """(resize, crop) of center_crop / ten_crop: explicit values, else the config's evaluation view,
  else the model's input side and 8/7 of it (256 for 224)."""
  side = prep.eval_shape(image_shape)[0]
  crop = crop or prep.eval_crop or side
  resize = resize or prep.eval_resize or round(crop * 8 / 7)
  return resize, crop


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
  import jax.numpy as jnp
  from classic_cnns import parallel, steps
  from classic_cnns.data import batches
  from classic_cnns.config import ConfigError
  from classic_cnns.data import augment, sources, streaming

  if protocol not in PROTOCOLS:
    raise ConfigError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
  mesh = parallel.make_mesh()
  ds = sources.load_dataset(config.data, config.seed)
  split, split_name = (ds.test, "test") if ds.test is not None else (ds.val, "val")
  prep = augment.preprocess_config(config.data, ds)
  image_shape = tuple(ds.image_shape)
  input_shape = prep.eval_shape(image_shape)
  model, state, meta = restore(config, workdir, input_shape, mesh)
  canvas = (
    0  # streamed data cropped on the host: the multi-view protocols read canvas x canvas squares
  )
  if (
    streaming.is_streamed(split)
    and config.data.streaming.augment != "canvas"
    and protocol != "single"
  ):
    if protocol == "full":
      raise ConfigError(
        "--protocol=full needs whole images of one size; streamed data in host-crop mode has "
        "none (use center_crop, ten_crop or dense, or data.streaming.augment=canvas)"
      )
    if protocol == "dense":
      scales = scales or [config.data.streaming.resize]
      canvas = max(int(q) for q in scales)
    else:
      resize, crop = crop_sizes(prep, image_shape, resize or config.data.streaming.resize, crop)
      canvas = resize
    image_shape = (canvas, canvas, image_shape[-1])
  if protocol == "dense" and not supports_dense(model):
    raise ConfigError(
      f"model {config.model.name!r} has no dense evaluation mode (VGG's fully-convolutional "
      f"`dense=True`, Sec. 3.2); use --protocol=center_crop or ten_crop"
    )
  dtype = jnp.dtype(config.dtype)
  info: dict = {}
  h, w, _ = augment.padded_shape(image_shape, prep.pad_to)
  try:
    if protocol in ("single", "full", "center_crop"):
      if protocol == "full":
        prep = dataclasses.replace(prep, eval_resize=0, eval_crop=0)
      elif protocol == "center_crop":
        r, c = crop_sizes(prep, image_shape, resize, crop)
        prep = dataclasses.replace(prep, eval_resize=r, eval_crop=c)
      info = {"resize": prep.eval_resize, "crop": prep.eval_crop}
      if protocol == "center_crop":
        augment.center_window(
          h, w, prep.eval_resize, prep.eval_crop
        )  # a crop that does not fit: ValueError
      view_shape = prep.eval_shape(image_shape)
      step = steps.make_eval_step(model, prep, dtype)
    elif protocol == "ten_crop":
      r, c = crop_sizes(prep, image_shape, resize, crop)
      augment.ten_crop_windows(h, w, r, c)  # a crop that does not fit: ValueError
      info, view_shape = {"resize": r, "crop": c}, (c, c, image_shape[-1])
      step = make_ten_crop_step(model, prep, r, c, dtype)
    else:  # dense
      scales = [int(q) for q in (scales or [prep.eval_resize or min(h, w)])]
      if any(q <= 0 for q in scales):
        raise ConfigError(f"--scales must be positive, got {scales}")
      info, view_shape = (
        {"scales": scales},
        augment.resized_hw(h, w, min(scales)) + (image_shape[-1],),
      )
      step = make_dense_step(model, prep, scales, dtype)
    variables = steps.eval_variables(state)
    jax.eval_shape(
      lambda: model.apply(
        variables,
        jnp.zeros((1,) + tuple(view_shape)),
        train=False,
        **(dense_kwargs(model) if protocol == "dense" else {}),
      )
    )
  except ValueError as e:
    raise ConfigError(
      f"--protocol={protocol} on {config.model.name!r} ({image_shape[0]}x{image_shape[1]} images): "
      f"{' '.join(str(e).split())[:300]}"
    ) from None
  n_dev = jax.device_count()
  bs = -(-config.eval_batch_size // n_dev) * n_dev
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  step = jax.jit(step, in_shardings=(rep, data), out_shardings=rep)
  res = steps.evaluate(step, state, batches.eval_batches(split, bs, config, mesh, canvas))
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
