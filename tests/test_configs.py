"""Every paper config in configs/: loads with each documented argument, validates, builds its model
with the expected parameter count (abstractly, jax.eval_shape: nothing is compiled), and starts its
docstring with the command that runs it. The blocks they share (configs/common.py) load from any
working directory. Plus one tiny end-to-end run of the ResNet CIFAR config."""

import glob
import math
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from classic_cnns.config import ConfigError, validate_config
from classic_cnns.models import registry
from classic_cnns.build import build_model
from tests.helpers import load_config_module

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = ("common.py",)  # the blocks the configs share, not a config
CONFIG_FILES = sorted(
  os.path.basename(p)
  for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
  if os.path.basename(p) not in SHARED
)

# Configs whose model options change the registered count (everything else must equal the
# registry's paper_params for config.model.name).
EXPECTED_PARAMS = {
  ("nin_cifar.py", "fc"): 973_396,  # 966,986 + 8*8*10*10 + 10 (classic_cnns/models/nin.py)
  ("nin_cifar.py", "fc_dropout"): 973_396,
  ("nin_cifar.py", "fc,aug"): 973_396,
  ("nin_cifar.py", "fc_dropout,aug"): 973_396,
}


def cases():
  out = []
  for f in CONFIG_FILES:
    args = getattr(load_config_module(f), "ARGS", ())
    out += [(f, None)] + [(f, a) for a in args]
  return out


CASES = cases()


def test_the_paper_configs_exist():
  expected = {
    "resnet_cifar.py",
    "densenet_cifar.py",
    "nin_cifar.py",
    "alexnet_imagenet.py",
    "vgg_imagenet.py",
    "googlenet_imagenet.py",
    "inception_v3_imagenet.py",
    "resnet_imagenet.py",
    "senet_imagenet.py",
    "groupnorm_imagenet.py",
    "lenet5_mnist.py",
    "bn_inception_imagenet.py",
    "densenet_imagenet.py",
    "cbam_imagenet.py",
  }
  assert expected <= set(CONFIG_FILES)


@pytest.mark.parametrize("filename", CONFIG_FILES)
def test_docstring_starts_with_the_command_and_lists_the_arguments(filename):
  """The first line is the command that trains the config, its --config path exists and its
  argument is one the file takes; every argument is documented; every other config path the
  docstring gives exists."""
  module = load_config_module(filename)
  doc = module.__doc__ or ""
  assert doc.startswith(f"python -m classic_cnns.main --config=configs/{filename}"), doc[:200]
  command = re.fullmatch(
    r"python -m classic_cnns\.main --config=(\S+) --workdir=\S+", doc.splitlines()[0]
  )
  assert command, doc.splitlines()[0]
  path, _, arg = command.group(1).partition(":")
  assert path == f"configs/{filename}" and os.path.isfile(os.path.join(REPO, path)), path
  assert arg in getattr(module, "ARGS", ()) if arg else True, (filename, arg)
  (module.get_config(arg) if arg else module.get_config()).lock()  # the command's config loads
  for arg in getattr(module, "ARGS", ()):
    first, *opts = arg.split(",")
    assert f":{first}" in doc, (filename, arg)
    for o in opts:
      assert o in doc, (filename, arg)
  for other in re.findall(r"--config=(configs/[\w./]+\.py)", doc):
    assert os.path.isfile(os.path.join(REPO, other)), (filename, other)


def test_common_is_not_a_config_and_documents_its_blocks():
  common = load_config_module("common.py")
  assert not hasattr(common, "get_config")
  for name in ("choose", "no_argument", "imagenet", "cifar10", "sgd", "multistep", "cadence"):
    assert getattr(common, name).__doc__, name


def _load_with_config_flags(path: str):
  """The config of `--config=PATH` as classic_cnns.main reads it (ml_collections config_flags)."""
  from absl import flags
  from ml_collections import config_flags

  argv = ["prog", f"--config={path}", "--config.optimizer.lr=0.5"]
  fv = flags.FlagValues()
  holder = config_flags.DEFINE_config_file(
    "config", None, "", flag_values=fv, lock_config=True, sys_argv=argv
  )
  fv(argv)
  return holder.value


def test_configs_load_their_shared_blocks_from_any_working_directory(tmp_path, monkeypatch):
  """configs/common.py is found beside the config file, not on sys.path or in the working directory:
  by an absolute path, a relative one from elsewhere, and the tests' importlib loader."""
  expected = load_config_module("resnet_imagenet.py").get_config("50")
  monkeypatch.chdir(tmp_path)
  (tmp_path / "common.py").write_text("raise RuntimeError('the wrong common.py')\n")
  absolute = os.path.join(REPO, "configs", "resnet_imagenet.py")
  relative = os.path.relpath(absolute, tmp_path)
  for path in (f"{absolute}:50", f"{relative}:50"):
    config = _load_with_config_flags(path)
    assert config.optimizer.lr == 0.5  # the override
    config.optimizer.lr = expected.optimizer.lr
    assert config.to_json_best_effort() == expected.to_json_best_effort(), path
  assert "common" not in sys.modules and "configs" not in sys.modules


def test_cli_loads_a_config_from_another_working_directory(tmp_path):
  """`python -m classic_cnns.main --config=<repo>/configs/x.py` run elsewhere loads the config and
  its shared blocks (here up to validation: a batch of 0 is refused, nothing is written)."""
  path = os.path.join(REPO, "configs", "densenet_cifar.py")
  p = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.main",
      f"--config={path}:bc100_12",
      f"--workdir={tmp_path / 'w'}",
      "--config.batch_size=0",
    ],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert p.returncode == 2, p.stderr[-2000:]
  assert p.stderr.strip() == "error: config.batch_size must be positive, got 0", p.stderr
  assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("filename,arg", CASES, ids=[f"{f}:{a}" if a else f for f, a in CASES])
def test_config_validates_and_builds_the_expected_model(filename, arg):
  module = load_config_module(filename)
  config = module.get_config(arg) if arg is not None else module.get_config()
  validate_config(config, 1)
  info = registry.model_info(config.model.name)
  assert config.model.num_classes == info.num_classes  # the count below is for the default classes
  model = build_model(config, 1)  # rejects any config.model field the model does not accept
  x = jnp.zeros((1, info.input_size, info.input_size, info.in_channels), jnp.float32)
  variables = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
    )
  )
  n = sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))
  expected = EXPECTED_PARAMS.get((filename, arg), info.paper_params)
  assert expected is not None and n == expected, (filename, arg, config.model.name, n, expected)
  if filename.endswith("_imagenet.py"):  # the streamed crop is the model's input size
    assert config.data.streaming.crop == info.input_size, (filename, arg)


@pytest.mark.parametrize(
  "filename", [f for f in CONFIG_FILES if hasattr(load_config_module(f), "ARGS")]
)
def test_unknown_argument_is_rejected(filename):
  with pytest.raises(ValueError, match="configs/"):
    load_config_module(filename).get_config("no_such_variant")


def test_recipes_follow_the_papers():
  rc = load_config_module("resnet_cifar.py")
  c20, c110 = rc.get_config("20"), rc.get_config("110")
  assert (c20.batch_size, c20.num_steps, tuple(c20.schedule.boundaries)) == (
    128,
    64_000,
    (32_000, 48_000),
  )
  assert c20.data.val_size == 5000 and c20.data.augment.crop_padding == 4 and c20.data.augment.flip
  assert c20.schedule.warmup == 0 and c110.schedule.warmup == 400 and c110.schedule.unit == "step"
  assert c110.optimizer.lr * c110.schedule.warmup_init == pytest.approx(0.01)
  assert rc.get_config("plain56").model.name == "plain56"
  dn = load_config_module("densenet_cifar.py")
  aug, noaug = dn.get_config("bc100_12"), dn.get_config("bc100_12,noaug")
  assert (aug.model.dropout, aug.data.augment.flip) == (0.0, True)
  assert (noaug.model.dropout, noaug.data.augment.flip, noaug.data.augment.crop_padding) == (
    0.2,
    False,
    0,
  )
  assert (
    aug.optimizer.name == "nesterov"
    and aug.batch_size == 64
    and tuple(aug.schedule.boundaries) == (150, 225)
  )
  gn = load_config_module("groupnorm_imagenet.py").get_config("gn")
  assert (gn.model.norm, gn.bn.stats, gn.optimizer.decay_mask, gn.model.zero_init_last_norm) == (
    "group",
    "global",
    "all",
    True,
  )
  assert load_config_module("groupnorm_imagenet.py").get_config("bn").bn.stats == "per_device"
  v3 = load_config_module("inception_v3_imagenet.py").get_config()
  assert (
    v3.loss.label_smoothing == 0.1 and v3.optimizer.name == "rmsprop" and v3.optimizer.eps == 1.0
  )
  assert v3.ema_decay == 0.9999  # Sec. 8: evaluation uses a running average of the parameters


def test_groupnorm_bn_per_device_batch_stats():
  """`:bn` builds BatchNorm whose statistics are per device slice (bn.stats=per_device)."""
  config = load_config_module("groupnorm_imagenet.py").get_config("bn")
  model = build_model(config, 8)
  assert model.norm.kind == "batch" and model.norm.virtual_batch_size == 256 // 8


def test_bad_config_value_is_a_config_error():
  config = load_config_module("resnet_cifar.py").get_config("20")
  config.schedule.boundaries = ()
  with pytest.raises(ConfigError):
    validate_config(config, 1)


def test_resnet_cifar_cli_smoke_on_embedded_mnist(tmp_path):
  """The documented command, on the embedded MNIST sample (1 channel, padded 28 -> 32), 3 steps."""
  cmd = [
    sys.executable,
    "-m",
    "classic_cnns.main",
    "--config=configs/resnet_cifar.py:20",
    f"--workdir={tmp_path}",
    "--config.data.source=embedded",
    "--config.model.num_classes=10",
    "--config.data.pad_to=32",
    "--config.num_steps=3",
    "--config.batch_size=16",
    "--config.log_every_steps=1",
  ]
  p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-2000:]
  assert "model resnet20: 269,434 params" in p.stdout  # 1 input channel: 269,722 - 3*3*2*16
  assert "step 3/3" in p.stdout and "final test accuracy" in p.stdout


@pytest.mark.parametrize("filename,arg", CASES, ids=[f"{f}:{a}" if a else f for f, a in CASES])
def test_trainer_builds_the_norm_create_model_builds(filename, arg):
  """The trainer's model has the norm `create_model` gives the same name (the model's paper defaults:
  Inception-v3 / GoogLeNet-BN eps 1e-3, ...), except what the config sets explicitly."""
  import dataclasses
  from classic_cnns.models import create_model
  from classic_cnns.models.layers import NormSpec

  module = load_config_module(filename)
  config = module.get_config(arg) if arg is not None else module.get_config()
  trained = build_model(config, 8)
  plain = create_model(config.model.name)
  if not any(f.name == "norm" for f in dataclasses.fields(plain)):
    return
  expected = registry.model_norm(config.model.name)
  m = config.model
  explicit = {
    "kind": m.get("norm"),
    "groups": m.get("norm_groups"),
    "epsilon": m.get("norm_epsilon"),
    "momentum": m.get("norm_momentum"),
  }
  expected = dataclasses.replace(expected, **{k: v for k, v in explicit.items() if v is not None})
  got = trained.norm
  assert isinstance(got, NormSpec)
  assert dataclasses.replace(got, virtual_batch_size=None) == expected, (filename, arg)


def test_inception_v3_config_keeps_the_papers_batchnorm_epsilon():
  config = load_config_module("inception_v3_imagenet.py").get_config()
  assert build_model(config, 1).norm.epsilon == 1e-3
  config.model.norm_epsilon = 1e-5  # an explicit config value overrides it
  assert build_model(config, 1).norm.epsilon == 1e-5


@pytest.mark.parametrize("name", ["vgg16_bn", "nin_cifar_bn", "googlenet_bn"])
def test_bn_stats_reaches_models_whose_config_sets_no_norm(name):
  from classic_cnns.config import base_config

  config = base_config()
  config.model.name, config.batch_size = name, 64
  config.bn.stats, config.bn.ghost_batch_size = "ghost", 16
  assert build_model(config, 1).norm.virtual_batch_size == 16
  config.bn.stats = "per_device"
  spec = build_model(config, 8).norm
  assert spec.kind == "batch" and spec.virtual_batch_size == 8


@pytest.mark.parametrize("name", ["vgg16", "lenet5", "nin_cifar"])
def test_bn_stats_on_a_model_without_batchnorm_is_a_config_error(name):
  from classic_cnns.config import base_config

  config = base_config()
  config.model.name = name
  config.bn.stats, config.bn.ghost_batch_size = "ghost", 16
  with pytest.raises(ConfigError, match=f"bn.stats=ghost applies to BatchNorm, but model '{name}'"):
    build_model(config, 1)


IMAGENET_CONFIGS = [f for f in CONFIG_FILES if f.endswith("_imagenet.py")]


@pytest.mark.parametrize("filename", IMAGENET_CONFIGS)
def test_imagenet_configs_stream_and_document_only_the_package(filename):
  """ImageNet is streamed by default (TFDS imagenet2012 or, with --config.data.source=folder, JPEG
  folders), and the docstring holds no notes about how the package was developed."""
  module = load_config_module(filename)
  for arg in (None, *getattr(module, "ARGS", ())):
    config = module.get_config(arg) if arg is not None else module.get_config()
    assert config.data.streaming.enabled, (filename, arg)
  doc = module.__doc__
  for stale in ("issue", "would hold", "reference notes", "session"):
    assert stale not in doc.lower(), (filename, stale)


def test_bn_inception_follows_the_bn_paper():
  """Ioffe & Szegedy 2015 Sec. 4.2 / 4.2.1 / 4.2.2: BN-Baseline, BN-x5, BN-x30."""
  module = load_config_module("bn_inception_imagenet.py")
  base, x5, x30 = (module.get_config(a) for a in ("baseline", "x5", "x30"))
  assert module.get_config().optimizer.lr == x30.optimizer.lr
  for c in (base, x5, x30):
    assert c.model.name == "inception_v2" and c.batch_size == 32
    assert (c.optimizer.name, c.optimizer.momentum) == ("sgd", 0.9)
    assert (c.schedule.name, c.schedule.unit, c.schedule.decay_factor) == ("step", "epoch", 0.96)
    assert (c.data.streaming.augment, c.data.streaming.crop, c.data.augment.flip) == (
      "inception",
      224,
      True,
    )
  assert [c.optimizer.lr for c in (base, x5, x30)] == pytest.approx([0.0015, 0.0075, 0.045])
  assert base.schedule.step_size == 8.0  # Inception: -4% every 8 epochs (GoogLeNet Sec. 6)
  for c in (x5, x30):  # Sec. 4.2.1
    assert c.schedule.step_size == pytest.approx(8.0 / 6)  # lr decay 6x faster
    assert c.optimizer.weight_decay == pytest.approx(
      base.optimizer.weight_decay / 5
    )  # L2 weight / 5
    assert c.model.dropout == 0.0 and base.model.dropout > 0  # dropout removed
    assert (
      0 < c.data.augment.brightness < base.data.augment.brightness
    )  # fewer photometric distortions
    assert c.data.augment.contrast < base.data.augment.contrast
    assert c.data.augment.saturation < base.data.augment.saturation


@pytest.mark.parametrize(
  "arg,name",
  [
    ("121", "densenet121"),
    ("169", "densenet169"),
    ("201", "densenet201"),
    ("161", "densenet161"),
    ("264", "densenet264"),
  ],
)
def test_densenet_imagenet_follows_the_paper(arg, name):
  """Huang et al. 2017 Sec. 4.1 / 4.2: batch 256, 90 epochs, lr 0.1 / 10 at 30 and 60, wd 1e-4,
  Nesterov 0.9; fb.resnet.torch augmentation; single 224 crop of the 256-resized image."""
  c = load_config_module("densenet_imagenet.py").get_config(arg)
  assert c.model.name == name and c.model.dropout == 0.0
  assert (c.batch_size, c.num_epochs, c.optimizer.name, c.optimizer.lr, c.optimizer.momentum) == (
    256,
    90.0,
    "nesterov",
    0.1,
    0.9,
  )
  assert c.optimizer.weight_decay == 1e-4 and c.optimizer.weight_decay_mode == "l2"
  assert (
    c.schedule.name,
    c.schedule.unit,
    tuple(c.schedule.boundaries),
    c.schedule.decay_factor,
  ) == ("multistep", "epoch", (30.0, 60.0), 0.1)
  s, a = c.data.streaming, c.data.augment
  assert (s.augment, s.resize, s.crop, a.flip) == ("inception", 256, 224, True)
  assert (a.brightness, a.contrast, a.saturation, a.pca_lighting) == (0.4, 0.4, 0.4, 0.1)
  assert load_config_module("densenet_imagenet.py").get_config().model.name == "densenet121"


def test_cbam_and_se_imagenet_follow_their_papers():
  cbam = load_config_module("cbam_imagenet.py").get_config()
  assert (cbam.model.name, cbam.model.attn, cbam.model.attn_reduction, cbam.model.stride_in) == (
    "cbam_resnet50",
    "cbam",
    16,
    "paper",
  )
  assert (cbam.optimizer.lr, cbam.num_epochs, cbam.batch_size) == (0.1, 90.0, 256)
  assert (cbam.schedule.name, cbam.schedule.step_size, cbam.schedule.decay_factor) == (
    "step",
    30.0,
    0.1,
  )
  se = load_config_module("senet_imagenet.py").get_config("50")
  assert (se.model.name, se.model.attn, se.model.attn_reduction, se.model.stride_in) == (
    "se_resnet50",
    "se",
    16,
    "paper",
  )
  assert (se.batch_size, se.optimizer.lr, se.optimizer.momentum, se.num_epochs) == (
    1024,
    0.6,
    0.9,
    100.0,
  )
  assert (se.schedule.name, se.schedule.unit, se.schedule.step_size, se.schedule.decay_factor) == (
    "step",
    "epoch",
    30.0,
    0.1,
  )
  assert (se.data.normalize, se.data.divide_std) == (
    "channel",
    False,
  )  # mean RGB-channel subtraction
  assert (se.data.streaming.augment, se.data.augment.flip) == ("inception", True)


def test_googlenet_and_resnet_imagenet_recipes():
  for arg in ("paper", "noaux"):  # GoogLeNet Sec. 6: lr -4% every 8 epochs
    g = load_config_module("googlenet_imagenet.py").get_config(arg)
    assert (g.schedule.name, g.schedule.unit, g.schedule.step_size, g.schedule.decay_factor) == (
      "step",
      "epoch",
      8.0,
      0.96,
    )
  for arg in ("18", "50", "152", "plain34"):  # ResNet Sec. 3.4
    r = load_config_module("resnet_imagenet.py").get_config(arg)
    s, a = r.data.streaming, r.data.augment
    assert (s.augment, s.scale_min, s.scale_max, s.crop, s.resize) == (
      "scale_jitter",
      256,
      480,
      224,
      256,
    )
    assert a.flip and a.pca_lighting == 0.1  # "the standard color augmentation" of AlexNet
    assert r.data.normalize == "channel"  # the documented deviation from the per-pixel mean
    assert (r.batch_size, r.optimizer.lr, r.optimizer.weight_decay, r.optimizer.momentum) == (
      256,
      0.1,
      1e-4,
      0.9,
    )


# The docstrings' overrides that give the papers' per-pixel mean (canvas mode, crops in jit).
PIXEL_MEAN_OVERRIDES = {
  ("resnet_imagenet.py", "50"): {
    "data.streaming.augment": "canvas",
    "data.streaming.resize": 480,
    "data.augment.crop": "scale_jitter",
    "data.augment.scale_min": 256.0,
    "data.augment.scale_max": 480.0,
    "data.augment.crop_size": 224,
    "data.normalize": "pixel",
    "data.divide_std": False,
  },
  ("alexnet_imagenet.py", "paper"): {
    "data.streaming.augment": "canvas",
    "data.augment.crop": "resize",
    "data.augment.resize": 256,
    "data.augment.crop_size": 227,
    "data.normalize": "pixel",
    "data.divide_std": False,
  },
}


@pytest.mark.parametrize("filename,arg", list(PIXEL_MEAN_OVERRIDES))
def test_documented_pixel_mean_overrides_validate(filename, arg):
  module = load_config_module(filename)
  overrides = PIXEL_MEAN_OVERRIDES[(filename, arg)]
  for key, value in overrides.items():
    assert (
      f"--config.{key}={value if not isinstance(value, float) else int(value)}" in module.__doc__
    ), key
  config = module.get_config(arg)
  config.update_from_flattened_dict(overrides)
  validate_config(config, 1)


def test_alexnet_docstring_states_the_pca_lighting_it_sets():
  module = load_config_module("alexnet_imagenet.py")
  assert module.get_config("paper").data.augment.pca_lighting == 0.1
  assert "pca_lighting=0.1" in module.__doc__ and "not implemented" not in module.__doc__
