"""The experiment configuration: one `ml_collections.ConfigDict` schema shared by every config in
`configs/`, and its validation.

A config file in `configs/` does `config = base_config()` and changes what its paper says; every
field can then be overridden on the command line (`--config.optimizer.lr=0.05`). The config is
locked, so an unknown key is an error, and absl's `config_flags` rejects values of the wrong type.
`validate_config` then checks the values (names, ranges, divisibility) before anything is built.

Durations are in epochs or steps, both accepted: `num_epochs` / `num_steps` (a positive
`num_steps` wins), `eval_every_epochs` / `eval_every_steps`, and the schedule's `unit`
("epoch" or "step") for its warmup, boundaries and step size.
"""
from __future__ import annotations

import ml_collections

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "multistep", "cosine")
SOURCES = ("embedded", "npz", "tfds", "folder")
BN_STATS = ("global", "per_device", "ghost")


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Model: `name` picks the registered architecture; every other field is passed to it
  # (`norm` + `norm_groups` become a NormSpec, `attn` + `attn_reduction` an AttnSpec).
  c.model = ml_collections.ConfigDict({"name": "lenet5", "num_classes": 10})

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded"  # embedded | npz | tfds | folder
  c.data.name = "mnist"  # TFDS name (source=tfds); the embedded sample is MNIST
  c.data.path = ""  # .npz file (source=npz) or image-folder root (source=folder)
  c.data.data_dir = ""  # TFDS data_dir ("" = TFDS default)
  c.data.download = True  # TFDS: download a dataset that is not prepared yet
  c.data.val_size = 0  # hold out this many training examples as the validation split
  c.data.pad_to = 0  # zero-pad images to this square size (LeNet: MNIST 28 -> 32, Sec. II.B)
  c.data.normalize = "channel"  # channel (mean/std of the training split) | none
  c.data.on_device = True  # keep the uint8 arrays on the accelerator, gather batches in jit
  # Streaming (classic_cnns/data/streaming.py): decode + crop JPEG folders on the host with tf.data,
  # for datasets too large for memory (ImageNet). augment: inception | resize_crop.
  c.data.streaming = ml_collections.ConfigDict(
      {"enabled": False, "augment": "inception", "resize": 256, "crop": 224, "threads": 0})
  c.data.augment = ml_collections.ConfigDict({"flip": False, "crop_padding": 0})

  c.batch_size = 128  # global batch per optimizer step, split over all devices
  c.accum_steps = 1  # gradient accumulation: the batch is processed in this many micro-batches
  c.dtype = "float32"  # compute dtype: float32 | bfloat16 (params, optimizer state, BN stats stay float32)
  c.eval_batch_size = 1000
  c.num_epochs = 10.0
  c.num_steps = -1  # > 0 overrides num_epochs

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"  # sgd | nesterov | adam | adamw | rmsprop
  c.optimizer.lr = 0.1  # peak learning rate
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 0.0
  c.optimizer.weight_decay_mode = "l2"  # l2 (added to the loss, the papers) | decoupled
  c.optimizer.decay_mask = "kernels"  # kernels (conv/dense weights only) | all
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.eps = 1e-8
  c.optimizer.grad_clip_norm = 0.0  # 0 = off

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "constant"  # constant | step | multistep | cosine
  c.schedule.unit = "epoch"  # epoch | step: unit of warmup, boundaries and step_size
  c.schedule.warmup = 0.0  # linear warmup from warmup_init * lr
  c.schedule.warmup_init = 0.0
  c.schedule.boundaries = ()  # multistep: lr *= decay_factor at each boundary
  c.schedule.step_size = 0.0  # step: lr *= decay_factor every step_size units
  c.schedule.decay_factor = 0.1
  c.schedule.final_lr_fraction = 0.0  # cosine: lr at the end as a fraction of the peak

  c.loss = ml_collections.ConfigDict({"label_smoothing": 0.0, "aux_weight": 0.3})

  # BatchNorm statistics (see classic_cnns/models/layers.py): global batch, each device's slice
  # (the papers' multi-GPU runs), or ghost batches of `ghost_batch_size`.
  c.bn = ml_collections.ConfigDict({"stats": "global", "ghost_batch_size": 0})

  c.skip_nonfinite_steps = False  # True: an update with NaN/Inf loss or gradients is skipped, not fatal
  c.log_every_steps = 50
  c.eval_every_epochs = 1.0
  c.eval_every_steps = -1  # > 0 overrides eval_every_epochs
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  return c


class ConfigError(ValueError):
  """A config value that cannot work; the message is one line meant for the user."""


def _choice(value: str, options: tuple[str, ...], key: str) -> None:
  if value not in options:
    raise ConfigError(f"config.{key}={value!r} is not one of {', '.join(options)}")


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError (one line) for any value that cannot work; builds nothing."""
  from classic_cnns.models import registry
  registry.list_models()  # registers the families
  if config.model.name not in registry._REGISTRY:  # pylint: disable=protected-access
    raise ConfigError(registry.unknown_model_message(config.model.name))
  _choice(config.data.source, SOURCES, "data.source")
  _choice(config.optimizer.name, OPTIMIZERS, "optimizer.name")
  _choice(config.optimizer.weight_decay_mode, ("l2", "decoupled"), "optimizer.weight_decay_mode")
  _choice(config.optimizer.decay_mask, ("kernels", "all"), "optimizer.decay_mask")
  _choice(config.schedule.name, SCHEDULES, "schedule.name")
  _choice(config.schedule.unit, ("epoch", "step"), "schedule.unit")
  _choice(config.data.normalize, ("channel", "none"), "data.normalize")
  _choice(config.bn.stats, BN_STATS, "bn.stats")
  if config.data.source in ("npz", "folder") and not config.data.path:
    raise ConfigError(f"config.data.source={config.data.source!r} needs config.data.path")
  for key in ("batch_size", "eval_batch_size", "log_every_steps", "keep_checkpoints",
              "checkpoint_every_steps"):
    if config[key] <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]}")
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError("set a positive config.num_epochs or config.num_steps")
  if config.batch_size % num_devices:
    raise ConfigError(f"config.batch_size={config.batch_size} is not divisible by the "
                      f"{num_devices} devices; use a multiple of {num_devices}")
  if config.accum_steps < 1 or config.batch_size % (num_devices * config.accum_steps):
    raise ConfigError(f"config.batch_size={config.batch_size} must be divisible by devices x accum_steps "
                      f"= {num_devices} x {config.accum_steps}")
  _choice(config.dtype, ("float32", "bfloat16"), "dtype")
  if config.optimizer.lr <= 0:
    raise ConfigError(f"config.optimizer.lr must be positive, got {config.optimizer.lr}")
  if not 0 <= config.loss.label_smoothing < 1:
    raise ConfigError(f"config.loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}")
  if config.bn.stats == "ghost":
    g = config.bn.ghost_batch_size
    micro = config.batch_size // max(config.accum_steps, 1)
    if g <= 0 or micro % g:
      raise ConfigError(f"config.bn.ghost_batch_size={g} must be positive and divide the (micro-)batch {micro}")
  if config.schedule.name == "multistep" and not config.schedule.boundaries:
    raise ConfigError("schedule.name='multistep' needs config.schedule.boundaries")
  if config.schedule.name == "step" and config.schedule.step_size <= 0:
    raise ConfigError("schedule.name='step' needs a positive config.schedule.step_size")
