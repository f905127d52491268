"""Side-by-side train-step throughput: PyTorch (eager, eager channels_last) vs the project's Flax step.

    python -m classic_cnns.benchmark_torch [--models=lenet5,resnet20,resnet18] [--repeats=5] [--steps=0]
        [--variants=base] [--json=out.json]

Same machine and process, same batch, same layers, same optimizer (SGD, momentum 0.9, lr 0.1, no
weight decay), fp32. Each repeat times `steps` train steps of every column in turn (torch eager,
torch channels_last, then each Flax variant), so slow phases of a shared machine hit all columns
alike; the table gives the median img/s of each column and the ratio Flax/torch eager.

  lenet5    our `lenet5` (sigmoid, average pool, dense C3), 32x32x1, batch 128, 61,706 params
  resnet20  CIFAR ResNet-20 (option-A shortcuts, BN), 32x32x3, batch 128, 269,722 params
  resnet18  ImageNet ResNet-18 (option B, BN), 112x112x3, batch 32, 11,689,512 params

The Flax side is the trainer's own step: `train.build_model` + `train.create_train_state` +
`train.make_train_step`, jitted with the trainer's shardings and the state donated, on uint8
images already on the device (normalisation runs inside the step; augmentation off, so both sides
do the same work; the Flax step also computes its top-1/top-5 metrics and finiteness checks, a
negligible cost). The PyTorch twins below are written layer for layer after the Flax modules, and
their parameter counts are asserted equal. XLA flags: classic_cnns.cli's CPU default unless
XLA_FLAGS is set in the environment (it is printed).

--variants adds Flax columns that swap one part of the model in this process only (experiments
for issue 7, see benchmarks/torch_comparison.md): `xlaconv` = XLA's convolutions instead of the
default backend (`config.conv_backend=auto`: oneDNN on a 1-device CPU run), `measured` = each conv
pass on oneDNN or XLA, whichever kernels/autotune.py timed faster, `flaxbn` = flax.linen.BatchNorm instead of the
shared BatchNorm, `reducebn` = the shared BatchNorm's earlier form (jnp.mean reductions, autodiff
backward; now its channel sums are dots), `twopass` = BatchNorm variance as mean((x - mean)^2), `im2col` = every conv as
explicit shifted-slice patches + one matmul (gradients then are matmuls too).

PyTorch is optional: without it the command prints one line and exits 2.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

from classic_cnns import cli  # sets the default CPU XLA flags before jax is imported

from absl import flags  # noqa: E402

TORCH_MISSING = "pip install torch==2.13.0 for the comparison"

# model -> (input side, channels, batch, classes, default steps per timed repeat)
SETTINGS: dict[str, tuple[int, int, int, int, int]] = {
    "lenet5": (32, 1, 128, 10, 20),
    "resnet20": (32, 3, 128, 10, 5),
    "resnet18": (112, 3, 32, 1000, 3),
}
VARIANTS = ("base", "xlaconv", "onednn", "mixed", "measured", "reducebn", "flaxbn", "twopass", "noreshape", "im2col")

_MODELS = flags.DEFINE_list("models", list(SETTINGS), f"Models to compare, from {', '.join(SETTINGS)}.")
_REPEATS = cli.define_once(flags.DEFINE_integer, "repeats", 5, "Timed repeats per column (alternating); the median is reported.")
_STEPS = cli.define_once(flags.DEFINE_integer, "steps", 0, "Train steps per timed repeat (0 = the model's default).")
_WARMUP = cli.define_once(flags.DEFINE_integer, "warmup", 2, "Untimed steps per column before timing.")
_VARIANTS = flags.DEFINE_list("variants", ["base"], f"Flax columns, from {', '.join(VARIANTS)}.")
_TORCH = flags.DEFINE_bool("torch", True, "Time the PyTorch columns (False: Flax variants only, ratios vs "
                            "the base Flax column; the twins' parameter counts are still checked).")
_JSON = cli.define_once(flags.DEFINE_string, "json", None, "Write the results and environment to this JSON file.")


# ----------------------------------------------------------------------------- PyTorch twins
def torch_model(name: str):
  """The PyTorch twin of the registry model `name` (built lazily: torch is optional)."""
  import torch
  from torch import nn

  if name == "lenet5":  # classic_cnns/models/lenet.py LeNet5
    return nn.Sequential(nn.Conv2d(1, 6, 5), nn.Sigmoid(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Sigmoid(),
                         nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Sigmoid(), nn.Flatten(),
                         nn.Linear(120, 84), nn.Sigmoid(), nn.Linear(84, 10))

  def cbn(cin: int, cout: int, k: int, s: int) -> list:
    return [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]

  class Basic(nn.Module):  # resnet.py BasicBlock: conv-BN-ReLU, conv-BN, + shortcut, ReLU
    def __init__(self, cin: int, cout: int, stride: int, option: str):
      super().__init__()
      self.branch = nn.Sequential(*cbn(cin, cout, 3, stride), nn.ReLU(inplace=True), *cbn(cout, cout, 3, 1))
      self.stride, self.extra = stride, cout - cin
      change = stride != 1 or cin != cout
      self.proj = nn.Sequential(*cbn(cin, cout, 1, stride)) if option == "B" and change else None

    def forward(self, x):
      if self.proj is not None:
        sc = self.proj(x)
      else:  # option A: subsample, zero channels appended after the identity channels
        sc = x[:, :, ::self.stride, ::self.stride] if self.stride != 1 else x
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
    return nn.Sequential(*cbn(3, 16, 3, 1), nn.ReLU(inplace=True), *stages(16, (16, 32, 64), (3, 3, 3), "A"),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
  if name == "resnet18":  # imagenet_resnet(18)
    return nn.Sequential(*cbn(3, 64, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
                         *stages(64, (64, 128, 256, 512), (2, 2, 2, 2), "B"),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000))
  raise ValueError(f"no PyTorch twin for {name!r}; choose from {', '.join(SETTINGS)}")


def torch_runner(name: str, channels_last: bool):
  """(run(n): n SGD-momentum train steps, parameter count) for the twin of `name`."""
  import torch
  side, ch, batch, classes, _ = SETTINGS[name]
  torch.manual_seed(0)
  model = torch_model(name)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=fmt).train()
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
  x = torch.randn(batch, ch, side, side).contiguous(memory_format=fmt)
  y = torch.randint(0, classes, (batch,))
  loss_fn = torch.nn.CrossEntropyLoss()

  def run(n: int) -> float:
    loss = None
    for _ in range(n):
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(model(x), y)
      loss.backward()
      opt.step()
    return float(loss.detach())

  return run, sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- Flax variants
def _variant_patches(variant: str):
  """Context: (module, attribute, replacement) swaps for a Flax experiment column."""
  import math
  import flax.linen as nn
  import jax
  import jax.numpy as jnp
  from classic_cnns.models import layers

  if variant == "flaxbn":
    class FlaxBN(nn.Module):
      virtual_batch_size: int | None = None
      momentum: float = 0.9
      epsilon: float = 1e-5
      scale_init: Any = nn.initializers.ones
      dtype: Any = None

      @nn.compact
      def __call__(self, x, train: bool):
        return nn.BatchNorm(use_running_average=not train, momentum=self.momentum, epsilon=self.epsilon,
                            scale_init=self.scale_init, dtype=self.dtype)(x)
    return [(layers, "BatchNorm", FlaxBN)]

  if variant == "reducebn":
    class ReduceBN(layers.BatchNorm):
      """The shared BatchNorm before it moved its channel sums to dots (layers._sum_rows): jnp.mean
      over a [B // v, v, ...] view, autodiff backward."""
      @nn.compact
      def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param("scale", self.scale_init, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
          return ((x - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.epsilon) * scale + bias).astype(x.dtype)
        b = x.shape[0]
        v = self.virtual_batch_size or b
        xg = x.astype(jnp.float32).reshape((b // v, v) + x.shape[1:])
        axes = tuple(range(1, xg.ndim - 1))
        mean = jnp.mean(xg, axes, keepdims=True)
        var = jnp.maximum(jnp.mean(jnp.square(xg), axes, keepdims=True) - jnp.square(mean), 0.0)
        if not self.is_initializing():
          n = v * math.prod(x.shape[1:-1])
          red = lambda a: jnp.mean(a, axis=(0,) + axes).reshape(c)
          ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * red(mean)
          ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * red(var * (n / max(n - 1, 1)))
        y = ((xg - mean) * jax.lax.rsqrt(var + self.epsilon)).reshape(x.shape)
        return (y * scale + bias).astype(self.dtype or x.dtype)
    return [(layers, "BatchNorm", ReduceBN)]

  if variant == "twopass":
    class TwoPassBN(layers.BatchNorm):
      @nn.compact
      def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param("scale", self.scale_init, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
          return ((x - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.epsilon) * scale + bias).astype(x.dtype)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axes)
        var = jnp.mean(jnp.square(x - mean), axes)
        if not self.is_initializing():
          n = math.prod(x.shape[:-1])
          ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
          ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var * (n / max(n - 1, 1))
        return ((x - mean) * (jax.lax.rsqrt(var + self.epsilon) * scale) + bias).astype(x.dtype)
    return [(layers, "BatchNorm", TwoPassBN)]

  if variant == "noreshape":
    class NoReshapeBN(layers.BatchNorm):
      """The shared BatchNorm, but without the [B // v, v, ...] view when v = B (global statistics)."""
      @nn.compact
      def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param("scale", self.scale_init, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if not train:
          return ((x - ra_mean.value) * jax.lax.rsqrt(ra_var.value + self.epsilon) * scale + bias).astype(x.dtype)
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axes)
        var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
        if not self.is_initializing():
          n = math.prod(x.shape[:-1])
          ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
          ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var * (n / max(n - 1, 1))
        y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
        return (y * scale + bias).astype(x.dtype)
    return [(layers, "BatchNorm", NoReshapeBN)]

  if variant == "im2col":
    base_conv = nn.Conv

    class Im2colConv(base_conv):
      @nn.compact
      def __call__(self, x):
        kh, kw = self.kernel_size
        sh, sw = self.strides if isinstance(self.strides, tuple) else (self.strides or 1,) * 2
        cin = x.shape[-1]
        assert self.feature_group_count == 1 and (self.padding == "VALID" or not isinstance(self.padding, str))
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features), jnp.float32)
        pad = ((0, 0), (0, 0)) if self.padding == "VALID" else tuple(self.padding)
        xp = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
        ho = (xp.shape[1] - kh) // sh + 1
        wo = (xp.shape[2] - kw) // sw + 1
        cols = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :] for i in range(kh) for j in range(kw)]
        cols = cols[0] if len(cols) == 1 else jnp.concatenate(cols, axis=-1)
        y = jnp.dot(cols.reshape(-1, kh * kw * cin), kernel.reshape(kh * kw * cin, self.features))
        y = y.reshape(x.shape[0], ho, wo, self.features)
        if self.use_bias:
          y = y + self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return y
    return [(nn, "Conv", Im2colConv)]
  return []


def flax_runner(name: str, variant: str = "base"):
  """(run(n): n of the trainer's jitted train steps, parameter count) for registry model `name`."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import optim, parallel, train
  from classic_cnns.models import layers
  from classic_cnns.config import base_config
  from classic_cnns.data import augment as aug

  side, ch, batch, classes, _ = SETTINGS[name]
  config = base_config()
  config.model.name = name
  config.model.num_classes = classes
  config.batch_size = batch
  config.data.augment.flip = False
  config.data.augment.crop_padding = 0
  if variant == "xlaconv":  # the same step with XLA's convolutions (base: config.conv_backend=auto)
    config.conv_backend = "xla"
  if variant in ("onednn", "mixed", "measured"):  # all convs on oneDNN; by the CPU rule; per pass as timed
    config.conv_backend = variant
  mesh = parallel.make_mesh()
  swaps = _variant_patches(variant)
  saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in swaps]
  try:
    for mod, attr, new in swaps:
      setattr(mod, attr, new)
    model = train.build_model(config, jax.device_count())
    shape = (side, side, ch)
    abstract = layers.abstract_eval(lambda: model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1,) + shape),
                                                 train=False))["params"]
    schedule = optim.make_schedule(config, 100, 1000)
    state = train.create_train_state(model, optim.make_optimizer(config, schedule, abstract), shape,
                                     config.seed, mesh)
    prep = aug.Preprocess(flip=False, crop_padding=0, mean=(127.5,) * ch, std=(64.0,) * ch)
    rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    rng = np.random.default_rng(0)
    batch_arrays = jax.device_put({"image": rng.integers(0, 256, (batch,) + shape, dtype=np.uint8),
                                   "label": rng.integers(0, classes, (batch,), dtype=np.int32)}, data)
    step = jax.jit(train.make_train_step(model, config, prep, schedule, jnp.float32), donate_argnums=0,
                   in_shardings=(rep, data), out_shardings=(rep, rep))
    step = step.lower(state, batch_arrays).compile()  # trace with the swaps in place
  finally:
    for mod, attr, old in saved:
      setattr(mod, attr, old)
  n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  holder = {"state": state}

  def run(n: int) -> float:
    s, m = holder["state"], None
    for _ in range(n):
      s, m = step(s, batch_arrays)
    jax.block_until_ready(s)
    holder["state"] = s
    return float(m["loss"])

  return run, n_params


# ----------------------------------------------------------------------------- the comparison
def environment() -> dict[str, Any]:
  import jax
  import jaxlib
  import torch
  import flax
  return {"cpu_count": os.cpu_count(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
          "flax": flax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
          "xla_flags": os.environ.get("XLA_FLAGS"), "load_average": [round(v, 2) for v in os.getloadavg()]}


def flax_runners(name: str, variants: tuple[str, ...]) -> dict[str, Any]:
  return {"flax" if v == "base" else f"flax_{v}": flax_runner(name, v) for v in variants}


def compare(name: str, repeats: int = 5, steps: int = 0, warmup: int = 2,
            variants: tuple[str, ...] = ("base",), with_torch: bool = True,
            flax_columns: dict[str, Any] | None = None) -> dict[str, Any]:
  """Median img/s of torch eager, torch channels_last and each Flax variant, timed alternately
  (`flax_columns`: the Flax runners when already built)."""
  side, ch, batch, classes, default_steps = SETTINGS[name]
  steps = steps or default_steps
  flax_columns = flax_columns or flax_runners(name, variants)
  columns = {"torch": torch_runner(name, False), "torch_cl": torch_runner(name, True)} if with_torch else {}
  twin_params = torch_runner(name, False)[1] if not with_torch else None
  columns.update(flax_columns)
  counts = {k: n for k, (_, n) in columns.items()}
  if twin_params is not None:
    counts["torch"] = twin_params
  assert len(set(counts.values())) == 1, f"{name}: parameter counts differ between the twins: {counts}"
  for run, _ in columns.values():
    loss = run(max(warmup, 1))
    assert loss == loss, f"{name}: non-finite loss in warm-up"  # NaN check
  times: dict[str, list[float]] = {k: [] for k in columns}
  cpu: dict[str, list[float]] = {k: [] for k in columns}
  for _ in range(repeats):
    for k, (run, _) in columns.items():
      t, c = time.perf_counter(), time.process_time()
      run(steps)
      times[k].append(time.perf_counter() - t)
      cpu[k].append(time.process_time() - c)
  img_s = {k: batch * steps / statistics.median(v) for k, v in times.items()}
  out = {"model": name, "input": side, "batch": batch, "steps": steps, "repeats": repeats,
         "params": next(iter(counts.values())), "img_per_s": img_s,
         "best_img_per_s": {k: batch * steps / min(v) for k, v in times.items()},
         # CPU seconds this process used per step (all threads; spinning threads count too).
         "cpu_ms_per_step": {k: 1000 * statistics.median(v) / steps for k, v in cpu.items()},
         "all_img_per_s": {k: [batch * steps / t for t in v] for k, v in times.items()},
         "load_average": [round(v, 2) for v in os.getloadavg()]}
  ref = "torch" if with_torch else next(k for k in img_s if k.startswith("flax"))
  out["reference"] = ref
  out["ratio_flax_over_torch"] = {k: img_s[k] / img_s[ref] for k in img_s if k.startswith("flax")}
  return out


def format_table(rows: list[dict[str, Any]]) -> str:
  cols = [k for k in rows[0]["img_per_s"]]
  head = ["model", "input", "batch", "params"] + [f"{c} img/s" for c in cols] + \
         [f"{c}/{rows[0]['reference']}" for c in cols if c.startswith("flax")] + ["load avg (1 min) after"]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows:
    cells = [r["model"], f"{r['input']}x{r['input']}", str(r["batch"]), f"{r['params']:,}"]
    cells += [f"{r['img_per_s'][c]:,.1f}" for c in cols]
    cells += [f"{r['ratio_flax_over_torch'][c]:.2f}x" for c in cols if c.startswith("flax")]
    cells += [f"{r['load_average'][0]:.2f}"]
    lines.append("| " + " | ".join(cells) + " |")
    cells = ["", "", "", "best / CPU ms per step"] + [
        f"{r['best_img_per_s'][c]:,.1f} / {r['cpu_ms_per_step'][c]:,.0f}" for c in cols]
    cells += [""] * (len(head) - len(cells))
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv) -> None:
  del argv
  try:
    import torch  # noqa: F401
  except ImportError:
    cli.fail(TORCH_MISSING)
  bad = [m for m in _MODELS.value if m not in SETTINGS]
  if bad:
    cli.fail(f"unknown model(s) {', '.join(bad)}; choose from {', '.join(SETTINGS)}")
  bad = [v for v in _VARIANTS.value if v not in VARIANTS]
  if bad:
    cli.fail(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
  if _REPEATS.value <= 0 or _STEPS.value < 0:
    cli.fail("--repeats must be positive and --steps >= 0")
  env = environment()
  print(f"XLA_FLAGS={env['xla_flags']!r} | jax {env['jax']} flax {env['flax']} torch {env['torch']} "
        f"({env['torch_threads']} threads) | {env['cpu_count']} CPUs | load average {env['load_average']}",
        flush=True)
  # Every Flax step is built before PyTorch runs: their compiles may time convolutions
  # (variant `measured`, kernels/autotune.py), which PyTorch's threads would disturb.
  flax = {m: flax_runners(m, tuple(_VARIANTS.value)) for m in _MODELS.value}
  rows = []
  for m in _MODELS.value:
    rows.append(compare(m, _REPEATS.value, _STEPS.value, _WARMUP.value, tuple(_VARIANTS.value), _TORCH.value,
                        flax_columns=flax.pop(m)))
    print(format_table(rows[-1:]), flush=True)
  print()
  print(format_table(rows), flush=True)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"environment": env, "results": rows}, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
