"""The experiments: one function per paper ablation returning its `Plan` at each scale.

Scales (every plan states its own reductions in `Plan.note`, printed in results.md):
  smoke  seconds on the MNIST sample embedded in the package (1 channel, zero-padded to 32x32 so
         the CIFAR nets accept it), a handful of steps, tiny models (e.g. a ResNet with one block
         per stage and widths 4/8/16). For the tests: machinery, not accuracy.
  cpu    real CIFAR-10 (the JPEG training folder, 45k train / 5k held-out validation by the hold-out
         rule of configs.py, final numbers on the validation images), pad-4 crop + flip, a schedule
         cut to fit about an hour on 2 CPU cores; shows the qualitative effect or says that it does not.
  paper  the paper's recipe (docs/paper_numbers.md section 4) for an accelerator, on the paper's data:
         TFDS CIFAR-10 (45k/5k, final numbers on the 10k test images) or an ImageNet folder
         (streamed; the crop family of the recipe runs on the host, configs.host_crops). The
         final test uses the paper's protocol (config.eval_protocol, classic_cnns/evaluators.py):
         the single original view on CIFAR (centre), VGG's dense evaluation, GoogLeNet's 144
         crops, the GN paper's centre crop; each plan's note says which.

Default datasets per scale: `Experiment.datasets` (CIFAR_DATASETS, IMAGENET_DATASETS); any other
with `--dataset` (configs.py lists the specs).
"""

from __future__ import annotations

from typing import Any

from experiments.spec import Check, Experiment, Plan, Target, Variant

CIFAR_FOLDER = "cifar10_folder:/tmp/cifar10_jpeg"
CIFAR_DATASETS = {"smoke": "embedded", "cpu": CIFAR_FOLDER, "paper": "tfds:cifar10"}
IMAGENET_DATASETS = {
  "smoke": "embedded",
  "cpu": CIFAR_FOLDER,
  "paper": "imagenet_folder:/data/imagenet",
}

# A tiny CIFAR ResNet for smoke runs: one basic block per stage, widths 4/8/16 (8 layers).
TINY_RESNET = {"model.stage_sizes": (1, 1, 1), "model.widths": (4, 8, 16)}


def smoke_base(steps: int = 2, batch: int = 32) -> dict[str, Any]:
  """Two steps, one intermediate evaluation, the final one; no checkpoint until the end."""
  return {
    "batch_size": batch,
    "num_steps": steps,
    "log_every_steps": 1,
    "eval_every_steps": 1,
    "checkpoint_every_steps": 1000,
    "eval_batch_size": 1000,
    "optimizer.lr": 0.05,
    "schedule.name": "constant",
  }


def sgd_recipe(
  steps: int,
  lr: float,
  batch: int,
  *,
  wd: float = 1e-4,
  milestones=(0.5, 0.75),
  log_every: int = 10,
  evals: int = 2,
  checkpoint_every: int = 50,
) -> dict[str, Any]:
  """SGD momentum 0.9 + L2 weight decay, lr / 10 at the given fractions of the run (the ResNet
  CIFAR schedule's shape: 32k and 48k of 64k steps), `evals` evaluations including the final one."""
  return {
    "batch_size": batch,
    "num_steps": steps,
    "optimizer.name": "sgd",
    "optimizer.lr": lr,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": wd,
    "optimizer.weight_decay_mode": "l2",
    "schedule.name": "multistep",
    "schedule.unit": "step",
    "schedule.boundaries": tuple(int(round(m * steps)) for m in milestones),
    "schedule.decay_factor": 0.1,
    "log_every_steps": log_every,
    "eval_every_steps": max(steps // evals, 1),
    "checkpoint_every_steps": checkpoint_every,
    "eval_batch_size": 1000,
  }


CIFAR_AUG = {"data.augment.crop_padding": 4, "data.augment.flip": True}


# ----------------------------------------------------------------------------- 1. ResNet degradation
RESNET_TABLE6 = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}


def resnet_degradation(scale: str) -> Plan:
  def pair(depth: int, extra: dict[str, Any] | None = None, label_depth: int | None = None):
    d = label_depth or depth
    extra = extra or {}
    return [
      Variant(
        f"plain{d}",
        {"model.name": f"plain{depth}", "model.norm": "batch", **extra},
        f"plain-{d}",
        "plain",
        d,
        None,
        "curves only (Fig. 6 left); plain-110 > 60%" if d == 110 else "curves only (Fig. 6 left)",
      ),
      Variant(
        f"resnet{d}",
        {"model.name": f"resnet{depth}", "model.norm": "batch", **extra},
        f"ResNet-{d}",
        "residual",
        d,
        RESNET_TABLE6.get(d),
        "Table 6 test error",
      ),
    ]

  if scale == "smoke":
    variants = pair(20, TINY_RESNET, label_depth=8)
    return Plan(
      smoke_base(),
      variants,
      "ResNet-8/plain-8 at widths 4/8/16 (one block per stage) on the embedded MNIST sample",
      checks=_degradation_checks(8, 8),
    )  # one depth: residual vs plain
  if scale == "cpu":
    depths = (20, 56)
    # 2000 steps = 5.7 epochs: ~50 min for a 56-layer net on an idle 2-core machine (~85 img/s),
    # ~17 min for a 20-layer one. At 700 steps ResNet-56 still trailed ResNet-20.
    steps = 2000
    base = {**CIFAR_AUG, **sgd_recipe(steps, 0.1, 128, evals=4)}
    # At lr 0.1 from step 0 our ResNet-56 diverged in its first 10 steps (loss 8.3, then chance for
    # 190 steps); the paper met the same with ResNet-110 (Sec. 4.2: "0.1 is slightly too large to start
    # converging") and warmed up. Both 56-layer nets get the same (short) warm-up here.
    warm = {"schedule.warmup": 100.0, "schedule.warmup_init": 0.1}
    variants = pair(20) + pair(56, warm)
    note = (
      f"depths {'/'.join(map(str, depths))} only (paper: 20/32/44/56/110); the paper's batch 128 and "
      f"lr 0.1 for {steps} steps = {steps * 128 / 45000:.2f} epochs; the 56-layer nets warm up linearly "
      f"from lr 0.01 to 0.1 over the first 100 steps (the paper warms up only its 110-layer nets, at 0.01 "
      f"for ~400 steps; without it our ResNet-56 diverged at step 10 and stayed at chance) "
      f"(paper: 64k steps of 128 = 182 epochs), lr / 10 at 50% and 75% of the steps (paper: 32k/48k "
      f"of 64k); JPEG CIFAR-10 training folder, 45k train, errors on the 5k held-out validation "
      f"images (paper: the 10k test images); per-channel normalisation (paper: per-pixel mean)."
    )
    return Plan(base, variants, note, checks=_degradation_checks(20, 56))
  base = {
    **CIFAR_AUG,
    **sgd_recipe(
      64_000, 0.1, 128, milestones=(0.5, 0.75), log_every=100, evals=32, checkpoint_every=2000
    ),
  }
  variants = [v for d in (20, 32, 44, 56) for v in pair(d)]
  warm = {
    "schedule.warmup": 400.0,
    "schedule.warmup_init": 0.1,
  }  # Sec. 4.2: lr 0.01 for ~400 its (linear ramp here)
  variants += pair(110, warm)
  return Plan(
    base,
    variants,
    "the paper's recipe (Sec. 4.2): 64k steps of 128, lr 0.1 / 10 at 32k and 48k, "
    "wd 1e-4, 45k/5k split, final error on the 10k test images; ResNet-/plain-110 warm up "
    "(linear ramp 0.01 -> 0.1 over 400 steps, the paper: constant 0.01 for ~400 steps)",
    comparable=True,
    checks=_degradation_checks(20, 56)
    + (
      Check(
        "plain-110 trains worse than plain-56",
        ("plain110", "final_train_error"),
        ">",
        ("plain56", "final_train_error"),
      ),
      Check(
        "ResNet-110 at or below ResNet-56 (test)",
        ("resnet110", "final_eval_error"),
        "<=",
        ("resnet56", "final_eval_error"),
      ),
    ),
  )


def _degradation_checks(shallow: int, deep: int) -> tuple[Check, ...]:
  """The Fig. 6 / Table 6 comparisons; with one depth only (smoke) just residual vs plain."""
  checks = (
    Check(
      f"degradation: plain-{deep} has higher training error than plain-{shallow}",
      (f"plain{deep}", "final_train_error"),
      ">",
      (f"plain{shallow}", "final_train_error"),
    ),
    Check(
      f"degradation: plain-{deep} has higher eval error than plain-{shallow}",
      (f"plain{deep}", "final_eval_error"),
      ">",
      (f"plain{shallow}", "final_eval_error"),
    ),
    Check(
      f"residual: ResNet-{deep} training error at or below ResNet-{shallow}",
      (f"resnet{deep}", "final_train_error"),
      "<=",
      (f"resnet{shallow}", "final_train_error"),
    ),
    Check(
      f"residual: ResNet-{deep} held-out error at or below ResNet-{shallow} (Table 6)",
      (f"resnet{deep}", "final_eval_error"),
      "<=",
      (f"resnet{shallow}", "final_eval_error"),
    ),
    Check(
      f"residual: ResNet-{deep} training error below plain-{deep}",
      (f"resnet{deep}", "final_train_error"),
      "<",
      (f"plain{deep}", "final_train_error"),
    ),
  )
  return tuple(c for c in checks if c.lhs != c.rhs)


EXPERIMENTS: dict[str, Experiment] = {}


def _add(e: Experiment) -> None:
  EXPERIMENTS[e.name] = e


_add(
  Experiment(
    "resnet_degradation",
    "Plain vs residual nets of increasing depth on CIFAR-10",
    "He et al. 2016, Sec. 4.2, Fig. 6 and Table 6",
    "Fig. 6: deeper PLAIN nets have higher training (dashed) and test (solid) error than shallower "
    "ones (the degradation problem); deeper RESIDUAL nets have lower error. Compare final training "
    "error of plain-56 vs plain-20 and ResNet-56 vs ResNet-20.",
    resnet_degradation,
    CIFAR_DATASETS,
    summary="x",
    x_label="depth (layers)",
    paper_note="Table 6 gives test errors of the ResNets only (plain nets: curves in Fig. 6).",
    figure="He et al. 2016, Fig. 6 and Table 6",
  )
)


# ----------------------------------------------------------------------------- 2. BN speed-up
# NiN is the model family with both an activation knob (`act`) and a norm knob (`norm`); the CIFAR
# ResNets have no `act` field. A narrow NiN (widths below) keeps the cpu scale affordable.
NARROW_NIN = ((5, 1, 2, (64, 48, 32)), (5, 1, 2, (64, 64, 64)), (3, 1, 1, (64, 64, None)))
TINY_NIN = ((5, 1, 2, (8, 8, 8)), (5, 1, 2, (8, 8, 8)), (3, 1, 1, (8, 8, None)))


def bn_speedup(scale: str) -> Plan:
  lr = 0.01  # the baseline's lr; BN-x5 / BN-x30 multiply it (BN paper Sec. 4.2.2)
  nin = {"model.name": "nin_cifar", "model.dropout": 0.0, "model.final_relu": False}
  if scale == "smoke":
    nin["model.blocks"] = TINY_NIN
  elif scale == "cpu":
    nin["model.blocks"] = NARROW_NIN

  def v(name, label, norm, mult, act="relu", text=""):
    return Variant(
      name,
      {**nin, "model.norm": norm, "model.act": act, "optimizer.lr": lr * mult},
      label,
      "sigmoid" if act == "sigmoid" else "relu",
      None,
      None,
      text,
    )

  variants = [
    v("baseline", "no BN, lr x1", "none", 1, text="Inception: 31.0M steps to 72.2%"),
    v("bn", "BN, lr x1", "batch", 1, text="BN-Baseline: 13.3M steps to 72.2%"),
    v("bn_x5", "BN, lr x5", "batch", 5, text="BN-x5: 2.1M steps (14x fewer)"),
    v("bn_x30", "BN, lr x30", "batch", 30, text="BN-x30: 2.7M steps, max 74.8%"),
    v("sigmoid", "sigmoid, no BN, lr x1", "none", 1, "sigmoid", "near chance (Sec. 4.2.2)"),
    v("bn_x5_sigmoid", "sigmoid + BN, lr x5", "batch", 5, "sigmoid", "BN-x5-Sigmoid: max 69.8%"),
  ]
  checks = (
    Check(
      "BN reaches the baseline's best accuracy in fewer steps",
      ("bn", "steps_to_target"),
      "<",
      ("baseline", "steps_to_target"),
    ),
    Check(
      "BN with lr x5 is faster still than BN at lr x1",
      ("bn_x5", "steps_to_target"),
      "<=",
      ("bn", "steps_to_target"),
    ),
    Check(
      "with sigmoid, BN (lr x5) trains where plain sigmoid does not",
      ("bn_x5_sigmoid", "final_eval_error"),
      "<",
      ("sigmoid", "final_eval_error"),
    ),
  )
  const = {
    "schedule.name": "constant",
    "optimizer.name": "sgd",
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 1e-4,
  }
  if scale == "smoke":
    return Plan(
      {**smoke_base(), **const},
      [variants[0], variants[1]],
      "tiny NiN (8-wide mlpconvs)on the embedded MNIST sample",
      checks=checks[:1],
    )
  if scale == "cpu":
    base = {**CIFAR_AUG, **sgd_recipe(600, lr, 128, evals=8), **const}
    return Plan(
      base,
      variants,
      "CIFAR-10 narrow NiN (mlpconv widths 64-48-32 / 64-64-64 / 64-64-10, no dropout, "
      "no ReLU on the class maps) instead of Inception on ImageNet; 600 steps of 128 at a constant lr "
      "(baseline 0.01), 8 evaluations on the 5k validation images; the target is the baseline's best "
      "validation accuracy, as the paper's 72.2% is Inception's best.",
      checks=checks,
    )
  base = {
    **CIFAR_AUG,
    **sgd_recipe(40_000, lr, 128, evals=40, log_every=100, checkpoint_every=2000),
    **const,
  }
  return Plan(
    base,
    variants,
    "CIFAR-10 NiN (full widths, no dropout as the BN paper's BN nets) instead of "
    "Inception on ImageNet; 40k steps of 128 at a constant lr (baseline 0.01)",
    checks=checks,
  )


_add(
  Experiment(
    "bn_speedup",
    "BatchNorm speed-up: same net with / without BN, BN with 5x / 30x lr, sigmoid",
    "Ioffe & Szegedy 2015, Sec. 4.2, Figs. 2-3 (and Sec. 4.1 sigmoid)",
    "BN reaches the baseline's best accuracy in far fewer steps (13.3M vs 31.0M), more so with a 5x "
    "(2.1M) or 30x (2.7M) larger learning rate; with sigmoid activations only the BN net trains.",
    bn_speedup,
    CIFAR_DATASETS,
    target=Target("eval_accuracy_above", reference="baseline", label="baseline's best accuracy"),
    paper_note="ImageNet Inception numbers (steps to reach 72.2% top-1); not the same task, compare the ratios.",
    figure="Ioffe & Szegedy 2015, Fig. 2",
  )
)


# ----------------------------------------------------------------------------- 3. GroupNorm vs BatchNorm
GN_PAPER_BN = {32: 23.6, 16: 23.7, 8: 24.8, 4: 27.3, 2: 34.7}
GN_PAPER_GN = {32: 24.1, 16: 24.2, 8: 24.0, 4: 24.2, 2: 24.1}
GN_PAPER_GROUPS = {64: 24.6, 32: 24.1, 16: 24.6, 8: 24.4, 4: 24.6, 2: 24.7, 1: 25.3}


def groupnorm_vs_batchnorm(scale: str) -> Plan:
  """Per-device BN statistics are emulated on one device by ghost batches: BN normalises each
  slice of `b` examples of the batch separately (config.bn.stats=ghost, ghost_batch_size=b),
  exactly what per-device BN over b images per device computes (tested in tests/test_parallel*)."""
  if scale == "paper":
    # GN paper (docs/paper_numbers.md sec. 3-4): ResNet-50, 8 GPUs x b images, lr 0.1 x b/32, 100 epochs,
    # / 10 at 30/60/90; wd 1e-4 on gamma/beta too; gamma = 0 init on the last norm of each residual
    # block. One device: global batch 8b, BN ghost batches of b (= per-GPU statistics).
    def cfg(b, norm, groups=32):
      o = {
        "model.name": "resnet50",
        "model.norm": norm,
        "model.norm_groups": groups,
        "model.zero_init_last_norm": True,
        "model.num_classes": 1000,
        "batch_size": 8 * b,
        "optimizer.lr": 0.1 * b / 32,
        "num_epochs": 100.0,
        "num_steps": -1,
      }
      if norm == "batch":
        o.update({"bn.stats": "ghost", "bn.ghost_batch_size": b})
      return o

    base = {
      "optimizer.name": "sgd",
      "optimizer.momentum": 0.9,
      "optimizer.weight_decay": 1e-4,
      "optimizer.decay_mask": "all",
      "schedule.name": "multistep",
      "schedule.unit": "epoch",
      "schedule.boundaries": (30, 60, 90),
      "data.augment.crop": "inception",
      "data.augment.flip": True,
      "data.augment.crop_size": 224,
      "log_every_steps": 100,
      "eval_every_epochs": 5.0,
      "checkpoint_every_steps": 5000,
      "eval_batch_size": 250,
    }
    variants = [
      Variant(f"bn_b{b}", cfg(b, "batch"), f"BN, {b}/device", "BN", b, GN_PAPER_BN[b])
      for b in GN_PAPER_BN
    ]
    variants += [
      Variant(f"gn_b{b}", cfg(b, "group"), f"GN, {b}/device", "GN", b, GN_PAPER_GN[b])
      for b in GN_PAPER_GN
    ]
    variants += [
      Variant("ln_b32", cfg(32, "layer"), "LN, 32/device", "LN", 32, 25.3),
      Variant("in_b32", cfg(32, "instance"), "IN, 32/device", "IN", 32, 28.4),
    ]
    variants += [
      Variant(f"gn_g{g}", cfg(32, "group", g), f"GN G={g}", "GN groups", None, GN_PAPER_GROUPS[g])
      for g in GN_PAPER_GROUPS
      if g != 32
    ]
    return Plan(
      base,
      variants,
      "the GN paper's ImageNet recipe with per-GPU statistics emulated by ghost "
      "batches on one device (global batch 8 x b as 8 GPUs); final test on the 224x224 centre crop "
      "(centre protocol, as the GN paper's Sec. 6.1)",
      comparable=False,
      checks=_gn_checks("gn_b2", "gn_b32"),
    )
  tiny = scale == "smoke"
  global_batch = 32
  bs = (
    (32, 2, 8, 16, 4) if not tiny else (2,)
  )  # most telling first: a cut-short run still compares 32 vs 2
  model = {
    "model.name": "resnet20",
    "model.zero_init_last_norm": True,
    "model.norm_groups": 8,
    **(TINY_RESNET if tiny else {}),
  }

  def v(name, label, group, b, norm, paper):
    o = {**model, "model.norm": norm}
    if norm == "batch":
      o.update({"bn.stats": "ghost", "bn.ghost_batch_size": b})
    return Variant(name, o, label, group, b, None, f"{paper} (ImageNet ResNet-50)" if paper else "")

  variants = [v(f"bn_b{b}", f"BN, {b}/device", "BN", b, "batch", GN_PAPER_BN[b]) for b in bs]
  variants.insert(2, v("gn", "GN (G=8), any b", "GN", global_batch, "group", GN_PAPER_GN[32]))
  if not tiny:
    variants += [
      v("ln", "LN, any b", "LN", global_batch, "layer", 25.3),
      v("in", "IN, any b", "IN", global_batch, "instance", 28.4),
    ]
  if tiny:
    return Plan(
      {**smoke_base(batch=global_batch), "optimizer.weight_decay": 1e-4},
      variants,
      "tiny ResNet-8 (widths 4/8/16), BN with ghost batches of 2 vs GN of 32 on the embedded "
      "MNIST sample",
      checks=_gn_checks()[:1],
    )
  # 5600 steps = 4 epochs of 32: ~9 min a run on an idle 2-core machine (ResNet-20 at batch 32
  # ~400 img/s), 8 variants x 3 seeds ~3.5 h. At 1200 steps (0.85 epoch) every net was still far
  # from converged (BN 59% error); 2 epochs took ~4 min a run, so the budget buys 4.
  steps = 5600
  base = {
    **CIFAR_AUG,
    **sgd_recipe(steps, 0.1 * global_batch / 128, global_batch, evals=4, log_every=20),
  }
  return Plan(
    base,
    variants,
    f"CIFAR ResNet-20 (paper: ResNet-50 on ImageNet), GN with G=8 groups (the CIFAR "
    f"widths 16/32/64 leave G=32 degenerate; gcd rule in layers.GroupNorm), {steps} steps. The global "
    f"batch is FIXED at {global_batch} for every variant (lr 0.025 = 0.1 x 32/128) and the per-device "
    f"batch b of the paper is emulated by BN ghost batches of b examples (bn.stats=ghost, "
    f"ghost_batch_size=b: the statistics of b examples per device as on {global_batch}//b devices). So "
    f"only the normalisation statistics change between the BN rows; GN/LN/IN use no batch statistics "
    f"and their single run stands for every b (horizontal lines in the figure). The paper instead "
    f"changes the global batch with b (8 GPUs) and scales the lr.",
    checks=_gn_checks(),
  )


def _gn_checks(gn_small: str = "gn", gn_32: str = "gn") -> tuple[Check, ...]:
  return (
    Check(
      "GN beats BN at 2 images per device",
      (gn_small, "final_eval_error"),
      "<",
      ("bn_b2", "final_eval_error"),
    ),
    Check(
      "BN with 2 images per device is worse than BN with 32",
      ("bn_b2", "final_eval_error"),
      ">",
      ("bn_b32", "final_eval_error"),
    ),
    Check(
      "BN at 32 per device is at or below GN (paper: 23.6 vs 24.1)",
      ("bn_b32", "final_eval_error"),
      "<=",
      (gn_32, "final_eval_error"),
    ),
  )


_add(
  Experiment(
    "groupnorm_vs_batchnorm",
    "GroupNorm vs BatchNorm (and LN, IN) across images per device",
    "Wu & He 2018, Tables 1-3, Fig. 1",
    "BN's error grows as the per-device batch shrinks (34.7% at 2 images/GPU vs 23.6% at 32) while GN "
    "stays flat (24.1%); at 32/GPU BN is slightly better than GN; LN and IN are worse.",
    groupnorm_vs_batchnorm,
    {"smoke": "embedded", "cpu": CIFAR_FOLDER, "paper": "imagenet_folder:/data/imagenet"},
    summary="x",
    x_label="images per device (b)",
    log_x=True,
    flat_groups=("GN", "LN", "IN"),
    paper_note="ImageNet ResNet-50 top-1 validation error (Tables 1-3); our cpu scale is CIFAR-10.",
    figure="Wu & He 2018, Fig. 1 and Table 2",
  )
)


# ----------------------------------------------------------------------------- 4. NiN GAP vs FC
def nin_gap_vs_fc(scale: str) -> Plan:
  model = {"model.name": "nin_cifar"}
  if scale == "smoke":
    model["model.blocks"] = TINY_NIN
  elif scale == "cpu":
    model["model.blocks"] = NARROW_NIN
  variants = [
    Variant(
      "gap",
      {**model, "model.head": "gap"},
      "mlpconv + GAP",
      "NiN",
      None,
      10.41,
      "Sec. 4.6, unconfirmed",
    ),
    Variant(
      "fc",
      {**model, "model.head": "fc"},
      "mlpconv + FC",
      "NiN",
      None,
      11.59,
      "Sec. 4.6, unconfirmed",
    ),
    Variant(
      "fc_dropout",
      {**model, "model.head": "fc", "model.head_dropout": 0.5},
      "mlpconv + FC + dropout",
      "NiN",
      None,
      10.88,
      "Sec. 4.6, unconfirmed",
    ),
  ]
  checks = (
    Check("GAP is at or below FC", ("gap", "final_eval_error"), "<=", ("fc", "final_eval_error")),
    Check(
      "dropout helps the FC head",
      ("fc_dropout", "final_eval_error"),
      "<=",
      ("fc", "final_eval_error"),
    ),
  )
  no_aug = {"data.augment.enabled": False}  # Sec. 4.6: CIFAR-10 without data augmentation
  if scale == "smoke":
    return Plan(
      {**smoke_base(), **no_aug},
      variants[:2],
      "tiny NiN (8-wide),, embedded MNIST sample",
      checks=checks[:1],
    )
  if scale == "cpu":
    return Plan(
      {**no_aug, **sgd_recipe(1500, 0.05, 128, evals=4)},
      variants,
      "narrow NiN (mlpconv widths 64-48-32 / 64-64-64 / 64-64-10), 1500 steps of 128 (4.3 epochs), "
      "per-channel normalisation (paper: GCN + ZCA whitening), no augmentation as Sec. 4.6",
      checks=checks,
    )
  zca = {"data.normalize": "none", "data.gcn": 55.0, "data.zca": True}
  return Plan(
    {
      **no_aug,
      **zca,
      **sgd_recipe(60_000, 0.05, 128, evals=30, log_every=100, checkpoint_every=2000),
      "model.init_std": 0.05,
    },
    variants,
    "the NiN paper gives no schedule: SGD momentum 0.9, lr 0.05 / 10 at 50% and 75% of 60k steps of "
    "128, wd 1e-4, N(0, 0.05) init (the authors' Caffe model); GCN + ZCA as Sec. 4.2",
    comparable=True,
    checks=checks,
  )


_add(
  Experiment(
    "nin_gap_vs_fc",
    "Network in Network: global average pooling vs fully connected head",
    "Lin et al. 2014, Sec. 4.6",
    "The same mlpconv layers with a GAP head generalise better than with an FC head "
    "(10.41 vs 11.59% test error), and better than FC + dropout (10.88%).",
    nin_gap_vs_fc,
    CIFAR_DATASETS,
    paper_note="CIFAR-10 test error without augmentation; the mlpconv numbers are marked unconfirmed in "
    "docs/paper_numbers.md (the conventional-CNN ones, FC 17.56 / FC+dropout 15.99 / GAP 16.46, are confirmed).",
    figure="Lin et al. 2014, Sec. 4.6",
  )
)


# ----------------------------------------------------------------------------- 5. GoogLeNet aux heads
def googlenet_aux(scale: str) -> Plan:
  variants = [
    Variant(
      "no_aux",
      {"model.name": "googlenet_bn"},
      "GoogLeNet (BN), no aux",
      "GoogLeNet",
      None,
      None,
      "no isolated number in the paper",
    ),
    Variant(
      "aux",
      {"model.name": "googlenet_bn_aux"},
      "GoogLeNet (BN) + 2 aux heads (weight 0.3)",
      "GoogLeNet",
      None,
      None,
      "Inception-v3 Sec. 4: no faster early training, small gain at the end",
    ),
  ]
  checks = (
    Check(
      "the aux heads do not hurt the final error",
      ("aux", "final_eval_error"),
      "<=",
      ("no_aux", "final_eval_error"),
      0.5,
    ),
  )
  note = (
    "torchvision's BN layout (googlenet_bn / googlenet_bn_aux: BN, no LRN, adaptive aux pooling, so the "
    "net runs at 32x32); the aux heads are trained with loss weight 0.3 and dropped at evaluation. At "
    "32x32 input the Inception 4x / 5x blocks see 2x2 / 1x1 maps (the paper: 14x14 / 7x7 at 224)."
  )
  if (
    scale == "smoke"
  ):  # the two blocks the aux heads read (4a, 4d), 4-8 wide: the full net compiles for ~1 min
    tiny = {"model.table": ("pool", ("4a", 8, 8, 8, 4, 4, 4), ("4d", 8, 8, 8, 4, 4, 4))}
    return Plan(
      {**smoke_base(batch=16), **tiny},
      variants,
      note
      + " Smoke: a 2-block GoogLeNet (Inception 4a/4d, 4-8 wide) on the embedded MNIST sample.",
      checks=checks,
    )
  if scale == "cpu":
    # GoogLeNet-BN with aux heads at 32x32: ~260 img/s on an idle 2-core machine, ~20 min a run.
    steps = 2400
    return Plan(
      {**CIFAR_AUG, **sgd_recipe(steps, 0.05, 128, evals=6)},
      variants,
      note + f" CIFAR-10 (the reduced stand-in for ImageNet at this scale), {steps} steps of 128 "
      f"({steps * 128 / 45000:.1f} epochs), lr 0.05 / 10 at 50% and 75% (the paper: lr x 0.96 every "
      f"8 epochs), errors on the 5k held-out images.",
      checks=checks,
    )
  base = {
    "data.augment.crop": "inception",
    "data.augment.flip": True,
    "data.augment.crop_size": 224,
    "model.num_classes": 1000,
    "optimizer.name": "sgd",
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 1e-4,
    "batch_size": 256,
    "num_steps": -1,
    "num_epochs": 90.0,
    "schedule.name": "step",
    "schedule.unit": "epoch",
    "schedule.step_size": 8.0,
    "schedule.decay_factor": 0.96,
    "log_every_steps": 100,
    "eval_every_epochs": 2.0,
    "checkpoint_every_steps": 5000,
    "eval_batch_size": 250,
    "eval_protocol": "multi_crop_144",  # GoogLeNet Sec. 10
  }
  return Plan(
    base,
    variants,
    "ImageNet, GoogLeNet Sec. 6 schedule shape (momentum 0.9, lr x 0.96 every 8 epochs) "
    "with synchronous SGD batch 256 and 90 epochs (the paper: asynchronous DistBelief); final test "
    "with the 144 crops of Sec. 10 (multi_crop_144 protocol; periodic evaluations on the centre "
    "crop; on a streamed folder the central square of each image, so the three squares of a scale "
    "coincide); " + note,
    checks=checks,
  )


_add(
  Experiment(
    "googlenet_aux",
    "GoogLeNet with and without the auxiliary classifiers",
    "Szegedy et al. 2015, Sec. 5; Szegedy et al. 2016 (Inception-v3) Sec. 4",
    "The aux heads (after 4a and 4d, loss weight 0.3) were meant to help gradient flow; the paper gives no "
    "isolated number, Inception-v3 found no faster early training and a small regularising gain at the end.",
    googlenet_aux,
    IMAGENET_DATASETS,
    paper_note="No isolated ablation number exists in either paper.",
    figure="Szegedy et al. 2016, Sec. 4 (aux heads)",
  )
)


# ----------------------------------------------------------------------------- 6. SE reduction ratio
SE_TABLE10 = {2: 22.29, 4: 22.25, 8: 22.26, 16: 22.28, 32: 22.72}


def se_reduction(scale: str) -> Plan:
  """SE's bottleneck is C // r wide (Sec. 3.2). At the CIFAR ResNet's widths 16/32/64 that is
  16/8/4 ... 1/2/4 channels for r = 2 ... 16, and 0 for r = 32 on the first stage. The SE paper's
  CIFAR nets (ResNet-110/164, Sec. 6.1) use r = 16 on the same 16/32/64 widths, so r <= 16 here is
  what the paper ran on CIFAR; r = 32 cannot be built at these widths without a floor, and runs only
  where stated, with `attn_min_channels=1` (a named deviation: first-stage width 1, not 0.5)."""
  model = {
    "model.name": "resnet20",
    "model.norm": "batch",
    **(TINY_RESNET if scale == "smoke" else {}),
  }
  if scale == "smoke":  # widths 4/8/16: C // 16 = 0 on the first stage without a floor
    model["model.attn_min_channels"] = 1

  def se(r: int, extra: dict[str, Any] | None = None) -> Variant:
    return Variant(
      f"se_r{r}",
      {**model, "model.attn": "se", "model.attn_reduction": r, **(extra or {})},
      f"SE r={r}" + (" (floor 1)" if extra else ""),
      "SE",
      r,
      None,
      f"SE-ResNet-50 r={r}: {SE_TABLE10[r]} (ImageNet)",
    )

  none = Variant(
    "none",
    {**model, "model.attn": ""},
    "ResNet-20",
    "SE",
    None,
    None,
    "ResNet-50: 23.30 (ImageNet)",
  )
  cbam = Variant(
    "cbam",
    {**model, "model.attn": "cbam", "model.attn_reduction": 16},
    "CBAM r=16",
    "CBAM",
    16,
    None,
    "CBAM-ResNet-50: 22.66 vs SE 23.14 (ImageNet, unconfirmed)",
  )
  checks = (
    Check(
      "SE (r=16) is at or below no attention",
      ("se_r16", "final_eval_error"),
      "<=",
      ("none", "final_eval_error"),
    ),
    Check(
      "CBAM is at or below no attention",
      ("cbam", "final_eval_error"),
      "<=",
      ("none", "final_eval_error"),
    ),
  )
  r32_check = Check(
    "r=32 is not better than r=16 (paper: 22.72 vs 22.28)",
    ("se_r32", "final_eval_error"),
    ">=",
    ("se_r16", "final_eval_error"),
    -0.5,
  )
  if scale == "smoke":
    return Plan(
      smoke_base(),
      [none, se(16)],
      "tiny ResNet-8 (widths 4/8/16, SE hidden width floored at 1), embedded MNIST",
      checks=checks[:1],
    )
  if scale == "cpu":
    steps = 1200  # ~10 min a run on an idle 2-core machine (ResNet-20 ~270 img/s)
    return Plan(
      {**CIFAR_AUG, **sgd_recipe(steps, 0.1, 128, evals=4)},
      [none, se(2), se(8), se(16), cbam],
      f"CIFAR ResNet-20 (the paper's sweep: ResNet-50 on ImageNet), {steps} steps of 128 "
      f"({steps * 128 / 45000:.1f} epochs), lr / 10 at 50% and 75%; r = 2, 8, 16 (r = 16 with "
      f"bottlenecks of 1/2/4 channels is the SE paper's own CIFAR setting, Sec. 6.1; r = 32 would "
      f"leave 0 channels on the first stage and is not run at this scale); JPEG CIFAR-10 training "
      f"folder, errors on the 5k held-out images",
      checks=checks,
    )
  return Plan(
    {**CIFAR_AUG, **sgd_recipe(64_000, 0.1, 128, log_every=100, evals=32, checkpoint_every=2000)},
    [none, se(2), se(4), se(8), se(16), se(32, {"model.attn_min_channels": 1}), cbam],
    "CIFAR ResNet-20 with the ResNet CIFAR recipe (64k steps of 128); the paper's numbers are "
    "ImageNet ResNet-50, for the trend only; r = 32 runs with its first-stage bottleneck floored "
    "at 1 channel (model.attn_min_channels=1: 16 // 32 = 0)",
    checks=checks + (r32_check,),
  )


_add(
  Experiment(
    "se_reduction",
    "Squeeze-and-Excitation reduction ratio, and CBAM",
    "Hu et al. 2018, Table 10; Woo et al. 2018",
    "SE improves the plain ResNet at every r and is insensitive to r in 2..16 (22.25-22.29%), a little worse at "
    "r=32 (22.72%); CBAM (channel + spatial attention) improves on SE.",
    se_reduction,
    CIFAR_DATASETS,
    paper_note="ImageNet ResNet-50 top-1 errors; our runs are CIFAR ResNet-20.",
    figure="Hu et al. 2018, Table 10",
  )
)


# ----------------------------------------------------------------------------- 7. VGG receptive field, LRN, scale
def vgg_receptive_field(scale: str) -> Plan:
  """At smoke/cpu the VGGs run on 32x32 CIFAR images with narrow widths (the five 2x2 pools leave a
  1x1 map, average-pooled up to the 7x7 FC input as torchvision's adaptive pool); 'scale' S is the
  shorter side the 32x32 image is resized to before a random 32x32 crop: fixed S=36 vs S ~ U[32, 48]
  (the paper: 256 vs [256, 512] with 224 crops), tested at Q=S (fixed) or Q=40 (jittered) as Table 3."""
  small = scale in ("smoke", "cpu")
  widths = {"smoke": (4, 8, 8, 8, 8), "cpu": (32, 64, 128, 128, 128)}.get(scale)
  model = (
    {"model.widths": widths, "model.fc_features": 16 if scale == "smoke" else 256} if small else {}
  )
  fixed = {"data.augment.crop": "scale_jitter", "data.augment.flip": True}
  if small:
    fixed.update(
      {
        "data.augment.scale_min": 36.0,
        "data.augment.scale_max": 36.0,
        "data.augment.crop_size": 32,
        "data.eval_resize": 36,
        "data.eval_crop": 32,
      }
    )
    jitter = {
      "data.augment.scale_min": 32.0,
      "data.augment.scale_max": 48.0,
      "data.eval_resize": 40,
    }
  else:
    fixed.update(
      {
        "data.augment.scale_min": 256.0,
        "data.augment.scale_max": 256.0,
        "data.augment.crop_size": 224,
        "data.eval_resize": 256,
        "data.eval_crop": 224,
      }
    )
    jitter = {
      "data.augment.scale_min": 256.0,
      "data.augment.scale_max": 512.0,
      "data.eval_resize": 384,
    }
  variants = [
    Variant(
      "vgg13",
      {**model, "model.name": "vgg13"},
      "B (3x3 pairs), S fixed",
      "receptive field",
      None,
      None,
      "B: baseline of the 5x5 comparison",
    ),
    Variant(
      "vgg13_5x5",
      {**model, "model.name": "vgg13_5x5"},
      "B with 5x5 convs",
      "receptive field",
      None,
      None,
      "7% higher top-1 than B (centre crop, Sec. 4.1)",
    ),
    Variant(
      "vgg11", {**model, "model.name": "vgg11"}, "A", "LRN", None, None, "A: 29.6 top-1 (Table 3)"
    ),
    Variant(
      "vgg11_lrn",
      {**model, "model.name": "vgg11_lrn"},
      "A-LRN",
      "LRN",
      None,
      None,
      "A-LRN: 29.7 top-1 (Table 3)",
    ),
    Variant(
      "vgg13_jitter",
      {**model, "model.name": "vgg13", **jitter},
      "B, S jittered",
      "scale",
      None,
      None,
      "D: S=256 27.0 vs S=[256,512] 25.6 top-1 (Table 3)",
    ),
  ]
  checks = (
    Check(
      "two 3x3 convs beat one 5x5 (B vs B-5x5)",
      ("vgg13", "final_eval_error"),
      "<",
      ("vgg13_5x5", "final_eval_error"),
    ),
    Check(
      "LRN does not help (A-LRN not better than A by more than 0.5)",
      ("vgg11_lrn", "final_eval_error"),
      ">=",
      ("vgg11", "final_eval_error"),
      -0.5,
    ),
    Check(
      "scale jittering beats a fixed scale",
      ("vgg13_jitter", "final_eval_error"),
      "<",
      ("vgg13", "final_eval_error"),
    ),
  )
  if scale == "smoke":
    return Plan(
      {**smoke_base(), **fixed},
      variants[:2],
      "VGG-B / B-5x5 at widths 4/8/8/8/8, FC 16, on 32x32 (padded MNIST), fixed S=36 -> 32 crops",
      checks=checks[:1],
    )
  if scale == "cpu":
    return Plan(
      {**fixed, **sgd_recipe(800, 0.01, 128, wd=5e-4, evals=2)},
      variants,
      "VGG A/B at widths 32/64/128/128/128 with FC 256 (the paper: 64..512, FC 4096) on 32x32 CIFAR-10, "
      "S fixed 36 or jittered in [32, 48] with 32x32 crops (the paper: 256 or [256, 512], 224 crops), "
      "800 steps of 128, lr 0.01 (the paper's) / 10 at 50% and 75%, wd 5e-4, dropout 0.5",
      checks=checks,
    )
  base = {
    **fixed,
    "model.num_classes": 1000,
    "optimizer.name": "sgd",
    "optimizer.lr": 0.01,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 5e-4,
    "batch_size": 256,
    "num_steps": -1,
    "num_epochs": 74.0,
    "schedule.name": "multistep",
    "schedule.unit": "epoch",
    "schedule.boundaries": (30, 50, 65),
    "log_every_steps": 100,
    "eval_every_epochs": 2.0,
    "checkpoint_every_steps": 5000,
    "eval_batch_size": 250,
    "eval_protocol": "dense_multiscale",  # Table 3: dense evaluation at the single scale Q
  }
  return Plan(
    base,
    variants,
    "ImageNet, Sec. 3.1 recipe (batch 256, lr 0.01 / 10 three times - here at fixed "
    "epochs 30/50/65 instead of on plateau - 74 epochs, wd 5e-4, dropout 0.5), single-scale test: "
    "final test by dense evaluation (Sec. 3.2, dense_multiscale protocol) at Q = S (256) or Q = 384 "
    "for jittered S, as Table 3, with its flip; periodic evaluations on the 224 centre crop; on a "
    "streamed folder the dense net sees the central Q x Q square of each image",
    checks=checks,
  )


_add(
  Experiment(
    "vgg_receptive_field",
    "VGG: 3x3 stacks vs 5x5, LRN, fixed vs jittered training scale",
    "Simonyan & Zisserman 2015, Sec. 4.1, Table 3",
    "A pair of 3x3 convs (same receptive field as one 5x5) is better than the 5x5 (B vs B-5x5: +7% top-1 "
    "error for 5x5); LRN does not help (A-LRN 29.7 vs A 29.6); scale jittering at training helps (27.0 -> 25.6).",
    vgg_receptive_field,
    IMAGENET_DATASETS,
    paper_note="ImageNet top-1 validation errors, single scale.",
    figure="Simonyan & Zisserman 2015, Table 3",
  )
)


# ----------------------------------------------------------------------------- 8. activation, dropout, augmentation
def activation_and_dropout(scale: str) -> Plan:
  lenet = {"model.name": "lenet5"}
  nin = {"model.name": "nin_cifar", "model.blocks": TINY_NIN if scale == "smoke" else NARROW_NIN}
  if scale == "paper":
    nin = {"model.name": "nin_cifar"}
  variants = [
    Variant(f"lenet_{a}", {**lenet, "model.act": a}, f"LeNet-5 {a}", "activation", None, None, text)
    for a, text in (
      ("relu", "ReLU: 25% train error ~6x sooner than tanh (AlexNet Fig. 1)"),
      ("tanh", "tanh (AlexNet Fig. 1)"),
      ("sigmoid", "not in Fig. 1"),
    )
  ]
  variants += [
    Variant(
      "nin_dropout",
      {**nin, "model.dropout": 0.5},
      "NiN, dropout 0.5",
      "dropout",
      None,
      None,
      "AlexNet: without dropout substantial overfitting",
    ),
    Variant(
      "nin_no_dropout",
      {**nin, "model.dropout": 0.0},
      "NiN, no dropout",
      "dropout",
      None,
      None,
      "AlexNet: dropout roughly doubles the iterations to converge",
    ),
    Variant(
      "nin_no_aug",
      {**nin, "model.dropout": 0.5, "data.augment.enabled": False},
      "NiN, dropout, no augmentation",
      "augmentation",
      None,
      None,
      "NiN C10: 10.41 without vs 8.81 with translation + flip",
    ),
  ]
  checks = (
    Check(
      "ReLU reaches the target training error sooner than tanh",
      ("lenet_relu", "steps_to_target"),
      "<",
      ("lenet_tanh", "steps_to_target"),
    ),
    Check(
      "dropout lowers the eval error (less overfitting)",
      ("nin_dropout", "final_eval_error"),
      "<=",
      ("nin_no_dropout", "final_eval_error"),
    ),
    Check(
      "augmentation lowers the eval error",
      ("nin_dropout", "final_eval_error"),
      "<=",
      ("nin_no_aug", "final_eval_error"),
    ),
  )
  if scale == "smoke":
    return Plan(
      smoke_base(),
      variants[:2],
      "LeNet-5 ReLU vs tanhon the embedded MNIST sample",
      checks=checks[:1],
      target=Target("train_error_below", 25.0, label="25% training error"),
    )
  if scale == "cpu":
    return Plan(
      {**CIFAR_AUG, **sgd_recipe(1500, 0.05, 128, evals=4, milestones=(0.75, 0.9))},
      variants,
      "CIFAR-10: LeNet-5 (3 input channels) instead of AlexNet's 4-layer CIFAR net for the activations, "
      "one lr (0.05) for all (the paper tuned each); target 50% training error (LeNet-5 reaches the "
      "paper's 25% too late for this budget); dropout and augmentation on a narrow NiN instead of "
      "AlexNet on ImageNet; 1500 steps of 128 (4.3 epochs)",
      checks=checks,
      target=Target("train_error_below", 50.0, label="50% training error"),
    )
  return Plan(
    {**CIFAR_AUG, **sgd_recipe(60_000, 0.05, 128, evals=30, log_every=50, checkpoint_every=2000)},
    variants,
    "CIFAR-10 for all: LeNet-5 for the activations (AlexNet Fig. 1 used a 4-layer CIFAR net), "
    "NiN for dropout / augmentation; 60k steps of 128",
    checks=checks,
    target=Target("train_error_below", 25.0, label="25% training error"),
  )


_add(
  Experiment(
    "activation_and_dropout",
    "Activations (sigmoid / tanh / ReLU), dropout on/off, augmentation on/off",
    "Krizhevsky et al. 2012, Fig. 1 and Secs. 4.1-4.2; Lin et al. 2014 Table 1",
    "ReLU nets reach 25% training error on CIFAR-10 six times faster than tanh nets; without dropout AlexNet "
    "overfits substantially; augmentation lowers the test error.",
    activation_and_dropout,
    CIFAR_DATASETS,
    target=Target("train_error_below", 25.0, label="25% training error"),
    paper_note="AlexNet Fig. 1 is a curve (a 4-layer CIFAR-10 net), dropout/augmentation claims are qualitative.",
    figure="Krizhevsky et al. 2012, Fig. 1",
  )
)


# ----------------------------------------------------------------------------- 9. DenseNet vs ResNet
DENSENET_C10_PLUS = {"densenet40_k12": 5.24, "densenet_bc_100_12": 4.51}
DENSENET_LABELS = {
  "densenet40_k12": "DenseNet-40 (k=12)",
  "densenet_bc_100_12": "DenseNet-BC-100 (k=12)",
}


def densenet_vs_resnet(scale: str) -> Plan:
  if scale == "smoke":
    variants = [
      Variant("resnet", {"model.name": "resnet20", **TINY_RESNET}, "ResNet-8 (tiny)", "ResNet"),
      Variant(
        "densenet",
        {"model.name": "densenet40_k12", "model.block_config": (1, 1, 1), "model.growth_rate": 4},
        "DenseNet (1 layer/block, k=4)",
        "DenseNet",
      ),
    ]
    return Plan(
      smoke_base(),
      variants,
      "tiny ResNet-8 vs a DenseNet with 1 layer per block, k=4",
      checks=(
        Check(
          "DenseNet below ResNet",
          ("densenet", "final_eval_error"),
          "<",
          ("resnet", "final_eval_error"),
        ),
      ),
    )
  depths = (20, 56) if scale == "cpu" else (20, 56, 110)
  dense = ("densenet40_k12",) if scale == "cpu" else ("densenet40_k12", "densenet_bc_100_12")
  variants = [
    Variant(
      f"resnet{d}",
      {"model.name": f"resnet{d}"},
      f"ResNet-{d}",
      "ResNet",
      None,
      RESNET_TABLE6[d],
      "ResNet paper Table 6 (C10+)",
    )
    for d in depths
  ]
  variants += [
    Variant(
      n,
      {"model.name": n},
      DENSENET_LABELS[n],
      "DenseNet",
      None,
      DENSENET_C10_PLUS[n],
      "DenseNet Table 2 (C10+)",
    )
    for n in dense
  ]
  checks = (
    Check(
      "DenseNet-40 (1.0M) beats ResNet-56 (0.85M)",
      ("densenet40_k12", "final_eval_error"),
      "<",
      ("resnet56", "final_eval_error"),
    ),
  )
  if scale == "cpu":
    # DenseNet-40 trains at ~35 img/s on an idle 2-core machine (265M multiply-adds per image, 2x
    # ResNet-56's): 1600 steps of 64 (2.3 epochs) is ~50 min for it, ~15 / ~5 min for ResNet-56 / 20.
    steps = 1600
    return Plan(
      {**CIFAR_AUG, **sgd_recipe(steps, 0.1, 64, evals=4)},
      variants,
      f"ResNet-20/56 and DenseNet-40 (k=12) only, both with the DenseNet recipe's shape (batch 64, "
      f"lr 0.1 / 10 at 50% and 75%, momentum 0.9, wd 1e-4) cut to {steps} steps "
      f"({steps * 64 / 45000:.1f} epochs; the papers: 300 / 182 epochs); JPEG CIFAR-10 training "
      f"folder, errors on the 5k held-out images",
      checks=checks,
    )
  # DenseNet recipe for the DenseNets (300 epochs of 64 = 210.9k steps on 45k), ResNet recipe for the ResNets.
  for v in variants:
    if v.group == "DenseNet":
      v.overrides.update(
        {
          "optimizer.name": "nesterov",
          "batch_size": 64,
          "num_steps": 210_900,
          "schedule.boundaries": (105_450, 158_175),
        }
      )
  return Plan(
    {**CIFAR_AUG, **sgd_recipe(64_000, 0.1, 128, log_every=100, evals=32, checkpoint_every=2000)},
    variants,
    "each paper's own recipe: ResNets 64k steps of 128 (ResNet Sec. 4.2), DenseNets 300 epochs of 64 "
    "with Nesterov momentum (DenseNet Sec. 4.2)",
    comparable=True,
    checks=checks,
  )


_add(
  Experiment(
    "densenet_vs_resnet",
    "DenseNet vs ResNet: accuracy against parameters on CIFAR-10",
    "Huang et al. 2017, Table 2 and Fig. 4; He et al. 2016 Table 6",
    "DenseNets reach a lower error than ResNets with fewer parameters (DenseNet-BC-100 k=12: 0.8M, 4.51% vs "
    "ResNet-110: 1.7M, 6.43%).",
    densenet_vs_resnet,
    CIFAR_DATASETS,
    summary="params",
    paper_note="C10+ test errors (standard augmentation).",
    figure="Huang et al. 2017, Fig. 4 and Table 2",
  )
)
