"""The experiment configuration: one `ml_collections.ConfigDict` schema shared by every config in
`configs/`, and its validation.

A config file in `configs/` does `config = base_config()` and changes what its paper says; every
field can then be overridden on the command line (`--config.optimizer.lr=0.05`). The config is
locked, so an unknown key is an error, and absl's `config_flags` rejects values of the wrong type.
`validate_config` then checks the values (names, ranges, divisibility; every float finite) before
anything is built or written.

Durations are in epochs or steps, both accepted: `num_epochs` / `num_steps` (a positive
`num_steps` wins), `eval_every_epochs` / `eval_every_steps`, and the schedule's `unit`
("epoch" or "step") for its warmup, boundaries and step size.
"""

from __future__ import annotations

import math

import ml_collections

from classic_cnns.errors import ConfigError

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "multistep", "cosine")
SOURCES = ("embedded", "npz", "tfds", "folder")
BN_STATS = ("global", "per_device", "ghost")
KERNELS = ("auto", "portable", "cpu")
CPU_CONVS = ("auto", "onednn", "mixed", "measured", "xla")
# evaluators.EVALUATORS and its aliases (tests/test_evaluators.py keeps the two lists equal).
EVAL_PROTOCOLS = (
  "centre",
  "center_crop",
  "full",
  "ten_crop",
  "dense_multiscale",
  "multi_crop_144",
  "single",
  "dense",
)


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Model: `name` picks the registered architecture; every other field is passed to it. The norm is
  # the model's own (its paper's kind and hyperparameters, e.g. Inception-v3's BatchNorm epsilon
  # 1e-3); `norm` (kind), `norm_groups`, `norm_epsilon`, `norm_momentum` (running-average decay)
  # override it explicitly (None = the model's). `attn` + `attn_reduction` become an AttnSpec.
  c.model = ml_collections.ConfigDict({"name": "lenet5", "num_classes": 10})
  c.model.norm_epsilon = ml_collections.config_dict.placeholder(float)
  c.model.norm_momentum = ml_collections.config_dict.placeholder(float)

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded"  # embedded | npz | tfds | folder
  c.data.name = "mnist"  # TFDS name (source=tfds); the embedded sample is MNIST
  c.data.path = ""  # .npz file (source=npz) or image-folder root (source=folder)
  c.data.data_dir = ""  # TFDS data_dir ("" = TFDS default)
  c.data.download = True  # TFDS: download a dataset that is not prepared yet
  c.data.val_size = 0  # hold out this many training examples as the validation split
  c.data.pad_to = 0  # zero-pad images to this square size (LeNet: MNIST 28 -> 32, Sec. II.B)
  # Normalisation (classic_cnns/data/augment.py), in jit: channel = per-channel mean (VGG Sec. 2.1),
  # pixel = per-pixel mean image of the training split (ResNet CIFAR Sec. 4.2, AlexNet Sec. 2), each
  # then divided by the per-channel std unless divide_std=False; none. gcn/zca: NiN's CIFAR
  # preprocessing (GCN to L2 norm `gcn`, e.g. 55; ZCA with eigenvalue bias zca_bias), use with
  # normalize="none". Statistics: auto = classic_cnns/data/metadata.py for a known TFDS dataset,
  # else computed from the training split at load time; data = always computed; metadata = the
  # table entry of data.name with any source.
  c.data.normalize = "channel"  # channel | pixel | none
  c.data.divide_std = True
  c.data.stats = "auto"  # auto | data | metadata
  c.data.gcn = 0.0  # 0 = off
  c.data.zca = False
  c.data.zca_bias = 0.1
  # Evaluation view: shorter side -> eval_resize, centre eval_crop crop (ImageNet style; 0 = off,
  # the full image, as CIFAR). With a crop family in augment, eval_crop defaults to its crop_size
  # and eval_resize to augment.resize (resize), scale_min (scale_jitter) or 8/7 x crop (inception).
  c.data.eval_resize = 0
  c.data.eval_crop = 0
  # A weight source's evaluation view (classic_cnns/data/augment.py PRESETS, docs/pretrained.md):
  # torchvision | torchvision_v2 | torchvision_inception | timm | timm_inception sets the mean/std
  # and the crop ratio (e.g. 256 -> 224, 342 -> 299); explicit eval_resize / eval_crop win; "" = off.
  c.data.eval_preset = ""
  c.data.on_device = True  # keep the uint8 arrays on the accelerator, gather batches in jit
  # Streaming (classic_cnns/data/streaming.py): decode (+ crop) image folders or TFDS splits on the
  # host with tf.data, for datasets too large for memory (ImageNet). augment (host mode): inception |
  # resize_crop | scale_jitter (S in [scale_min, scale_max]) | canvas (the central resize x resize
  # square; every in-jit op of data.augment then applies). stats_images: images sampled for statistics
  # (mean/std, pixel mean, ZCA, PCA) when the dataset's metadata has none.
  c.data.streaming = ml_collections.ConfigDict(
    {
      "enabled": False,
      "augment": "inception",
      "resize": 256,
      "crop": 224,
      "threads": 0,
      "scale_min": 256,
      "scale_max": 512,
      "stats_images": 1000,
    }
  )
  # Training augmentation, in jit with JAX RNG (classic_cnns/data/augment.py); enabled=False turns
  # every op off at once (training then sees the evaluation view): the augmentation ablation.
  c.data.augment = ml_collections.ConfigDict()
  c.data.augment.enabled = True
  c.data.augment.flip = False  # random horizontal flip
  c.data.augment.crop_padding = 0  # pad + random crop back (CIFAR: 4 px)
  # crop family: none | resize (shorter side -> resize, random crop_size crop: AlexNet 256 -> 224) |
  # inception (random-resized crop, area [area_min, area_max], aspect [aspect_min, aspect_max]) |
  # scale_jitter (shorter side -> S ~ U[scale_min, scale_max], random crop: VGG multi-scale)
  c.data.augment.crop = "none"
  c.data.augment.crop_size = 0  # output side of the crop family (0 = the image's shorter side)
  c.data.augment.resize = 256
  c.data.augment.scale_min = 256.0
  c.data.augment.scale_max = 512.0
  c.data.augment.area_min = 0.08
  c.data.augment.area_max = 1.0
  c.data.augment.aspect_min = 0.75
  c.data.augment.aspect_max = 4 / 3
  c.data.augment.pca_lighting = 0.0  # AlexNet PCA lighting noise std (0.1); 0 = off
  c.data.augment.brightness = 0.0  # colour jitter strengths (torchvision ColorJitter); 0 = off
  c.data.augment.contrast = 0.0
  c.data.augment.saturation = 0.0

  c.batch_size = 128  # global batch per optimizer step, split over all devices
  c.accum_steps = 1  # gradient accumulation: the batch is processed in this many micro-batches
  c.dtype = (
    "float32"  # compute dtype: float32 | bfloat16 (params, optimizer state, BN stats stay float32)
  )
  # Kernels, the implementation of the models' primitive ops (classic_cnns/backends): portable
  # (plain Flax / lax, every platform) | cpu (the XLA:CPU backend: oneDNN convolutions, custom
  # gradients, batched init; CPU-only runs; one line and exit 2 where it cannot run) | auto (cpu on a
  # CPU-only run, portable on GPU/TPU). The startup line says which is active and why.
  c.kernels = "auto"
  # The CPU backend's convolutions: auto (mixed on one device where oneDNN builds, else xla) | onednn
  # (every float32 conv) | mixed (oneDNN, but wide spatial convs on XLA without AVX-512) | measured
  # (each conv pass on whichever library a pre-pass timed faster here) | xla.
  c.cpu_convs = "auto"
  # Persistent XLA compilation cache: a rerun, a resumed run or another run of the same step loads
  # the compiled program instead of waiting for XLA again (backends.use_compilation_cache). auto =
  # $JAX_COMPILATION_CACHE_DIR if set, else ~/.cache/classic_cnns/xla (CLASSIC_CNNS_CACHE moves it);
  # a path; "" = off. Capped at 4 GiB, least recently used evicted, unless JAX_COMPILATION_CACHE_MAX_SIZE is set.
  c.compilation_cache_dir = "auto"
  c.eval_batch_size = 1000
  # The final evaluation's test-time protocol (classic_cnns/evaluators.py): centre (the evaluation
  # view above), ten_crop (AlexNet Sec. 4.1, ResNet Table 3), dense_multiscale (VGG Sec. 3.2,
  # ResNet Table 4), multi_crop_144 (GoogLeNet Sec. 10), ...; periodic evaluations use centre.
  c.eval_protocol = "centre"
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

  # Evaluate an exponential moving average of the parameters with this decay per step (Inception-v3
  # Sec. 8: "a running average of the parameters"; GoogLeNet Sec. 6 Polyak averaging); 0 = off, the
  # raw parameters. Checkpointed; evaluate and predict use it too.
  c.ema_decay = 0.0

  # Fine-tuning: a finished run's workdir (or converted weights, python -m classic_cnns.convert) whose
  # params and BatchNorm statistics start this run; a classifier head of another class count is
  # re-initialised (one printed line), the optimizer state is fresh. "" = train from scratch.
  c.init_from = ""

  c.loss = ml_collections.ConfigDict({"label_smoothing": 0.0, "aux_weight": 0.3})

  # BatchNorm statistics (see classic_cnns/models/layers.py): global batch, each device's slice
  # (the papers' multi-GPU runs), or ghost batches of `ghost_batch_size`.
  c.bn = ml_collections.ConfigDict({"stats": "global", "ghost_batch_size": 0})

  c.skip_nonfinite_steps = (
    False  # True: an update with NaN/Inf loss or gradients is skipped, not fatal
  )
  c.log_every_steps = 50
  c.eval_every_epochs = 1.0
  c.eval_every_steps = -1  # > 0 overrides eval_every_epochs
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  return c


def _choice(value: str, options: tuple[str, ...], key: str) -> None:
  if value not in options:
    raise ConfigError(f"config.{key}={value!r} is not one of {', '.join(options)}")


def _check_data(d: ml_collections.ConfigDict) -> None:
  """The normalisation / augmentation / evaluation-view fields of config.data."""
  from classic_cnns.data.augment import CROPS

  a = d.augment
  _choice(d.normalize, ("channel", "pixel", "none"), "data.normalize")
  _choice(d.stats, ("auto", "data", "metadata"), "data.stats")
  _choice(a.crop, CROPS, "data.augment.crop")
  for key, value in (
    ("data.pad_to", d.pad_to),
    ("data.eval_resize", d.eval_resize),
    ("data.eval_crop", d.eval_crop),
    ("data.augment.crop_padding", a.crop_padding),
    ("data.augment.crop_size", a.crop_size),
  ):
    if value < 0:
      raise ConfigError(f"config.{key} must be >= 0, got {value}")
  for key in ("gcn", "zca_bias"):
    if not 0 <= d[key] < float("inf"):
      raise ConfigError(f"config.data.{key} must be >= 0, got {d[key]}")
  for key in ("pca_lighting", "brightness", "contrast", "saturation"):
    if not 0 <= a[key] <= 10:
      raise ConfigError(f"config.data.augment.{key} must be in [0, 10], got {a[key]}")
  s = d.streaming
  _choice(
    s.augment, ("inception", "resize_crop", "scale_jitter", "canvas"), "data.streaming.augment"
  )
  if min(s.resize, s.crop, s.scale_min, s.stats_images) <= 0 or s.scale_max < s.scale_min:
    raise ConfigError(
      f"config.data.streaming: resize, crop, scale_min, stats_images must be positive and "
      f"scale_max >= scale_min, got {s.resize}, {s.crop}, {s.scale_min}..{s.scale_max}, {s.stats_images}"
    )
  if s.augment in ("resize_crop", "scale_jitter") and s.crop > (
    s.resize if s.augment == "resize_crop" else s.scale_min
  ):
    raise ConfigError(
      f"config.data.streaming.crop={s.crop} does not fit the {s.augment} images "
      f"(resize={s.resize}, scale_min={s.scale_min})"
    )
  from classic_cnns.data.augment import EVAL_PRESETS

  _choice(d.get("eval_preset", ""), EVAL_PRESETS, "data.eval_preset")
  if d.get("eval_preset") and (d.normalize != "channel" or d.gcn or d.zca or not d.divide_std):
    raise ConfigError(
      f"config.data.eval_preset={d.eval_preset!r} sets the mean/std normalisation; it needs "
      f"data.normalize='channel', divide_std=True and no gcn/zca"
    )
  if (d.gcn or d.zca) and d.normalize != "none":
    raise ConfigError(
      "config.data.gcn / data.zca replace the mean/std normalisation; also set "
      "config.data.normalize=none"
    )
  if d.zca and not d.zca_bias > 0:
    raise ConfigError(f"config.data.zca needs a positive config.data.zca_bias, got {d.zca_bias}")
  if a.crop != "none":
    if a.crop_padding:
      raise ConfigError(
        f"config.data.augment.crop={a.crop!r} and crop_padding={a.crop_padding} are two "
        f"crop families; use one"
      )
    if not 0 < a.resize <= 8192:
      raise ConfigError(f"config.data.augment.resize must be in [1, 8192], got {a.resize}")
    if not 0 < a.scale_min <= a.scale_max <= 8192:
      raise ConfigError(
        f"config.data.augment.scale_min/scale_max must satisfy 0 < min <= max <= 8192, "
        f"got {a.scale_min}, {a.scale_max}"
      )
    if not 0 < a.area_min <= a.area_max <= 1:
      raise ConfigError(
        f"config.data.augment.area_min/area_max must satisfy 0 < min <= max <= 1, "
        f"got {a.area_min}, {a.area_max}"
      )
    if not 0 < a.aspect_min <= a.aspect_max < float("inf"):
      raise ConfigError(
        f"config.data.augment.aspect_min/aspect_max must satisfy 0 < min <= max, "
        f"got {a.aspect_min}, {a.aspect_max}"
      )


def _leaves(cfg, prefix: str = ""):
  for key, value in cfg.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _check_finite(config: ml_collections.ConfigDict) -> None:
  """No field may be NaN or infinite (a NaN learning rate trains on NaNs, an infinite length never
  ends); tuples of numbers included."""
  for key, value in _leaves(config):
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(v, float) and not math.isfinite(v):
        raise ConfigError(f"config.{key} must be a finite number, got {value}")


def _check_schema(config: ml_collections.ConfigDict) -> None:
  """Every field outside config.model (the model's own keyword arguments) is one of base_config's: a
  config file assigning `c.optimizer.learning_rate` would otherwise add a field nothing reads."""
  known = {key for key, _ in _leaves(base_config())}
  for key, _ in _leaves(config):
    if not key.startswith("model.") and key not in known:
      raise ConfigError(
        f"config.{key} is not a config field (a typo in the config file? the fields are in "
        f"classic_cnns/config.py)"
      )


def _in_range(
  key: str,
  value,
  low: float,
  high: float = math.inf,
  low_open: bool = False,
  high_open: bool = False,
) -> None:
  ok = (value > low if low_open else value >= low) and (
    value < high if high_open else value <= high
  )
  if not ok:
    lo, hi = "(" if low_open else "[", ")" if high_open or high == math.inf else "]"
    raise ConfigError(f"config.{key} must be in {lo}{low:g}, {high:g}{hi}, got {value}")


def _check_numbers(config: ml_collections.ConfigDict) -> None:
  """Ranges of the numeric hyperparameters (after _check_finite)."""
  o, s, m = config.optimizer, config.schedule, config.model
  if not isinstance(config.seed, int) or not 0 <= config.seed < 2**31:
    raise ConfigError(f"config.seed must be an integer in [0, 2**31), got {config.seed}")
  _in_range("optimizer.lr", o.lr, 0, low_open=True)
  _in_range("optimizer.momentum", o.momentum, 0, 1, high_open=True)
  _in_range("optimizer.weight_decay", o.weight_decay, 0)
  _in_range("optimizer.b1", o.b1, 0, 1, high_open=True)
  _in_range("optimizer.b2", o.b2, 0, 1, high_open=True)
  _in_range("optimizer.eps", o.eps, 0, low_open=True)
  _in_range("optimizer.grad_clip_norm", o.grad_clip_norm, 0)
  _in_range("schedule.warmup", s.warmup, 0)
  _in_range("schedule.warmup_init", s.warmup_init, 0, 1)
  _in_range("schedule.step_size", s.step_size, 0)
  _in_range("schedule.decay_factor", s.decay_factor, 0, low_open=True)
  _in_range("schedule.final_lr_fraction", s.final_lr_fraction, 0)
  bounds = list(s.boundaries)
  if any(
    not isinstance(b, (int, float)) or isinstance(b, bool) or b < 0 for b in bounds
  ) or bounds != sorted(bounds):
    raise ConfigError(
      f"config.schedule.boundaries must be non-negative numbers in increasing order, got {s.boundaries}"
    )
  _in_range("loss.aux_weight", config.loss.aux_weight, 0)
  _in_range("data.val_size", config.data.val_size, 0)
  _in_range("data.streaming.threads", config.data.streaming.threads, 0)
  if config.num_steps > 0:
    _in_range("num_steps", config.num_steps, 1, 2**31 - 1)
  else:
    _in_range("num_epochs", config.num_epochs, 0, 1e6, low_open=True)
  if config.eval_every_steps <= 0:
    _in_range("eval_every_epochs", config.eval_every_epochs, 0, low_open=True)
  if m.get("norm_epsilon") is not None:
    _in_range("model.norm_epsilon", m.norm_epsilon, 0, low_open=True)
  if m.get("norm_momentum") is not None:
    _in_range("model.norm_momentum", m.norm_momentum, 0, 1)
  for key, value in m.items():  # the models' dropout rates (dropout, head_dropout, ...)
    if "dropout" in key and isinstance(value, float):
      _in_range(f"model.{key}", value, 0, 1, high_open=True)


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError (one line) for any value that cannot work; builds nothing."""
  from classic_cnns.models import registry

  _check_schema(config)
  _check_finite(config)
  registry.list_models()  # registers the families
  if config.model.name not in registry._REGISTRY:  # pylint: disable=protected-access
    raise ConfigError(registry.unknown_model_message(config.model.name))
  _choice(config.data.source, SOURCES, "data.source")
  _choice(config.optimizer.name, OPTIMIZERS, "optimizer.name")
  _choice(config.optimizer.weight_decay_mode, ("l2", "decoupled"), "optimizer.weight_decay_mode")
  _choice(config.optimizer.decay_mask, ("kernels", "all"), "optimizer.decay_mask")
  _choice(config.schedule.name, SCHEDULES, "schedule.name")
  _choice(config.schedule.unit, ("epoch", "step"), "schedule.unit")
  _choice(config.eval_protocol, EVAL_PROTOCOLS, "eval_protocol")
  _check_data(config.data)
  _choice(config.bn.stats, BN_STATS, "bn.stats")
  _choice(config.kernels, KERNELS, "kernels")
  _choice(config.cpu_convs, CPU_CONVS, "cpu_convs")
  if config.data.source in ("npz", "folder") and not config.data.path:
    raise ConfigError(f"config.data.source={config.data.source!r} needs config.data.path")
  for key in (
    "batch_size",
    "eval_batch_size",
    "log_every_steps",
    "keep_checkpoints",
    "checkpoint_every_steps",
  ):
    if config[key] <= 0:
      raise ConfigError(f"config.{key} must be positive, got {config[key]}")
  if not isinstance(config.model.get("num_classes"), int) or config.model.num_classes < 1:
    raise ConfigError(
      f"config.model.num_classes must be a positive integer, got {config.model.get('num_classes')!r}"
    )
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError("set a positive config.num_epochs or config.num_steps")
  if config.batch_size % num_devices:
    raise ConfigError(
      f"config.batch_size={config.batch_size} is not divisible by the "
      f"{num_devices} devices; use a multiple of {num_devices}"
    )
  if config.accum_steps < 1 or config.batch_size % (num_devices * config.accum_steps):
    raise ConfigError(
      f"config.batch_size={config.batch_size} must be divisible by devices x accum_steps "
      f"= {num_devices} x {config.accum_steps}"
    )
  _choice(config.dtype, ("float32", "bfloat16"), "dtype")
  _check_numbers(config)
  if not 0 <= config.ema_decay < 1:
    raise ConfigError(f"config.ema_decay must be in [0, 1) (0 = off), got {config.ema_decay}")
  if not 0 <= config.loss.label_smoothing < 1:
    raise ConfigError(
      f"config.loss.label_smoothing must be in [0, 1), got {config.loss.label_smoothing}"
    )
  if config.bn.stats == "ghost":
    g = config.bn.ghost_batch_size
    micro = config.batch_size // max(config.accum_steps, 1)
    if g <= 0 or micro % g:
      raise ConfigError(
        f"config.bn.ghost_batch_size={g} must be positive and divide the (micro-)batch {micro}"
      )
  if config.schedule.name == "multistep" and not config.schedule.boundaries:
    raise ConfigError("schedule.name='multistep' needs config.schedule.boundaries")
  if config.schedule.name == "step" and config.schedule.step_size <= 0:
    raise ConfigError("schedule.name='step' needs a positive config.schedule.step_size")
