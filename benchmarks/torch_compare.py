"""python benchmarks/torch_compare.py [--models=lenet5,resnet20,resnet18,resnet18@64,vgg11,densenet121] [--image_size=0] [--batch=0] [--repeats=3] [--steps=0] [--variants=] [--json=benchmarks/results/NAME.json]

Side-by-side train-step throughput on this CPU: PyTorch (eager, eager channels_last) against the
project's own train step with the CPU backend (`config.kernels=cpu`, what `auto` selects on a CPU)
and with the portable kernels (`config.kernels=portable`, plain Flax / lax). Run from the repository
root; PyTorch is optional (`pip install -e '.[bench]'`): without it the command prints one line and
exits 2.

Same machine and process, same batch, same layers, same optimizer (SGD, momentum 0.9, learning rate
0.01, no weight decay), float32, random images and labels. Each repeat times `steps` train steps of
every column in turn (torch, torch channels_last, flax cpu, flax portable, then any --variants), so
that slow phases of a shared machine hit all columns alike; the table gives the median img/s of each
column over the repeats, `torch best` = the faster of the two PyTorch columns, and the ratios
flax cpu / torch best and flax portable / torch best (> 1: the Flax step is faster).

Settings (--models): a model name runs at its default image side and batch; `NAME@SIDE` at another
side. --image_size overrides every side, --batch every batch (0 = the defaults):

  lenet5       32 px, batch 128   `lenet5` (sigmoid, average pool, dense C3), 1 channel, 61,706 params
  resnet20     32 px, batch 128   CIFAR ResNet-20 (option-A shortcuts, BN), 269,722 params
  resnet18    112 px, batch 32    ImageNet ResNet-18 (option B, BN), 11,689,512 params (also @64)
  vgg11        64 px, batch 16    VGG-11 (config A): stage-5 map 2x2 average-pooled to 7x7 as
                                  torchvision's AdaptiveAvgPool2d, FC 25088-4096-4096-1000, 132,863,336 params
  densenet121  64 px, batch 16    DenseNet-121 (BC, k = 32), 7,978,856 params

The Flax side is the trainer's own step: `build.select_backend` + `backend.prepare` +
`build.build_model` + `build.create_train_state` + `steps.make_train_step`, jitted with the trainer's
shardings and the state donated, on uint8 images already on the device (normalisation runs inside the
step; augmentation off, so both sides do the same work; the Flax step also computes its top-1/top-5
metrics). The PyTorch twins below are written layer for layer after the Flax modules, and their
parameter counts are asserted equal to the Flax models'.

XLA flags: the trainer sets the flags of the backend it runs (`cli.set_xla_flags(config.kernels)`).
Here both backends run in one process, so unless XLA_FLAGS is set in the environment (then every
column uses it), each column's step is compiled with its backend's flags as compiler options
(`backends.default_xla_flags`): the cpu column as `--config.kernels=cpu` compiles it, the portable
column with XLA's defaults, as `--config.kernels=portable` does.

--variants adds Flax columns of the CPU backend with another conv policy (config.cpu_convs): `xla`
(XLA's convolutions), `onednn` (every float32 conv on oneDNN), `mixed`, `measured` (each conv pass on
the library timed faster here, backends/cpu/autotune.py).

--json writes the table with the machine (CPU model, cores), the date, the versions and the load
average; keep such files under benchmarks/results/.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if (
  REPO not in sys.path
):  # `python benchmarks/torch_compare.py` puts benchmarks/, not the root, on the path
  sys.path.insert(0, REPO)

from absl import flags  # noqa: E402

from classic_cnns import cli  # noqa: E402

TORCH_MISSING = (
  "PyTorch is not installed: pip install -e '.[bench]' (or pip install torch) for the comparison"
)
LEARNING_RATE = 0.01


@dataclasses.dataclass(frozen=True)
class Default:
  side: int
  batch: int
  steps: int  # train steps per timed repeat


# model -> its default setting; the steps give each repeat a few seconds per column on 2 cores.
DEFAULTS: dict[str, Default] = {
  "lenet5": Default(32, 128, 20),
  "resnet20": Default(32, 128, 5),
  "resnet18": Default(112, 32, 3),
  "vgg11": Default(64, 16, 3),
  "densenet121": Default(64, 16, 3),
}
DEFAULT_MODELS = ("lenet5", "resnet20", "resnet18", "resnet18@64", "vgg11", "densenet121")
VARIANTS = ("xla", "onednn", "mixed", "measured")

_MODELS = cli.define_once(
  flags.DEFINE_list,
  "models",
  list(DEFAULT_MODELS),
  f"Settings to compare: NAME or NAME@SIDE, NAME from {', '.join(DEFAULTS)}.",
)
_IMAGE_SIZE = cli.define_once(
  flags.DEFINE_integer, "image_size", 0, "Image side for every setting (0 = each setting's own)."
)
_BATCH = cli.define_once(
  flags.DEFINE_integer, "batch", 0, "Batch for every setting (0 = each model's default)."
)
_REPEATS = cli.define_once(
  flags.DEFINE_integer,
  "repeats",
  3,
  "Timed repeats per column (interleaved); the median is reported.",
)
_STEPS = cli.define_once(
  flags.DEFINE_integer, "steps", 0, "Train steps per timed repeat (0 = the model's default)."
)
_WARMUP = cli.define_once(
  flags.DEFINE_integer, "warmup", 2, "Untimed steps per column before timing."
)
_VARIANTS = cli.define_once(
  flags.DEFINE_list,
  "variants",
  [],
  f"Extra Flax columns: the CPU backend with config.cpu_convs from {', '.join(VARIANTS)}.",
)
_JSON = cli.define_once(
  flags.DEFINE_string, "json", None, "Write the results and the environment to this JSON file."
)


@dataclasses.dataclass(frozen=True)
class Setting:
  model: str
  side: int
  batch: int
  steps: int
  channels: int
  classes: int

  @property
  def label(self) -> str:
    return f"{self.model}@{self.side}"


def parse_settings(
  tokens: list[str], image_size: int = 0, batch: int = 0, steps: int = 0
) -> list[Setting]:
  """["resnet18", "resnet18@64"] -> Settings (defaults from DEFAULTS); ValueError (one line) for an
  unknown model or a bad side."""
  from classic_cnns.models import registry

  out = []
  for token in tokens:
    name, _, side_text = token.strip().partition("@")
    if name not in DEFAULTS:
      raise ValueError(
        f"unknown model {name!r}; choose from {', '.join(DEFAULTS)} (NAME or NAME@SIDE)"
      )
    try:
      side = int(side_text) if side_text else DEFAULTS[name].side
    except ValueError:
      raise ValueError(f"bad setting {token!r}: expected NAME@SIDE with an integer side") from None
    side = image_size or side
    if side <= 0:
      raise ValueError(f"bad setting {token!r}: the image side must be positive")
    info = registry.model_info(name)
    out.append(
      Setting(
        name,
        side,
        batch or DEFAULTS[name].batch,
        steps or DEFAULTS[name].steps,
        info.in_channels,
        info.num_classes,
      )
    )
  return out


# ----------------------------------------------------------------------------- PyTorch twins
def torch_model(name: str, side: int | None = None):
  """The PyTorch twin of the registry model `name` for `side` x `side` images (built lazily: torch is
  optional), layer for layer after the Flax module."""
  import torch
  from torch import nn

  side = side or DEFAULTS[name].side
  if name == "lenet5":  # classic_cnns/models/lenet.py LeNet5
    s = ((side - 4) // 2 - 4) // 2 - 4  # C5's output side (1 at 32 px)
    return nn.Sequential(
      nn.Conv2d(1, 6, 5),
      nn.Sigmoid(),
      nn.AvgPool2d(2),
      nn.Conv2d(6, 16, 5),
      nn.Sigmoid(),
      nn.AvgPool2d(2),
      nn.Conv2d(16, 120, 5),
      nn.Sigmoid(),
      nn.Flatten(),
      nn.Linear(120 * s * s, 84),
      nn.Sigmoid(),
      nn.Linear(84, 10),
    )

  def cbn(cin: int, cout: int, k: int, s: int) -> list:
    return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]

  class Basic(nn.Module):  # resnet.py BasicBlock: conv-BN-ReLU, conv-BN, + shortcut, ReLU
    def __init__(self, cin: int, cout: int, stride: int, option: str):
      super().__init__()
      self.branch = nn.Sequential(
        *cbn(cin, cout, 3, stride), nn.ReLU(inplace=True), *cbn(cout, cout, 3, 1)
      )
      self.stride, self.extra = stride, cout - cin
      change = stride != 1 or cin != cout
      self.proj = nn.Sequential(*cbn(cin, cout, 1, stride)) if option == "B" and change else None

    def forward(self, x):
      if self.proj is not None:
        sc = self.proj(x)
      else:  # option A: subsample, zero channels appended after the identity channels
        sc = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
        if self.extra:
          sc = torch.nn.functional.pad(sc, (0, 0, 0, 0, 0, self.extra))
      return torch.relu(self.branch(x) + sc)

  def stages(cin: int, widths, sizes, option: str) -> list:
    blocks = []
    for i, (w, n) in enumerate(zip(widths, sizes)):
      for j in range(n):
        blocks.append(Basic(cin, w, 2 if (i > 0 and j == 0) else 1, option))
        cin = w
    return blocks

  if name == "resnet20":  # cifar_resnet(20)
    return nn.Sequential(
      *cbn(3, 16, 3, 1),
      nn.ReLU(inplace=True),
      *stages(16, (16, 32, 64), (3, 3, 3), "A"),
      nn.AdaptiveAvgPool2d(1),
      nn.Flatten(),
      nn.Linear(64, 10),
    )
  if name == "resnet18":  # imagenet_resnet(18)
    return nn.Sequential(
      *cbn(3, 64, 7, 2),
      nn.ReLU(inplace=True),
      nn.MaxPool2d(3, 2, 1),
      *stages(64, (64, 128, 256, 512), (2, 2, 2, 2), "B"),
      nn.AdaptiveAvgPool2d(1),
      nn.Flatten(),
      nn.Linear(512, 1000),
    )

  if name == "vgg11":  # vgg.py VGG, config A: 3x3 convs (bias) + ReLU, 2x2/2 max pool per stage
    feats, cin = [], 3
    for widths in ((64,), (128,), (256, 256), (512, 512), (512, 512)):
      for w in widths:
        feats += [nn.Conv2d(cin, w, 3, 1, 1), nn.ReLU(inplace=True)]
        cin = w
      feats.append(nn.MaxPool2d(2, 2))
    # layers.adaptive_avg_pool(x, 7) = AdaptiveAvgPool2d(7) (at 64 px: the 2x2 map spread to 7x7);
    # FCConv fc1/fc2/fc3 = Linear; dropout 0.5 after the ReLUs of fc1 and fc2.
    return nn.Sequential(
      *feats,
      nn.AdaptiveAvgPool2d(7),
      nn.Flatten(),
      nn.Linear(512 * 7 * 7, 4096),
      nn.ReLU(inplace=True),
      nn.Dropout(0.5),
      nn.Linear(4096, 4096),
      nn.ReLU(inplace=True),
      nn.Dropout(0.5),
      nn.Linear(4096, 1000),
    )

  if (
    name == "densenet121"
  ):  # densenet.py DenseNet(growth_rate=32, block_config=(6, 12, 24, 16), stem 64)
    k, bn_size = 32, 4

    class DenseLayer(nn.Module):  # [concat] - BN - ReLU - 1x1 conv 4k - BN - ReLU - 3x3 conv k
      def __init__(self, cin: int):
        super().__init__()
        self.body = nn.Sequential(
          nn.BatchNorm2d(cin),
          nn.ReLU(inplace=True),
          nn.Conv2d(cin, bn_size * k, 1, bias=False),
          nn.BatchNorm2d(bn_size * k),
          nn.ReLU(inplace=True),
          nn.Conv2d(bn_size * k, k, 3, 1, 1, bias=False),
        )

      def forward(self, feats):
        return self.body(torch.cat(feats, 1) if len(feats) > 1 else feats[0])

    class Block(nn.Module):
      def __init__(self, cin: int, n: int):
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + j * k) for j in range(n))

      def forward(self, x):
        feats = [x]
        for layer in self.layers:
          feats.append(layer(feats))
        return torch.cat(feats, 1)

    mods, c = (
      [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
      ],
      64,
    )
    sizes = (6, 12, 24, 16)
    for i, n in enumerate(sizes):
      mods.append(Block(c, n))
      c += n * k
      if i + 1 < len(sizes):  # Transition: BN - ReLU - 1x1 conv (c // 2) - 2x2 average pool
        mods += [
          nn.BatchNorm2d(c),
          nn.ReLU(inplace=True),
          nn.Conv2d(c, c // 2, 1, bias=False),
          nn.AvgPool2d(2, 2),
        ]
        c //= 2
    return nn.Sequential(
      *mods,
      nn.BatchNorm2d(c),
      nn.ReLU(inplace=True),
      nn.AdaptiveAvgPool2d(1),
      nn.Flatten(),
      nn.Linear(c, 1000),
    )
  raise ValueError(f"no PyTorch twin for {name!r}; choose from {', '.join(DEFAULTS)}")


def n_torch_params(model) -> int:
  return sum(p.numel() for p in model.parameters())


def torch_runner(s: Setting, channels_last: bool) -> tuple[Callable[[int], float], int]:
  """(run(n): n SGD-momentum train steps -> the last loss, parameter count) for the twin of `s`."""
  import torch

  torch.manual_seed(0)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = torch_model(s.model, s.side).to(memory_format=fmt).train()
  opt = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
  x = torch.randn(s.batch, s.channels, s.side, s.side).contiguous(memory_format=fmt)
  y = torch.randint(0, s.classes, (s.batch,))
  loss_fn = torch.nn.CrossEntropyLoss()

  def run(n: int) -> float:
    loss = None
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(x), y)
      loss.backward()
      opt.step()
    return float(loss.detach())

  return run, n_torch_params(model)


# ----------------------------------------------------------------------------- the Flax step
def parse_xla_flags(text: str) -> dict[str, str]:
  """ "--a=1 --b=" -> {"a": "1", "b": ""}: XLA flags as `compile(compiler_options=...)` takes them."""
  out = {}
  for item in text.split():
    key, _, value = item.lstrip("-").partition("=")
    out[key] = value
  return out


def column_compiler_options(kernels: str) -> dict[str, str]:
  """The XLA flags the trainer would run backend `kernels` with, as compiler options for its step;
  {} when the environment sets XLA_FLAGS (or CLASSIC_CNNS_DEFAULT_XLA_FLAGS=0): then they hold for
  every column, as for the trainer."""
  from classic_cnns import backends

  if "XLA_FLAGS" in os.environ or os.environ.get("CLASSIC_CNNS_DEFAULT_XLA_FLAGS", "1") != "1":
    return {}
  return parse_xla_flags(backends.default_xla_flags(kernels))


def flax_runner(
  s: Setting, kernels: str, cpu_convs: str = "auto"
) -> tuple[Callable[[int], float], int, str]:
  """(run(n): n of the trainer's jitted train steps -> the last loss, parameter count, the backend's
  description) for setting `s` with config.kernels = `kernels` and config.cpu_convs = `cpu_convs`."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import build, optim, parallel, steps
  from classic_cnns.config import base_config
  from classic_cnns.data import augment as aug

  config = base_config()
  config.model.name = s.model
  config.model.num_classes = s.classes
  config.batch_size = s.batch
  config.optimizer.lr = LEARNING_RATE
  config.kernels = kernels
  config.cpu_convs = cpu_convs
  config.data.augment.flip = False
  config.data.augment.crop_padding = 0
  mesh, n_dev = parallel.make_mesh(), jax.device_count()
  backend = build.select_backend(config)
  shape = (s.side, s.side, s.channels)
  model = build.build_model(config, n_dev)
  abstract = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1,) + shape),
      train=False,
    )
  )["params"]
  backend = backend.prepare(lambda k: build.build_model(config, n_dev, k), (s.batch,) + shape)
  model = model.clone(kernels=backend.kernels)
  schedule = optim.make_schedule(config, 100, 1000)
  state = build.create_train_state(
    model, optim.make_optimizer(config, schedule, abstract), shape, config.seed, mesh, backend
  )
  prep = aug.Preprocess(
    flip=False, crop_padding=0, mean=(127.5,) * s.channels, std=(64.0,) * s.channels
  )
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  rng = np.random.default_rng(0)
  batch = jax.device_put(
    {
      "image": rng.integers(0, 256, (s.batch,) + shape, dtype=np.uint8),
      "label": rng.integers(0, s.classes, (s.batch,), dtype=np.int32),
    },
    data,
  )
  step = jax.jit(
    steps.make_train_step(model, config, prep, schedule, jnp.float32),
    donate_argnums=0,
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
  )
  step = step.lower(state, batch).compile(
    compiler_options=column_compiler_options(backend.name) or None
  )
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  holder = {"state": state}

  def run(n: int) -> float:
    st, m = holder["state"], None
    for _ in range(n):
      st, m = step(st, batch)
    jax.block_until_ready(st)
    holder["state"] = st
    return float(m["loss"])

  return run, n_params, backend.describe()


def flax_columns(
  s: Setting, variants: tuple[str, ...] = ()
) -> dict[str, tuple[Callable[[int], float], int, str]]:
  """The Flax columns of setting `s`: "cpu", "portable", then "cpu:POLICY" per variant."""
  cols = {"cpu": flax_runner(s, "cpu"), "portable": flax_runner(s, "portable")}
  for v in variants:
    cols[f"cpu:{v}"] = flax_runner(s, "cpu", v)
  return cols


# ----------------------------------------------------------------------------- the comparison
def _onednn_version(library: str) -> str | None:
  """The version of a oneDNN shared library (its dnnl_version()), or None."""
  import ctypes

  class Version(ctypes.Structure):
    _fields_ = [
      ("major", ctypes.c_int),
      ("minor", ctypes.c_int),
      ("patch", ctypes.c_int),
      ("hash", ctypes.c_char_p),
    ]

  try:
    lib = ctypes.CDLL(library)
    lib.dnnl_version.restype = ctypes.POINTER(Version)
    v = lib.dnnl_version().contents
    return f"{v.major}.{v.minor}.{v.patch}"
  except (OSError, AttributeError):
    return None


def environment() -> dict[str, Any]:
  import flax
  import jax
  import jaxlib
  import numpy as np
  import optax
  import torch
  from classic_cnns import machine
  from classic_cnns.backends.cpu import onednn

  ok, why = onednn.available()
  try:
    affinity = len(os.sched_getaffinity(0))
  except (AttributeError, OSError):
    affinity = None
  torch_onednn = re.search(r"MKL-DNN (v[0-9.]+)", torch.__config__.show())
  return {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "machine": {
      "cpu_model": machine.cpu_model(),
      "cores": os.cpu_count(),
      "cores_usable": affinity,
      "avx512": onednn.cpu_has_avx512(),
      "platform": platform.platform(),
    },
    "versions": {
      "python": platform.python_version(),
      "jax": jax.__version__,
      "jaxlib": jaxlib.__version__,
      "flax": flax.__version__,
      "optax": optax.__version__,
      "numpy": np.__version__,
      "torch": torch.__version__,
      "torch_onednn": torch_onednn[1] if torch_onednn else None,
      "onednn": (_onednn_version("libdnnl.so.2") or _onednn_version("libdnnl.so.3"))
      if ok
      else None,
    },
    "onednn_available": ok,
    "onednn_reason": why or None,
    "torch_threads": torch.get_num_threads(),
    "jax_devices": [str(d) for d in jax.devices()],
    "xla_flags_env": os.environ.get("XLA_FLAGS"),
    "column_xla_options": {k: column_compiler_options(k) for k in ("cpu", "portable")},
    "learning_rate": LEARNING_RATE,
    "load_average": [round(v, 2) for v in os.getloadavg()],
  }


def compare(
  s: Setting,
  repeats: int = 3,
  warmup: int = 2,
  variants: tuple[str, ...] = (),
  flax: dict[str, Any] | None = None,
) -> dict[str, Any]:
  """Median img/s of torch eager, torch channels_last and the Flax columns of setting `s`, timed in
  turn per repeat (`flax`: the Flax columns when already built)."""
  load_before = [round(v, 2) for v in os.getloadavg()]
  flax = flax or flax_columns(s, variants)
  runners = {"torch": torch_runner(s, False), "torch_cl": torch_runner(s, True)}
  runners.update({f"flax_{k}": (run, n) for k, (run, n, _) in flax.items()})
  counts = {k: n for k, (_, n) in runners.items()}
  if len(set(counts.values())) != 1:
    raise AssertionError(f"{s.label}: parameter counts differ between the twins: {counts}")
  losses = {}
  for k, (run, _) in runners.items():
    losses[k] = run(max(warmup, 1))
  times: dict[str, list[float]] = {k: [] for k in runners}
  cpu: dict[str, list[float]] = {k: [] for k in runners}
  for _ in range(repeats):
    for k, (run, _) in runners.items():
      t, c = time.perf_counter(), time.process_time()
      losses[k] = run(s.steps)
      times[k].append(time.perf_counter() - t)
      cpu[k].append(time.process_time() - c)
  img_s = {k: s.batch * s.steps / statistics.median(v) for k, v in times.items()}
  best = max(("torch", "torch_cl"), key=lambda k: img_s[k])
  return {
    "model": s.model,
    "input": s.side,
    "batch": s.batch,
    "steps": s.steps,
    "repeats": repeats,
    "params": next(iter(counts.values())),
    "flax_backends": {k: d for k, (_, _, d) in flax.items()},
    "img_per_s": img_s,
    "torch_best": img_s[best],
    "torch_best_column": best,
    "ratio": {k[len("flax_") :]: img_s[k] / img_s[best] for k in img_s if k.startswith("flax_")},
    "step_ms": {k: 1000 * statistics.median(v) / s.steps for k, v in times.items()},
    # CPU seconds this process used per step (all threads; spinning threads count too).
    "cpu_ms_per_step": {k: 1000 * statistics.median(v) / s.steps for k, v in cpu.items()},
    "all_img_per_s": {k: [s.batch * s.steps / t for t in v] for k, v in times.items()},
    "last_loss": losses,
    "load_average_before": load_before,
    "load_average": [round(v, 2) for v in os.getloadavg()],
  }


def format_table(rows: list[dict[str, Any]]) -> str:
  extra = [
    k
    for k in rows[0]["img_per_s"]
    if k.startswith("flax_") and k not in ("flax_cpu", "flax_portable")
  ]
  head = (
    [
      "model",
      "input",
      "batch",
      "params",
      "torch",
      "torch CL",
      "torch best",
      "flax cpu",
      "flax portable",
    ]
    + [k.replace("flax_", "flax ") for k in extra]
    + ["cpu / best", "portable / best"]
    + [f"{k[len('flax_') :]} / best" for k in extra]
    + ["load (1 min)"]
  )
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    v = r["img_per_s"]
    cells = [
      r["model"],
      f"{r['input']}x{r['input']}",
      str(r["batch"]),
      f"{r['params']:,}",
      f"{v['torch']:,.1f}",
      f"{v['torch_cl']:,.1f}",
      f"{r['torch_best']:,.1f}",
      f"{v['flax_cpu']:,.1f}",
      f"{v['flax_portable']:,.1f}",
    ] + [f"{v[k]:,.1f}" for k in extra]
    cells += [f"{r['ratio']['cpu']:.2f}", f"{r['ratio']['portable']:.2f}"]
    cells += [f"{r['ratio'][k[len('flax_') :]]:.2f}" for k in extra]
    cells.append(f"{r['load_average'][0]:.2f}")
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  try:
    import torch  # noqa: F401
  except ImportError:
    cli.fail(TORCH_MISSING)
  if (
    _REPEATS.value <= 0
    or _STEPS.value < 0
    or _WARMUP.value < 0
    or _BATCH.value < 0
    or _IMAGE_SIZE.value < 0
  ):
    cli.fail("--repeats must be positive; --steps, --warmup, --batch and --image_size non-negative")
  bad = [v for v in _VARIANTS.value if v not in VARIANTS]
  if bad:
    cli.fail(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
  try:
    settings = parse_settings(_MODELS.value, _IMAGE_SIZE.value, _BATCH.value, _STEPS.value)
  except ValueError as e:
    cli.fail(str(e))
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  import jax

  jax.config.update(
    "jax_enable_compilation_cache", False
  )  # every step compiled here, as a first run
  if jax.default_backend() != "cpu":
    cli.fail(f"this compares CPU training steps; JAX runs on {jax.default_backend()} here")
  env = environment()
  print(
    f"{env['machine']['cpu_model']}, {env['machine']['cores']} cores | jax {env['versions']['jax']} "
    f"flax {env['versions']['flax']} torch {env['versions']['torch']} ({env['torch_threads']} threads) | "
    f"XLA_FLAGS={env['xla_flags_env']!r}, per column {env['column_xla_options']} | "
    f"load average {env['load_average']}",
    flush=True,
  )
  rows = []
  from classic_cnns.config import ConfigError

  for s in settings:
    t = time.perf_counter()
    try:
      # The Flax steps are built before PyTorch runs: a `measured` variant times convolutions while
      # compiling, which PyTorch's threads would disturb.
      flax = flax_columns(s, tuple(_VARIANTS.value))
      rows.append(compare(s, _REPEATS.value, _WARMUP.value, flax=flax))
    except (ConfigError, ValueError, TypeError) as e:
      cli.fail(f"{s.label}: {' '.join(str(e).split())[:300]}")
    del flax
    print(format_table(rows[-1:]), f"\n({s.label}: {time.perf_counter() - t:.0f} s)", flush=True)
  print()
  print(format_table(rows), flush=True)
  env["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
  if _JSON.value:
    os.makedirs(os.path.dirname(os.path.abspath(_JSON.value)), exist_ok=True)
    with open(_JSON.value, "w") as f:
      json.dump({**env, "results": rows}, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
