"""The config of one variant: dataset spec, the plan's overrides, `--set`, then the data-dependent fields.

    config = variant_config(plan, variant, dataset, seed, sets)   # touches no data
    facts = probe_dataset(config)                                  # counts the training split
    resolve_validation(config, facts)                              # data.val_size = the rule below

Dataset specs (`--dataset`):
  embedded               the MNIST sample in the package, zero-padded to 32x32
  cifar10_folder[:PATH]  CIFAR-10 as a JPEG training folder PATH/train/<class>/*.jpg (default
                         /tmp/cifar10_jpeg, extracted from ../shared/datasets/cifar10_jpeg_train.tar.gz
                         when missing)
  folder:PATH            any folder of equal-size images PATH/train/<class>/* (+ PATH/test or PATH/val)
  tfds:NAME[@DIR]        a TFDS dataset, prepared under DIR (or `--set data.data_dir=DIR`; default:
                         TFDS's own); a dataset whose images vary in size (imagenet2012) is streamed
  npz:PATH               local arrays x_train y_train x_test y_test
  imagenet_folder:PATH   an ImageNet-style folder PATH/train/<wnid>/*.JPEG + PATH/val/<wnid>/*.JPEG,
                         streamed from disk, normalised with ImageNet's channel statistics

Validation hold-out (`data.val_size`, VAL_AUTO = -1 until the dataset is seen): none when the dataset
has its own test split (embedded, npz, folders with test/ or val/, streamed TFDS), except an in-memory
TFDS dataset, which keeps the ResNet paper's protocol (curves on a held-out part of train, final
numbers on test). Otherwise `min(5000, max(classes, round(10% of the training images)))` are held
out: CIFAR-10's 50k -> 45k/5k as the ResNet paper (Sec. 4.2), a 40-image, 2-class folder -> 36/4.
`--set data.val_size=N` fixes it instead.

Streamed data is decoded and cropped on the host (classic_cnns/data/streaming.py): the plan's crop
family (data.augment.crop inception / scale_jitter / resize, sizes, evaluation view) moves to the
host's mode of the same name (`host_crops`), so one plan runs on a CIFAR folder in memory and on a
streamed ImageNet folder alike. `--set data.streaming.augment=canvas` keeps every in-jit op instead.

The config hash (`config_hash`) names a variant's recipe: the whole config except the seed and the
fields that do not change the numbers or only say where things are on this machine (NOT_HASHED),
plus the dataset's identity (kind and name, not its path). Results made under another hash are stale.
A field added to the config after results were published enters the hash only when set away from
the value that leaves training unchanged (NEUTRAL_WHEN), so a new option does not make every stored
summary stale; tests/test_experiments.py checks that every published summary's hash still matches.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
import os
import subprocess
from typing import Any, Sequence

import ml_collections

from classic_cnns.config import ConfigError, base_config
from classic_cnns.data.common import IMAGE_EXTENSIONS, DatasetError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR_TARBALL = os.path.join(
  os.path.dirname(REPO), "shared", "datasets", "cifar10_jpeg_train.tar.gz"
)
DEFAULT_CIFAR_FOLDER = "/tmp/cifar10_jpeg"
VAL_AUTO = -1
VAL_FRACTION = 0.1
VAL_MAX = 5000
KINDS = ("embedded", "cifar10_folder", "folder", "tfds", "npz", "imagenet_folder")
# Where things are on this machine, how fast they run, how often they are saved: not the recipe.
NOT_HASHED = (
  "seed",
  "data.path",
  "data.data_dir",
  "data.download",
  "data.on_device",
  "data.streaming.threads",
  "kernels",
  "cpu_convs",
  "compilation_cache_dir",
  "checkpoint_every_steps",
  "keep_checkpoints",
  "eval_batch_size",
)

# Fields that leave a run's numbers unchanged at this value: omitted from the hash while they hold
# it. Every config field added after the first published results belongs here with its no-op value.
NEUTRAL_WHEN: dict[str, Any] = {
  "eval_protocol": "centre",  # the final evaluation's protocol (classic_cnns/evaluators.py)
  "init_from": "",  # fine-tuning from a workdir (classic_cnns/init_from.py); "" = from scratch
  "data.eval_preset": "",  # a weight source's evaluation view (data/augment.py PRESETS); "" = off
}


# ----------------------------------------------------------------------------- datasets
@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  kind: str
  arg: str = ""  # path, or TFDS name
  data_dir: str = ""  # TFDS only (NAME@DIR)

  @property
  def identity(self) -> str:
    """What the results depend on: the kind and the dataset's name (the folder's base name), not where it is."""
    if self.kind in ("embedded",):
      return self.kind
    if self.kind == "tfds":
      return f"tfds:{self.arg}"
    return f"{self.kind}:{os.path.basename(os.path.normpath(self.arg))}"


def parse_dataset(spec: str) -> DatasetSpec:
  kind, _, arg = spec.partition(":")
  if kind not in KINDS:
    raise ConfigError(
      f"--dataset={spec!r}: use embedded | cifar10_folder[:PATH] | folder:PATH | tfds:NAME[@DIR] | "
      f"npz:PATH | imagenet_folder:PATH"
    )
  if kind == "cifar10_folder":
    arg = arg or DEFAULT_CIFAR_FOLDER
  if kind == "tfds":
    name, _, data_dir = arg.partition("@")
    return DatasetSpec(kind, name or "cifar10", data_dir)
  if kind in ("folder", "npz", "imagenet_folder") and not arg:
    raise ConfigError(f"--dataset={spec!r} needs a path: {kind}:PATH")
  return DatasetSpec(kind, arg)


def apply_dataset(config: ml_collections.ConfigDict, dataset: str | DatasetSpec) -> str:
  """Sets config.data for a --dataset spec (no data is read); returns a short description."""
  spec = parse_dataset(dataset) if isinstance(dataset, str) else dataset
  d = config.data
  if spec.kind == "embedded":
    d.source, d.pad_to, d.val_size = "embedded", 32, 0
    return "embedded MNIST sample (10k train / 2k test, 28x28x1 zero-padded to 32x32)"
  if spec.kind in ("cifar10_folder", "folder"):
    d.source, d.path, d.val_size = "folder", spec.arg, VAL_AUTO
    what = "CIFAR-10 JPEG training folder" if spec.kind == "cifar10_folder" else "image folder"
    return f"{what} {spec.identity.split(':', 1)[1]} (in memory; validation held out if it has no test split)"
  if spec.kind == "tfds":
    from classic_cnns.data import metadata

    d.source, d.name, d.data_dir, d.val_size = "tfds", spec.arg, spec.data_dir, VAL_AUTO
    info = metadata.get(spec.arg)
    if info is not None and info.image_shape is None:  # images of different sizes: streamed
      d.streaming.enabled = True
      return f"TFDS {spec.arg}, streamed, final numbers on its {info.test_split} split"
    return f"TFDS {spec.arg}: train less a held-out validation part (curves), final numbers on the test split"
  if spec.kind == "npz":
    d.source, d.path, d.val_size = "npz", spec.arg, VAL_AUTO
    return f"npz arrays {os.path.basename(spec.arg)}"
  d.source, d.path, d.val_size = "folder", spec.arg, VAL_AUTO  # imagenet_folder
  d.streaming.enabled = True
  d.name, d.stats = (
    "imagenet2012",
    "metadata",
  )  # ImageNet's channel statistics (metadata.py), no image scan
  return f"ImageNet-style folder {spec.identity.split(':', 1)[1]}, streamed (train/, final numbers on val/)"


def describe_dataset(dataset: str) -> str:
  return apply_dataset(base_config(), dataset)


def ensure_cifar_folder(path: str) -> None:
  if os.path.isdir(os.path.join(path, "train")):
    return
  if os.path.normpath(path) == DEFAULT_CIFAR_FOLDER and os.path.exists(CIFAR_TARBALL):
    print(f"extracting {CIFAR_TARBALL} -> /tmp", flush=True)
    subprocess.run(["tar", "xzf", CIFAR_TARBALL, "-C", "/tmp"], check=True)
    return
  raise DatasetError(
    f"no CIFAR-10 image folder at {path}; extract it with "
    f"`tar xzf ../shared/datasets/cifar10_jpeg_train.tar.gz -C /tmp`"
  )


@dataclasses.dataclass(frozen=True)
class DataFacts:
  """What the validation rule needs to know of a dataset."""

  num_train: int
  num_classes: int
  has_test: bool  # a test split of its own (test/ or val/ folder, TFDS test/validation, npz x_test)


def probe_dataset(config: ml_collections.ConfigDict) -> DataFacts:
  """Counts the training split of config.data (folders: file names only; TFDS: the prepared
  dataset's info, else the loaded split; npz/embedded: the arrays)."""
  d = config.data
  streamed = bool(d.streaming.enabled)
  return _probe(d.source, d.path, d.name, d.data_dir, bool(d.download), streamed)


@functools.lru_cache(maxsize=8)
def _probe(
  source: str, path: str, name: str, data_dir: str, download: bool, streamed: bool
) -> DataFacts:
  from classic_cnns.data import sources

  if source == "embedded":
    ds = sources.load_embedded()
    return DataFacts(len(ds.train), ds.num_classes, True)
  if source == "npz":
    ds = sources.load_npz(path)
    return DataFacts(len(ds.train), ds.num_classes, True)
  if source == "folder":
    if os.path.normpath(path) == DEFAULT_CIFAR_FOLDER:
      ensure_cifar_folder(path)
    return _count_folder(path)
  if source == "tfds":
    if streamed:
      return DataFacts(0, 0, True)  # train + validation/test splits (tfds_stream), nothing held out
    facts = _prepared_tfds_facts(name, data_dir)
    if facts is None:
      ds = sources.load_tfds(name, data_dir, download)
      facts = DataFacts(len(ds.train), ds.num_classes, ds.test is not None)
    return facts
  raise DatasetError(f"unknown data source {source!r}")


def _count_folder(root: str) -> DataFacts:
  train = os.path.join(root, "train")
  if not os.path.isdir(train):
    raise DatasetError(f"{root} has no train/ subfolder (expects root/train/<class>/*.jpg)")
  classes = sorted(c for c in os.listdir(train) if os.path.isdir(os.path.join(train, c)))
  n = sum(
    1
    for c in classes
    for f in os.listdir(os.path.join(train, c))
    if f.lower().endswith(IMAGE_EXTENSIONS)
  )
  if not n:
    raise DatasetError(f"no images (*.jpg, *.jpeg, *.png) under {train}/<class>/")
  has_test = any(os.path.isdir(os.path.join(root, s)) for s in ("test", "val"))
  return DataFacts(n, len(classes), has_test)


def _prepared_tfds_facts(name: str, data_dir: str) -> DataFacts | None:
  """The split sizes of a prepared TFDS dataset from its info (no data read); None if not prepared."""
  try:
    from classic_cnns.data.tf_ops import _tf

    _tf()
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
      return None
    splits = builder.info.splits
    return DataFacts(
      splits["train"].num_examples,
      builder.info.features["label"].num_classes,
      any(s in splits for s in ("test", "validation")),
    )
  except Exception:  # pylint: disable=broad-except  # unknown name, no info: loading says why
    return None


def validation_size(facts: DataFacts, source: str, streamed: bool) -> int:
  """The hold-out rule (module docstring)."""
  if facts.has_test and not (source == "tfds" and not streamed):
    return 0
  n = min(VAL_MAX, max(facts.num_classes, int(round(VAL_FRACTION * facts.num_train))))
  if facts.num_train - n < max(facts.num_classes, 1):
    raise DatasetError(
      f"{facts.num_train} training images in {facts.num_classes} classes are too few to hold out "
      f"{n} for validation and train on the rest; give more images or --set data.val_size=N"
    )
  return n


def resolve_validation(config: ml_collections.ConfigDict, facts: DataFacts) -> None:
  if config.data.val_size == VAL_AUTO:
    config.data.val_size = validation_size(
      facts, config.data.source, bool(config.data.streaming.enabled)
    )


# ----------------------------------------------------------------------------- streamed crops
def host_crops(config: ml_collections.ConfigDict) -> None:
  """On streamed data, moves the in-jit crop family to the host's mode of the same name: sizes and
  the evaluation view carry over (inception: eval shorter side eval_resize or 8/7 x crop; scale_jitter:
  S range, eval at eval_resize or S_min; resize: shorter side `resize`). The host flips every
  training crop, so the in-jit flip is turned off. No-op in canvas mode or without a crop family."""
  d, a = config.data, config.data.augment
  s = d.streaming
  if not s.enabled or s.augment == "canvas" or a.crop == "none":
    return
  crop = int(a.crop_size) or int(s.crop)
  if a.crop == "inception":
    if (a.area_min, a.area_max, round(a.aspect_min, 4), round(a.aspect_max, 4)) != (
      0.08,
      1.0,
      0.75,
      1.3333,
    ):
      raise ConfigError(
        "streamed data: the host's inception crop has area 8-100% and aspect 3/4-4/3; other "
        "data.augment.area_*/aspect_* need data.streaming.augment=canvas"
      )
    s.augment, s.resize = "inception", int(d.eval_resize) or int(round(crop * 8 / 7))
  elif a.crop == "scale_jitter":
    s.augment, s.scale_min, s.scale_max = "scale_jitter", int(a.scale_min), int(a.scale_max)
    s.resize = int(d.eval_resize) or int(a.scale_min)
  elif a.crop == "resize":
    if d.eval_resize and d.eval_resize != a.resize:
      raise ConfigError(
        f"streamed data: the host's resize_crop mode evaluates at the training resize "
        f"{a.resize}, not data.eval_resize={d.eval_resize}; use data.streaming.augment=canvas"
      )
    s.augment, s.resize = "resize_crop", int(a.resize)
  else:
    raise ConfigError(
      f"streamed data: no host mode for data.augment.crop={a.crop!r}; use data.streaming.augment=canvas"
    )
  if d.eval_crop and d.eval_crop != crop:
    raise ConfigError(
      f"streamed data evaluates on the training crop size {crop}, not data.eval_crop={d.eval_crop}"
    )
  s.crop = crop
  a.crop, a.crop_size, a.flip = "none", 0, False
  d.eval_resize = d.eval_crop = 0


# ----------------------------------------------------------------------------- overrides
def set_key(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
  """config["a.b.c"] = value (a plan's override); a new key is allowed only under `model` (model options)."""
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    if p not in node:
      raise ConfigError(f"experiment override {key!r}: no config section {p!r}")
    node = node[p]
  if leaf not in node and parents != ["model"]:
    raise ConfigError(f"experiment override {key!r} is not a config field (classic_cnns/config.py)")
  if (
    leaf in node
    and node[leaf] is not None
    and isinstance(node[leaf], float)
    and isinstance(value, int)
  ):
    value = float(value)
  node[leaf] = value


def parse_sets(items: Sequence[str]) -> list[tuple[str, str]]:
  """["a.b=1", ...] -> [("a.b", "1"), ...]; ConfigError for an item without '='."""
  out = []
  for item in items:
    key, eq, value = item.partition("=")
    key = key.strip()
    if not eq or not key:
      raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set optimizer.lr=0.05")
    if key == "seed":
      raise ConfigError("--set seed=...: the seeds are chosen with --seeds")
    out.append((key, value))
  return out


def _has_key(config: ml_collections.ConfigDict, key: str) -> bool:
  node = config
  for part in key.split("."):
    if not isinstance(node, ml_collections.ConfigDict) or part not in node:
      return False
    node = node[part]
  return True


def _untyped(config: ml_collections.ConfigDict, key: str) -> bool:
  """A field holding a plain None (no placeholder type): ml_collections cannot parse a value for it."""
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  return node.get_type(leaf) is type(None)


def apply_sets(config: ml_collections.ConfigDict, sets: Sequence[tuple[str, str]]) -> None:
  """Applies `--set KEY=VALUE` overrides with ml_collections' command-line rules (the parser of the
  field's type, as `--config.KEY=VALUE` of classic_cnns.main). A key the config lacks is an error,
  except a model option `model.X`: the model's constructor checks it (value read as a Python literal)."""
  if not sets:
    return
  from absl import flags
  from ml_collections import config_flags

  known = [(k, v) for k, v in sets if _has_key(config, k) and not _untyped(config, k)]
  for key, value in sets:
    if (key, value) in known:
      continue
    parts = key.split(".")
    if len(parts) == 2 and parts[0] == "model":  # a new model option, or one a plan set to None
      try:
        config.model[parts[1]] = ast.literal_eval(value)
      except (ValueError, SyntaxError):
        config.model[parts[1]] = value
      continue
    raise ConfigError(
      f"--set {key}=...: unknown config key {key!r} (classic_cnns/config.py; new keys only as "
      f"model options model.NAME)"
    )
  if not known:
    return
  argv = ["experiments.run"] + [f"--config.{k}={v}" for k, v in known]
  fv = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict(
      "config", config, flag_values=fv, lock_config=False, sys_argv=argv
    )
    fv(argv)
  except (KeyError, AttributeError) as e:
    raise ConfigError(
      f"--set: unknown config key {str(e.args[0] if e.args else e).strip(chr(34) + chr(39))!r}"
    ) from None
  except (flags.Error, ValueError, TypeError) as e:
    text = " ".join(str(e).split()).replace("flag --config.", "--set ")
    raise ConfigError(text[:300]) from None


def variant_config(
  plan, variant, dataset: str | DatasetSpec, seed: int, sets: Sequence[tuple[str, str]] = ()
) -> ml_collections.ConfigDict:
  """base_config -> dataset -> plan.base -> variant -> --set -> host-side crops; seed. Reads no data."""
  config = base_config()
  apply_dataset(config, dataset)
  for key, value in {**plan.base, **variant.overrides}.items():
    set_key(config, key, value)
  apply_sets(config, sets)
  host_crops(config)
  config.seed = seed
  return config


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort())


def config_hash(config: ml_collections.ConfigDict, dataset: str | DatasetSpec) -> str:
  """12 hex digits naming the recipe (module docstring); the same on every machine."""
  spec = parse_dataset(dataset) if isinstance(dataset, str) else dataset
  flat = {
    k: v
    for k, v in flatten(config_dict(config)).items()
    if k not in NOT_HASHED and not (k in NEUTRAL_WHEN and v == NEUTRAL_WHEN[k])
  }
  payload = json.dumps({"config": flat, "dataset": spec.identity}, sort_keys=True, default=str)
  return hashlib.sha256(payload.encode()).hexdigest()[:12]
