"""The blocks the paper configs in configs/ share: the argument after ':', the ImageNet and CIFAR-10
data, the SGD recipes and their learning-rate schedules, the log / evaluation / checkpoint cadence.

Not a config itself (no get_config). A config file loads it by its path, whatever the working
directory and however the file itself was loaded (`--config=configs/x.py`, an absolute path, or
importlib in the tests):

    from classic_cnns.cli import load_beside

    common = load_beside(__file__, "common.py")

Each function sets the fields it names on a config from `classic_cnns.config.base_config()` and
nothing else, so a config file reads as the list of its paper's choices.

ImageNet (ILSVRC-2012) is streamed (data.streaming.enabled=True): decoded and cropped on the host
with tf.data (classic_cnns/data/streaming.py), normalised in jit. As configured it reads TFDS
"imagenet2012", which TFDS cannot download: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar
in its manual_dir (~/tensorflow_datasets/downloads/manual/). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG instead, add
    --config.data.source=folder --config.data.path=/data/imagenet
to the config's command.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import ml_collections


def choose(arg: str | None, default: str, options: Collection[str], filename: str) -> str:
  """The argument after ':' in `--config=configs/FILENAME:ARG` (`default` without one); ValueError
  naming the file and the choices for any other."""
  arg = (arg or default).strip()
  if arg not in options:
    raise ValueError(f"configs/{filename}:{arg}: choose one of {', '.join(options)}")
  return arg


def no_argument(arg: str | None, filename: str) -> None:
  """ValueError for an argument given to a config that takes none."""
  if arg:
    raise ValueError(f"configs/{filename} takes no argument, got {arg!r}")


def imagenet(
  c: ml_collections.ConfigDict, augment: str, crop: int = 224, resize: int = 256
) -> None:
  """1000 classes; TFDS imagenet2012, streamed: the host's crop family `augment` (inception |
  resize_crop | scale_jitter | canvas) to `crop` x `crop` + horizontal flips, evaluation on the
  centre `crop` of the image resized to `resize`; per-channel mean/std normalisation in jit."""
  c.model.num_classes = 1000
  c.data.source = "tfds"
  c.data.name = "imagenet2012"  # manual download (TFDS manual_dir); see the module docstring
  c.data.normalize = "channel"
  c.data.augment.flip = True
  c.data.streaming.enabled = True  # decoded and cropped on the host
  c.data.streaming.augment = augment
  c.data.streaming.resize = resize
  c.data.streaming.crop = crop


def cifar10(c: ml_collections.ConfigDict, augment: bool = True) -> None:
  """10 classes; TFDS cifar10; with `augment` the standard augmentation of the CIFAR papers: zero-pad
  4 pixels, a random 32x32 crop, a random horizontal flip (none without)."""
  c.model.num_classes = 10
  c.data.source = "tfds"
  c.data.name = "cifar10"
  c.data.augment.flip = augment
  c.data.augment.crop_padding = 4 if augment else 0


def sgd(
  c: ml_collections.ConfigDict,
  lr: float,
  weight_decay: float,
  momentum: float = 0.9,
  nesterov: bool = False,
) -> None:
  """SGD with (Nesterov) momentum and an L2 weight-decay term in the loss (the papers' update)."""
  c.optimizer.name = "nesterov" if nesterov else "sgd"
  c.optimizer.lr = lr
  c.optimizer.momentum = momentum
  c.optimizer.weight_decay = weight_decay
  c.optimizer.weight_decay_mode = "l2"


def multistep(
  c: ml_collections.ConfigDict,
  boundaries: Sequence[float],
  unit: str = "epoch",
  factor: float = 0.1,
) -> None:
  """The learning rate times `factor` at each of `boundaries` (in `unit`s: epoch | step)."""
  c.schedule.name = "multistep"
  c.schedule.unit = unit
  c.schedule.boundaries = tuple(boundaries)
  c.schedule.decay_factor = factor


def step_decay(
  c: ml_collections.ConfigDict, every: float, factor: float, unit: str = "epoch"
) -> None:
  """The learning rate times `factor` every `every` `unit`s (exponential decay in steps)."""
  c.schedule.name = "step"
  c.schedule.unit = unit
  c.schedule.step_size = every
  c.schedule.decay_factor = factor


def cadence(
  c: ml_collections.ConfigDict,
  log_every_steps: int,
  checkpoint_every_steps: int,
  eval_every_epochs: float | None = None,
  eval_every_steps: int | None = None,
) -> None:
  """How often the run logs, checkpoints and evaluates (in epochs, or in steps)."""
  c.log_every_steps = log_every_steps
  if eval_every_epochs is not None:
    c.eval_every_epochs = eval_every_epochs
  if eval_every_steps is not None:
    c.eval_every_steps = eval_every_steps
  c.checkpoint_every_steps = checkpoint_every_steps
