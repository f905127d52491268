"""The experiment runner (experiments/): plans validate at every scale; --set, --dataset, the
validation rule; summaries keep every split's curve; the report is built from the stored per-run
summaries (mean ± std with ddof=1, claims holds / does not hold / inconclusive, stale and failed
runs listed) and rebuilt identically; every plan runs at every scale on tiny stand-ins of its
default dataset (a fake streamed ImageNet folder with odd image sizes, a CIFAR-like folder, TFDS
CIFAR-10 through tfds.testing.mock_data, the embedded MNIST sample). Machinery only, not accuracy.

Default tier: one real run per kind of data (smoke MNIST, CIFAR-like folder at cpu scale, mock TFDS
at paper scale, streamed ImageNet folder at paper scale), the rest on synthetic metrics. `-m slow`:
each plan at each scale (a real 2-step run of one variant + a dry run of all of them; every variant
for real at smoke scale).
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from classic_cnns import train
from classic_cnns import build
from classic_cnns import steps
from classic_cnns.config import ConfigError
from classic_cnns.data.common import DatasetError
from experiments import configs, report, run, store
from experiments.definitions import EXPERIMENTS
from experiments.spec import SCALES, Check

NAMES = sorted(EXPERIMENTS)
REQUIRED = {
  "resnet_degradation",
  "bn_speedup",
  "groupnorm_vs_batchnorm",
  "nin_gap_vs_fc",
  "googlenet_aux",
  "se_reduction",
  "vgg_receptive_field",
  "activation_and_dropout",
  "densenet_vs_resnet",
}
IMAGENET_PLANS = ("groupnorm_vs_batchnorm", "vgg_receptive_field", "googlenet_aux")
REPORT_FILES = ("results.md", "results.json", "curves.png", "summary.png")


# ----------------------------------------------------------------------------- tiny datasets
def make_fake_imagenet(
  root: str, classes: int = 3, train_per_class: int = 5, val_per_class: int = 2
) -> str:
  """root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG of odd sizes (as ImageNet's)."""
  from PIL import Image

  rng = np.random.default_rng(0)
  sizes = [(333, 500), (500, 375), (375, 500), (281, 300), (240, 427)]
  for split, n in (("train", train_per_class), ("val", val_per_class)):
    for c in range(classes):
      d = os.path.join(root, split, f"n0144{c:04d}")
      os.makedirs(d, exist_ok=True)
      for i in range(n):
        h, w = sizes[(i + c) % len(sizes)]
        img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        Image.fromarray(img).save(os.path.join(d, f"n0144{c:04d}_{i}.JPEG"), quality=75)
  return root


def make_cifar_like(root: str, classes: int = 2, per_class: int = 30) -> str:
  """root/train/<class>/*.jpg, 32x32, train only (the cpu scale's CIFAR-10 folder)."""
  from PIL import Image

  rng = np.random.default_rng(1)
  for c in range(classes):
    d = os.path.join(root, "train", f"class{c}")
    os.makedirs(d, exist_ok=True)
    for i in range(per_class):
      Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        os.path.join(d, f"{i}.jpg")
      )
  return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("experiment_data")
  return {
    "imagenet": make_fake_imagenet(str(root / "imagenet")),
    "cifar": make_cifar_like(str(root / "cifar_like")),
    "tfds_dir": str(root / "tfds"),
  }


def mock_tfds_cifar10(data_dir: str, monkeypatch, num_examples: int = 60) -> None:
  """Loads a mock TFDS CIFAR-10 under `data_dir` into the runner's per-process cache (training
  itself runs outside the mock, which would also mock Orbax's file writes)."""
  tfds = pytest.importorskip("tensorflow_datasets")
  from classic_cnns.data import common, sources

  monkeypatch.setattr(common, "download_host_reachable", lambda timeout=5.0: True)
  with tfds.testing.mock_data(num_examples=num_examples):
    sources.load_tfds(
      "cifar10", data_dir, True
    )  # the runner's cached loader; the same positional key


def dataset_for(name: str, scale: str, data) -> str:
  """The tiny stand-in of the plan's default dataset at that scale."""
  default = configs.parse_dataset(EXPERIMENTS[name].datasets[scale])
  return {
    "embedded": "embedded",
    "cifar10_folder": f"cifar10_folder:{data['cifar']}",
    "tfds": f"tfds:cifar10@{data['tfds_dir']}",
    "imagenet_folder": f"imagenet_folder:{data['imagenet']}",
  }[default.kind]


# 2 steps and the final evaluation, batches that fit the tiny data; per plan, a cheap variant to train
# and what shrinks its model (the ImageNet plans keep their host-side crops, at 64 px).
SHRINK = [
  "num_steps=2",
  "log_every_steps=1",
  "batch_size=8",
  "eval_batch_size=16",
  "bn.ghost_batch_size=2",
]
CHEAP = {
  "resnet_degradation": ("resnet20", []),
  "groupnorm_vs_batchnorm": ("gn", []),
  "bn_speedup": ("baseline", []),
  "se_reduction": ("none", []),
  "densenet_vs_resnet": ("resnet20", []),
  "nin_gap_vs_fc": ("gap", []),
  "activation_and_dropout": ("lenet_relu", []),
  "vgg_receptive_field": ("vgg11", ["model.widths=(4, 8, 8, 8, 8)", "model.fc_features=16"]),
  "googlenet_aux": (
    "no_aux",
    ['model.table=("pool", ("4a", 8, 8, 8, 4, 4, 4), ("4d", 8, 8, 8, 4, 4, 4))'],
  ),
}
PAPER_CHEAP = {
  "groupnorm_vs_batchnorm": (
    "gn_b2",
    ["model.stage_sizes=(1, 1, 1, 1)", "model.widths=(4, 8, 8, 8)"],
  ),
  "vgg_receptive_field": ("vgg11", CHEAP["vgg_receptive_field"][1] + ["data.eval_crop=64"]),
  "googlenet_aux": ("no_aux", CHEAP["googlenet_aux"][1]),
}
IMAGENET_64 = ["data.augment.crop_size=64"]


def shrink_args(name: str, scale: str) -> tuple[str, list[str]]:
  variant, extra = (PAPER_CHEAP if scale == "paper" and name in PAPER_CHEAP else CHEAP)[name]
  if scale == "paper" and name in IMAGENET_PLANS:
    extra = extra + IMAGENET_64
  return variant, [f"--config.{s}" for s in SHRINK + extra]


def run_cli(argv: list[str]) -> int:
  try:
    run.main(argv)
  except SystemExit as e:
    return int(e.code or 0)
  return 0


def check_report(results: str, name: str, scale: str, trained: dict[str, int]) -> dict:
  outdir = os.path.join(results, name, scale)
  for f in REPORT_FILES:
    assert os.path.getsize(os.path.join(outdir, f)) > 0, f
  with open(os.path.join(outdir, "results.json")) as f:
    data = json.load(f)
  rows = {r["name"]: r for r in data["variants"]}
  assert set(rows) == {v.name for v in EXPERIMENTS[name].plan(scale).variants}
  for v, n in trained.items():
    r = rows[v]
    assert r["n"] == n and r["params"] > 0, v
    assert 0 <= r["final_eval_error"] <= 100 and 0 <= r["final_train_error"] <= 100
    assert r["curve_train"], v
    assert os.path.exists(store.summary_path(results, name, scale, v, 0))
  md = open(os.path.join(outdir, "results.md")).read()
  assert "| variant | params | steps | seeds |" in md and "python -m experiments.run" in md
  return data


# ----------------------------------------------------------------------------- plans
def test_all_experiments_listed(capsys):
  assert REQUIRED <= set(EXPERIMENTS)
  run.main(["--list"])
  out = capsys.readouterr().out
  for name in REQUIRED:
    assert name in out
  assert all(e.figure for e in EXPERIMENTS.values())


@pytest.mark.parametrize("scale", SCALES)
def test_plans_build_valid_configs(scale):
  """Every variant at every scale is a valid config on its default dataset (no data read); the
  smoke/cpu models build (eval_shape)."""
  for name in NAMES:
    plan = EXPERIMENTS[name].plan(scale)
    assert plan.variants and plan.note
    names = {v.name for v in plan.variants}
    assert len(names) == len(plan.variants)
    for check in plan.checks:
      assert check.lhs[0] in names and check.rhs[0] in names and check.lhs != check.rhs, (
        name,
        scale,
        check.claim,
      )
    ctx = run.prepare(name, scale, None, [], None, "/nonexistent", "/nonexistent", None)
    assert len({j.hash for j in ctx.jobs}) == len(ctx.jobs)
    for job in ctx.jobs:
      assert job.config.num_steps > 0 or job.config.num_epochs > 0
      if scale != "paper":
        model = build.build_model(job.config, 1)
        out = jax.eval_shape(
          lambda: model.init(
            {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
            jnp.zeros((2, 32, 32, 3)),
            train=False,
          )
        )
        assert out["params"]


@pytest.mark.parametrize("name", IMAGENET_PLANS)
def test_imagenet_plans_crop_on_the_host_when_streamed(name):
  """On a streamed ImageNet folder the paper's crop family runs on the host at the same sizes
  (in memory, the same plan keeps its in-jit crops)."""
  plan = EXPERIMENTS[name].plan("paper")
  for v in plan.variants:
    streamed = configs.variant_config(plan, v, "imagenet_folder:/data/imagenet", 0)
    d, s = streamed.data, streamed.data.streaming
    assert s.enabled and d.augment.crop == "none" and not d.augment.flip and s.crop == 224
    assert (
      d.eval_resize == 0 and d.eval_crop == 0 and d.stats == "metadata" and d.name == "imagenet2012"
    )
    memory = configs.variant_config(plan, v, "folder:/data/x", 0)
    assert (
      memory.data.augment.crop == s.augment.replace("resize_crop", "resize")
      and memory.data.augment.crop_size == 224
    )
    if s.augment == "scale_jitter":
      assert (s.scale_min, s.resize) == (256, memory.data.eval_resize)
      assert s.scale_max == (512 if v.name == "vgg13_jitter" else 256)
    else:
      assert s.augment == "inception" and s.resize == 256


# ----------------------------------------------------------------------------- command line
def test_set_overrides_follow_ml_collections_rules():
  c = run.base_config()
  c.model.widths = (4, 8)
  configs.apply_sets(
    c,
    configs.parse_sets(
      [
        "optimizer.lr=1",
        "num_steps=7",
        "model.widths=(1,2,3)",
        "data.augment.flip=true",
        "schedule.boundaries=(10, 20)",
        "model.norm_epsilon=1e-3",
        "data.source=tfds",
        "model.new_option=[1, 2]",
      ]
    ),
  )
  assert c.optimizer.lr == 1.0 and isinstance(c.optimizer.lr, float) and c.num_steps == 7
  assert (
    c.model.widths == (1, 2, 3)
    and c.data.augment.flip is True
    and c.schedule.boundaries == (10, 20)
  )
  assert c.model.norm_epsilon == 1e-3 and c.data.source == "tfds" and c.model.new_option == [1, 2]
  for bad, match in (
    ("nope=1", "unknown config key 'nope'"),
    ("data.nope.x=1", "unknown config key"),
    ("num_steps=2.5", "num_steps"),
    ("data.augment.flip=maybe", "flip"),
    ("lr", "KEY=VALUE"),
    ("seed=3", "--seeds"),
  ):
    with pytest.raises(ConfigError, match=match):
      configs.apply_sets(run.base_config(), configs.parse_sets([bad]))
  with pytest.raises(ConfigError, match="does not accept"):  # a model option the model lacks
    run.prepare(
      "resnet_degradation", "smoke", None, [("model.no_such_option", "1")], None, "", "", None
    )


@pytest.mark.parametrize(
  "argv, match",
  [
    (["--config.nope=1"], "--config.nope=...: unknown config key 'nope'"),
    (["--config.num_steps=two"], "--config.num_steps=two"),
    (["--config.optimizer.lr"], "--config.optimizer.lr needs a value"),
    (["--config=configs/resnet_cifar.py"], "reads no config file"),
    (["--set", "nope=1"], "unknown config key"),
    (["--set", "num_steps=two"], "num_steps"),
    (["--set", "seed=3"], "--seeds"),
    (["--dataset=mnist:x"], "--dataset"),
    (["--seeds=x"], "--seeds"),
    (["--only=resnet999"], "no variant"),
    (["--scale=huge"], "--scale"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["another_name"], "unexpected arguments"),
  ],
)
def test_command_line_errors_are_one_line_exit_2(argv, match, capsys, tmp_path):
  code = run_cli(["resnet_degradation", f"--results={tmp_path}", f"--out={tmp_path}"] + argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and err[0].startswith("error:") and match in err[0], err
  assert not os.listdir(tmp_path)
  assert run_cli(["nope"]) == 2
  assert run_cli([]) == 2


def parsed(monkeypatch, argv: list[str]) -> dict:
  """The arguments the command line hands to run_experiment (which is not run)."""
  got = {}

  def fake(
    name,
    scale,
    dataset,
    seeds,
    out,
    results,
    report_only,
    only,
    sets,
    dry_run,
    keep_going,
    command,
    note,
  ):
    got.update({k: v for k, v in locals().items() if k != "got"})
    return {"failures": []}

  monkeypatch.setattr(run, "run_experiment", fake)
  assert run_cli(argv) == 0
  return got


def test_command_line_keeps_its_earlier_spellings(monkeypatch):
  """The queued commands keep working: NAME anywhere, --seeds=A-B, --set KEY=VALUE, the hyphenated
  switches; each call parses from the defaults."""
  got = parsed(monkeypatch, ["resnet_degradation", "--scale=cpu", "--seeds=0-0"])
  assert (got["name"], got["scale"], got["seeds"], got["sets"], got["only"]) == (
    "resnet_degradation",
    "cpu",
    "0-0",
    [],
    None,
  )
  assert (got["dry_run"], got["report_only"], got["keep_going"], got["dataset"]) == (
    False,
    False,
    True,
    None,
  )
  assert got["command"] == "python -m experiments.run resnet_degradation --scale=cpu --seeds=0-0"
  got = parsed(
    monkeypatch,
    ["--dry-run", "--report-only", "--no-keep-going", "--only=a,b", "--scale", "paper", "x"],
  )
  assert (got["name"], got["scale"], got["only"]) == ("x", "paper", ["a", "b"])
  assert got["dry_run"] and got["report_only"] and not got["keep_going"]
  got = parsed(monkeypatch, ["x", "--dry_run", "--report_only", "--nokeep_going", "--note=n"])
  assert got["dry_run"] and got["report_only"] and not got["keep_going"] and got["note"] == "n"
  assert not parsed(monkeypatch, ["x"])["dry_run"]  # nothing left over from the call before


def test_config_overrides_and_set_are_one_list_in_command_line_order(monkeypatch, tmp_path):
  argv = [
    "--set",
    "optimizer.lr=0.5",
    "x",
    "--config.num_steps=3",
    "--config.model.widths",
    "(4, 8)",
    "--set=optimizer.lr=0.25",
    "--config.data.augment.flip",  # a boolean field alone: true, as absl reads --config.FLAG
  ]
  got = parsed(monkeypatch, argv)
  assert got["sets"] == [
    "optimizer.lr=0.5",
    "num_steps=3",
    "model.widths=(4, 8)",
    "optimizer.lr=0.25",
    "data.augment.flip=true",
  ]
  flagfile = tmp_path / "queue.flags"
  flagfile.write_text("--scale=cpu\n--config.num_steps=5\n")
  got = parsed(monkeypatch, ["x", f"--flagfile={flagfile}"])
  assert (got["scale"], got["sets"]) == ("cpu", ["num_steps=5"])


def test_config_override_and_set_give_the_same_recipe(monkeypatch):
  """--config.KEY=VALUE and --set KEY=VALUE are one override: the same configs and hashes; the
  report's command spells it --config.KEY=VALUE."""
  a = parsed(monkeypatch, ["resnet_degradation", "--config.num_steps=3"])["sets"]
  b = parsed(monkeypatch, ["resnet_degradation", "--set", "num_steps=3"])["sets"]
  assert a == b == ["num_steps=3"]
  ctx = run.prepare("resnet_degradation", "smoke", None, configs.parse_sets(a), None, "", "", None)
  base = run.prepare("resnet_degradation", "smoke", None, [], None, "", "", None)
  assert [j.config.num_steps for j in ctx.jobs] == [3] * len(ctx.jobs)
  assert {j.hash for j in ctx.jobs}.isdisjoint(j.hash for j in base.jobs)
  assert (
    ctx.command == "python -m experiments.run resnet_degradation --scale=smoke --config.num_steps=3"
  )


def test_help_documents_the_options(capsys):
  assert run_cli(["--help"]) == 0
  out = capsys.readouterr().out
  for option in (
    "--config.KEY=VALUE",
    "--set KEY=VALUE",
    "--dry_run",
    "--dry-run",
    "--keep_going",
    "--nokeep_going",
    "--no-keep-going",
    "--report_only",
    "--results",
    "tfds:NAME[@DATA_DIR]",
    "seedS.json",
    "ddof=1",
  ):
    assert option in out, option
  from absl import flags

  fv = flags.FlagValues()
  run.define_flags(fv)
  for flag in fv.get_flags_for_module(run.MODULE):
    assert flag.help.strip(), flag.name
    assert f"--{flag.name}:" in out or f"--[no]{flag.name}:" in out, flag.name


def test_dataset_specs_and_validation_rule():
  spec = configs.parse_dataset("tfds:cifar10@/data/tfds")
  assert (spec.kind, spec.arg, spec.data_dir, spec.identity) == (
    "tfds",
    "cifar10",
    "/data/tfds",
    "tfds:cifar10",
  )
  assert configs.parse_dataset("cifar10_folder").arg == "/tmp/cifar10_jpeg"
  assert (
    configs.parse_dataset("imagenet_folder:/a/b/imagenet/").identity == "imagenet_folder:imagenet"
  )
  c = run.base_config()
  configs.apply_dataset(c, spec)
  assert c.data.data_dir == "/data/tfds" and c.data.val_size == configs.VAL_AUTO
  configs.apply_dataset(c, "tfds:imagenet2012")
  assert c.data.streaming.enabled
  facts = configs.DataFacts
  rule = configs.validation_size
  assert (
    rule(facts(50_000, 10, True), "tfds", False) == 5000
  )  # CIFAR-10 in memory: 45k / 5k, final on test
  assert rule(facts(50_000, 10, False), "folder", False) == 5000  # the JPEG training folder
  assert rule(facts(2_000_000, 1000, False), "folder", True) == 5000  # capped
  assert rule(facts(40, 2, False), "folder", False) == 4  # 10%
  assert rule(facts(12, 6, False), "folder", False) == 6  # at least one per class
  assert rule(facts(15, 3, True), "folder", True) == 0  # its own val/ split
  assert rule(facts(0, 0, True), "tfds", True) == 0  # streamed TFDS: train + validation
  with pytest.raises(DatasetError, match="too few"):
    rule(facts(5, 3, False), "folder", False)
  with pytest.raises(ConfigError, match="--dataset"):
    configs.parse_dataset("mnist:xyz")
  # The hash names the recipe, not where the data is or how the machine runs it.
  plan = EXPERIMENTS["resnet_degradation"].plan("cpu")
  a = configs.variant_config(plan, plan.variants[0], "cifar10_folder:/tmp/a/cifar10_jpeg", 0)
  b = configs.variant_config(
    plan, plan.variants[0], "cifar10_folder:/data/cifar10_jpeg", 1, [("kernels", "portable")]
  )
  assert configs.config_hash(a, "cifar10_folder:/tmp/a/cifar10_jpeg") == configs.config_hash(
    b, "cifar10_folder:/x/cifar10_jpeg"
  )
  c = configs.variant_config(plan, plan.variants[0], "cifar10_folder", 0, [("optimizer.lr", "0.2")])
  assert configs.config_hash(a, "cifar10_folder") != configs.config_hash(c, "cifar10_folder")
  assert configs.config_hash(a, "cifar10_folder") != configs.config_hash(a, "folder:/x/other")


# ----------------------------------------------------------------------------- summaries, statistics
def fake_metrics(
  workdir: str,
  steps: int,
  train_err: list[float],
  eval_err: list[float],
  split: str = "test",
  final_split: str | None = None,
) -> None:
  """A metrics.jsonl: train records, intermediate evaluations on `split`, the final one on `final_split`."""
  os.makedirs(workdir, exist_ok=True)
  final_split = final_split or split
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    n = len(train_err)
    for i, e in enumerate(train_err):
      f.write(
        json.dumps(
          {
            "step": (i + 1) * steps // n,
            "split": "train",
            "loss": 1.0,
            "top1": 1 - e / 100,
            "top5": 1.0,
            "lr": 0.1,
          }
        )
        + "\n"
      )
    for i, e in enumerate(eval_err[:-1]):
      f.write(
        json.dumps(
          {
            "step": (i + 1) * steps // len(eval_err),
            "split": split,
            "loss": 1.0,
            "top1": 1 - e / 100,
            "top5": 1.0,
          }
        )
        + "\n"
      )
    f.write(
      json.dumps(
        {
          "step": steps,
          "split": f"{final_split}_final",
          "loss": 1.0,
          "top1": 1 - eval_err[-1] / 100,
          "top5": 1.0,
        }
      )
      + "\n"
    )


def test_summarise_run_keeps_every_split(tmp_path):
  """Validation curve + test final (the TFDS protocol): nothing collapses, the held-out curve is val."""
  fake_metrics(
    str(tmp_path), 40, [90, 70, 50, 40], [80, 60, 50, 45, 30], split="val", final_split="test"
  )
  s = store.summarise_run(store.read_metrics(str(tmp_path)))
  assert s["curves"]["val"] == [
    [8, pytest.approx(80)],
    [16, pytest.approx(60)],
    [24, pytest.approx(50)],
    [32, pytest.approx(45)],
  ]
  assert s["curves"]["test"] == [[40, pytest.approx(30)]]
  assert (
    s["curve_eval"] == s["curves"]["val"]
    and s["heldout_split"] == "val"
    and s["final_split"] == "test"
  )
  assert s["final_eval_error"] == pytest.approx(30) and s["best_eval_accuracy"] == pytest.approx(55)
  assert s["final_train_error"] == pytest.approx(40) and len(s["curve_train"]) == 4


def test_is_finished_for_step_and_epoch_based_runs(tmp_path):
  step_based = run.base_config()
  step_based.num_steps = 40
  epoch_based = run.base_config()  # num_steps -1, num_epochs 10
  assert not store.is_finished(str(tmp_path), step_based)
  fake_metrics(str(tmp_path), 40, [90], [80])
  assert store.is_finished(str(tmp_path), step_based) and store.is_finished(
    str(tmp_path), epoch_based
  )
  step_based.num_steps = 80
  assert not store.is_finished(str(tmp_path), step_based)
  with open(os.path.join(tmp_path, "metrics.jsonl")) as f:
    unfinished = [line for line in f if "_final" not in line]
  with open(os.path.join(tmp_path, "metrics.jsonl"), "w") as f:
    f.writelines(unfinished)
  assert not store.is_finished(str(tmp_path), epoch_based)


def test_statistics_and_claims():
  assert report.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # ddof=1
  assert report.mean_std([5.0]) == (5.0, None)
  assert report.fmt(5.0, None, 1) == "5.00 (n=1)" and report.fmt(2.0, 1.0, 3) == "2.00 ± 1.00"
  rows = lambda a, b, field="final_eval_error": {
    "a": {"per_seed": {field: a}},
    "b": {"per_seed": {field: b}},
  }
  check = Check("a below b", ("a", "final_eval_error"), "<", ("b", "final_eval_error"))
  c = report.evaluate_check(check, rows([10.0, 10.5, 9.5], [20.0, 21.0, 19.0]))
  assert (
    c["verdict"] == "holds"
    and c["holds"] is True
    and c["two_se"] == pytest.approx(2 * np.sqrt(0.25 / 3 + 1 / 3))
  )
  assert (
    report.evaluate_check(check, rows([20.0, 21.0, 22.0], [10.0, 11.0, 12.0]))["verdict"]
    == "does not hold"
  )
  c = report.evaluate_check(
    check, rows([10.0, 12.0, 14.0], [11.0, 13.0, 15.0])
  )  # 1 apart, 2 SE = 3.27
  assert c["verdict"] == "inconclusive" and c["holds"] is None
  c = report.evaluate_check(check, rows([10.0], [10.2]))  # one seed each: the means, no spread
  assert c["verdict"] == "holds" and c["two_se"] is None and c["n_lhs"] == 1
  assert report.evaluate_check(check, rows([], [1.0]))["verdict"] == "not measured"
  plan = EXPERIMENTS["resnet_degradation"].plan(
    "paper"
  )  # comparable: ours - paper on the paper's data
  one = {
    "finished": True,
    "steps": 9,
    "final_split": "test",
    "heldout_split": "val",
    "final_eval_error": 9.0,
    "final_train_error": 1.0,
    "curve_train": [[9, 1.0]],
    "curve_eval": [[9, 9.5]],
    "curves": {"test": [[9, 9.0]]},
  }
  s = report.summarise(
    EXPERIMENTS["resnet_degradation"],
    plan,
    {"resnet20": [one, {**one, "final_eval_error": 10.0}]},
    {},
  )
  assert (
    s["rows"]["resnet20"]["difference"] == pytest.approx(9.5 - 8.75)
    and s["rows"]["plain20"]["difference"] is None
  )
  s = report.summarise(
    EXPERIMENTS["resnet_degradation"], plan, {"resnet20": [one]}, {}, comparable_identity=False
  )
  assert s["rows"]["resnet20"]["difference"] is None
  steps = Check("a sooner", ("a", "steps_to_target"), "<", ("b", "steps_to_target"))
  assert (
    report.evaluate_check(steps, rows([5, 6], [None, 8], "steps_to_target"))["verdict"] == "holds"
  )  # b not always reached, every seed of a sooner than every seed of b
  c = report.evaluate_check(steps, rows([5, 9], [None, 8], "steps_to_target"))
  assert c["verdict"] == "inconclusive" and c["rhs_values"] == ["not reached", 8.0]
  assert (
    report.evaluate_check(steps, rows([None, 9], [5, 8], "steps_to_target"))["verdict"]
    == "does not hold"
  )
  assert (
    report.evaluate_check(steps, rows([None, 5], [None, 8], "steps_to_target"))["verdict"]
    == "inconclusive"
  )  # a pair that never reached on both sides decides nothing
  assert (
    report.evaluate_check(steps, rows([None], [None], "steps_to_target"))["verdict"]
    == "not measured"
  )


def _stored(
  results,
  name,
  scale,
  job,
  seed,
  run_summary,
  params=1234,
  hash_=None,
  date="2026-01-01 00:00 UTC",
  cpu="Test CPU",
) -> None:
  store.write_json(
    store.summary_path(results, name, scale, job.variant.name, seed),
    {
      "format": store.FORMAT,
      "experiment": name,
      "scale": scale,
      "variant": job.variant.name,
      "seed": seed,
      "config_hash": hash_ or job.hash,
      "params": params,
      "run": run_summary,
      "dataset": "embedded",
      "dataset_description": "the embedded sample",
      "machine": {
        "cpu": cpu,
        "cores": 2,
        "platform": "cpu",
        "devices": ["cpu"],
        "device_count": 1,
        "jax": "x",
        "flax": "y",
      },
      "wall_time_s": 60.0,
      "date": date,
      "command": f"python -m experiments.run {name} --scale={scale}",
    },
  )


def test_report_from_stored_summaries(tmp_path):
  """Seeds from two machines are pooled (mean ± std ddof=1), a summary of another config is stale (listed,
  not mixed in), a failure is listed; steps to the baseline's best accuracy on the validation curve (the
  final evaluation on test); the report needs no data and is rebuilt byte for byte."""
  name, results = "bn_speedup", str(tmp_path / "results")
  ctx = run.prepare(name, "smoke", None, [], None, str(tmp_path / "runs"), results, None)
  jobs = {j.variant.name: j for j in ctx.jobs}
  for seed, (b_val, n_val) in enumerate(((70, 60), (72, 75), (68, 50))):
    for v, val in (("baseline", b_val), ("bn", n_val)):
      w = str(tmp_path / f"w{v}{seed}")
      fake_metrics(w, 2, [90, 80], [val, 40], split="val", final_split="test")
      _stored(
        results,
        name,
        "smoke",
        jobs[v],
        seed,
        store.summarise_run(store.read_metrics(w)),
        cpu="CPU A" if seed < 2 else "CPU B",
      )
  _stored(results, name, "smoke", jobs["bn"], 3, {"finished": True}, hash_="0123456789ab")
  store.write_json(
    store.failure_path(results, name, "smoke", "baseline", 7),
    {
      "format": store.FORMAT,
      "variant": "baseline",
      "seed": 7,
      "config_hash": jobs["baseline"].hash,
      "error": "TrainingDivergedError: boom",
      "machine": {"cpu": "CPU B", "cores": 2},
      "date": "2026-01-02",
    },
  )
  summary = run.run_experiment(
    name, "smoke", out=str(tmp_path / "runs"), results=results, report_only=True
  )
  rows = summary["rows"]
  assert rows["baseline"]["n"] == 3 and rows["bn"]["n"] == 3
  assert (
    rows["baseline"]["final_eval_error"] == pytest.approx(40)
    and rows["baseline"]["final_eval_error_std"] == 0
  )
  assert rows["baseline"]["best_eval_accuracy"] == pytest.approx(30) and summary[
    "target_level"
  ] == pytest.approx(30)
  assert rows["bn"]["per_seed"]["steps_to_target"] == [
    1,
    None,
    1,
  ]  # validation error <= 70 at step 1
  assert (
    rows["baseline"]["per_seed"]["steps_to_target"] == [1, None, 1]
    and rows["bn"]["steps_to_target"] is None
  )
  assert rows["baseline"]["curve_eval"] == [[1, pytest.approx(70)]] and rows["baseline"][
    "curve_eval_std"
  ] == [pytest.approx(2)]
  assert rows["baseline"]["curves"]["test"] == [[2, pytest.approx(40)]]
  meta = summary["meta"]
  assert [s["seed"] for s in meta["stale"]] == [3] and [f["seed"] for f in meta["failures"]] == [7]
  assert [m["runs"] for m in meta["machines"]] == [4, 2]
  md = open(os.path.join(results, name, "smoke", "results.md")).read()
  assert "| no BN, lr x1 | 1,234 | 2 | 3 | 80.00 ± 0.00 | 40.00 ± 0.00 |" in md
  assert "## Stale results" in md and "## Failed runs" in md and "TrainingDivergedError: boom" in md
  assert "--seeds=3" in md and "CPU A, 2 cores" in md and "CPU B" in md
  before = {f: open(os.path.join(results, name, "smoke", f), "rb").read() for f in REPORT_FILES}
  run.run_experiment(name, "smoke", out=str(tmp_path / "runs"), results=results, report_only=True)
  assert before == {
    f: open(os.path.join(results, name, "smoke", f), "rb").read() for f in REPORT_FILES
  }
  from PIL import Image

  for f in ("curves.png", "summary.png"):
    assert Image.open(os.path.join(results, name, "smoke", f)).size[0] == 900


def test_keep_going_records_failures_and_runs_the_rest(tmp_path, monkeypatch, capsys):
  """A failing variant is recorded (store + report) and the others run; --no-keep-going stops; exit 1.
  The trainer is replaced by one that writes a finished metrics.jsonl (or fails)."""
  calls = []

  def fake_train(config, workdir):
    calls.append(config.model.name)
    if config.model.name == "plain20":
      raise steps.TrainingDivergedError("loss or parameters became NaN/Inf by step 1")
    fake_metrics(workdir, config.num_steps, [90, 80], [70, 60])
    return train.RunResult(config.num_steps, {})

  monkeypatch.setattr(train, "train_and_evaluate", fake_train)
  args = ["resnet_degradation", f"--out={tmp_path}/runs", f"--results={tmp_path}/results"]
  assert run_cli(args) == 1
  err = capsys.readouterr().err
  assert "1 run(s) failed" in err and "plain8 seed 0: loss or parameters became NaN/Inf" in err
  assert calls == ["plain20", "resnet20"]
  assert os.path.exists(
    store.failure_path(f"{tmp_path}/results", "resnet_degradation", "smoke", "plain8", 0)
  )
  md = open(f"{tmp_path}/results/resnet_degradation/smoke/results.md").read()
  assert "## Failed runs" in md and "not run yet" in md
  calls.clear()
  assert run_cli(args + ["--no-keep-going"]) == 1  # resnet8 is stored: only plain8 is tried again
  assert calls == ["plain20"]
  calls.clear()
  monkeypatch.setattr(
    train,
    "train_and_evaluate",
    lambda c, w: (calls.append(1), fake_metrics(w, 2, [9], [8]), train.RunResult(2, {}))[-1],
  )
  assert run_cli(args) == 0 and calls == [1]
  assert not os.path.exists(
    store.failure_path(f"{tmp_path}/results", "resnet_degradation", "smoke", "plain8", 0)
  )
  assert (
    "## Failed runs" not in open(f"{tmp_path}/results/resnet_degradation/smoke/results.md").read()
  )


# ----------------------------------------------------------------------------- real runs, one per kind of data
def test_smoke_run_store_and_rerun(tmp_path, capsys):
  """Trains both variants (embedded MNIST), stores one summary per run; the rerun trains nothing and
  writes the same report."""
  results, out = str(tmp_path / "results"), str(tmp_path / "runs")
  name = "resnet_degradation"
  run.run_experiment(name, "smoke", out=out, results=results)
  data = check_report(results, name, "smoke", {"plain8": 1, "resnet8": 1})
  s = store.read_json(store.summary_path(results, name, "smoke", "resnet8", 0))
  assert s["machine"]["cores"] == os.cpu_count() and s["wall_time_s"] > 0 and s["params"] == 4934
  assert s["run"]["curves"]["test"] and s["config"]["num_steps"] == 2 and s["val_size"] == 0
  assert data["checks"][0]["verdict"] in ("holds", "does not hold")
  before = {f: open(os.path.join(results, name, "smoke", f), "rb").read() for f in REPORT_FILES}
  capsys.readouterr()
  run.run_experiment(name, "smoke", out=out, results=results)
  assert "[train]" not in capsys.readouterr().out
  assert before == {
    f: open(os.path.join(results, name, "smoke", f), "rb").read() for f in REPORT_FILES
  }


def test_cifar_like_folder_at_cpu_scale(data, tmp_path):
  """A 60-image train-only folder: the validation rule holds out 6 (10%), final numbers on them."""
  results, name = str(tmp_path / "results"), "activation_and_dropout"
  variant, sets = shrink_args(name, "cpu")
  assert (
    run_cli(
      [
        name,
        "--scale=cpu",
        f"--dataset=cifar10_folder:{data['cifar']}",
        f"--only={variant}",
        f"--out={tmp_path}/runs",
        f"--results={results}",
        *sets,
      ]
    )
    == 0
  )
  check_report(results, name, "cpu", {variant: 1})
  s = store.read_json(store.summary_path(results, name, "cpu", variant, 0))
  assert (
    s["val_size"] == 6
    and s["run"]["final_split"] == "val"
    and s["dataset_identity"] == "cifar10_folder:cifar_like"
  )


def test_tfds_dataset_offline_at_paper_scale(data, tmp_path, monkeypatch):
  """tfds:cifar10@DIR (mock data): the 45k/5k protocol by the rule (here one image per class of the mock's
  60), curves on the held-out part, final numbers on test."""
  mock_tfds_cifar10(data["tfds_dir"], monkeypatch)
  results = str(tmp_path / "results")
  variant, sets = shrink_args("resnet_degradation", "paper")
  assert (
    run_cli(
      [
        "resnet_degradation",
        "--scale=paper",
        f"--dataset=tfds:cifar10@{data['tfds_dir']}",
        f"--only={variant}",
        f"--out={tmp_path}/runs",
        f"--results={results}",
        *sets,
        "--set",
        "eval_every_steps=1",
        "--set",
        "model.stage_sizes=(1, 1, 1)",
      ]
    )
    == 0
  )
  data_ = check_report(results, "resnet_degradation", "paper", {variant: 1})
  s = store.read_json(store.summary_path(results, "resnet_degradation", "paper", variant, 0))
  assert s["val_size"] == 10 and s["config"]["data"]["data_dir"] == data["tfds_dir"]
  assert (
    sorted(s["run"]["curves"]) == ["test", "train", "val"] and s["run"]["heldout_split"] == "val"
  )
  row = next(r for r in data_["variants"] if r["name"] == variant)
  assert (
    row["paper"] == 8.75 and row["difference"] is None
  )  # --set changed the recipe: not compared with the paper


def test_imagenet_plan_on_a_streamed_folder(data, tmp_path):
  """vgg_receptive_field at paper scale on an ImageNet folder (JPEGs of odd sizes, streamed): the
  dry run validates all variants; one trains 2 steps (host-side scale jitter, 64 px crops)."""
  results = str(tmp_path / "results")
  variant, sets = shrink_args("vgg_receptive_field", "paper")
  base = [
    "vgg_receptive_field",
    "--scale=paper",
    f"--dataset=imagenet_folder:{data['imagenet']}",
    f"--out={tmp_path}/runs",
    f"--results={results}",
    *sets,
  ]
  assert run_cli(base + ["--dry-run"]) == 0
  assert not os.path.exists(
    os.path.join(results, "vgg_receptive_field")
  )  # a dry run writes nothing
  assert run_cli(base + [f"--only={variant}"]) == 0
  check_report(results, "vgg_receptive_field", "paper", {variant: 1})
  s = store.read_json(store.summary_path(results, "vgg_receptive_field", "paper", variant, 0))
  assert (
    s["config"]["data"]["streaming"]["augment"] == "scale_jitter"
    and s["run"]["final_split"] == "test"
  )


# ----------------------------------------------------------------------------- every plan at every scale (slow)
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_writes_report(name, tmp_path):
  """Every variant of every plan trains at smoke scale."""
  run.run_experiment(name, "smoke", out=str(tmp_path / "runs"), results=str(tmp_path / "results"))
  check_report(
    str(tmp_path / "results"),
    name,
    "smoke",
    {v.name: 1 for v in EXPERIMENTS[name].plan("smoke").variants},
  )


@pytest.mark.slow
@pytest.mark.parametrize("scale", ("cpu", "paper"))
@pytest.mark.parametrize("name", NAMES)
def test_every_plan_runs_on_its_default_dataset(name, scale, data, tmp_path, monkeypatch):
  """Each plan at cpu and paper scale on a tiny stand-in of its default dataset: a dry run of every
  variant, then one variant trained for 2 steps and evaluated, and its report."""
  dataset = dataset_for(name, scale, data)
  if dataset.startswith("tfds:"):
    mock_tfds_cifar10(data["tfds_dir"], monkeypatch)
  variant, sets = shrink_args(name, scale)
  results = str(tmp_path / "results")
  base = [
    name,
    f"--scale={scale}",
    f"--dataset={dataset}",
    f"--out={tmp_path}/runs",
    f"--results={results}",
    *sets,
  ]
  assert run_cli(base + ["--dry-run"]) == 0
  assert run_cli(base + [f"--only={variant}"]) == 0
  check_report(results, name, scale, {variant: 1})


# ----------------------------------------------------------------------------- published results
def published_summaries():
  root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "experiments", "results")
  found = []
  for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    runs = os.path.join(root, name, "runs")
    for scale in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
      summaries, _ = store.load_all(root, name, scale)
      found += summaries
  return found


def test_published_summaries_match_the_current_recipes():
  """A change to a plan, to the config's defaults or to a new option's no-op value would make the
  published per-seed results stale (the report drops them and the runner trains them again): every
  stored summary's hash must be the hash its variant has under the code as it is."""
  stale = []
  for s in published_summaries():
    plan = EXPERIMENTS[s["experiment"]].plan(s["scale"])
    variant = next((v for v in plan.variants if v.name == s["variant"]), None)
    if variant is None:
      stale.append(f"{s['experiment']}/{s['scale']}/{s['variant']}: no such variant any more")
      continue
    sets = [tuple(kv.split("=", 1)) for kv in s.get("sets", [])]
    config = configs.variant_config(plan, variant, s["dataset"], s["seed"], sets)
    digest = configs.config_hash(config, s["dataset"])
    if digest != s["config_hash"]:
      now = configs.flatten(configs.config_dict(config))
      diff = sorted(
        k
        for k in set(now) | set(configs.flatten(s["config"]))
        if now.get(k) != configs.flatten(s["config"]).get(k) and k not in configs.NOT_HASHED
      )
      stale.append(f"{s['experiment']}/{s['scale']}/{s['variant']} seed {s['seed']}: {diff[:6]}")
  assert not stale, "published summaries made stale by the code:\n" + "\n".join(stale)


def test_every_published_report_has_its_summaries_in_the_repository():
  """A report under results/NAME/SCALE/ built from per-seed summaries (results.json lists runs) must
  ship them (results/NAME/runs/SCALE/...): git would otherwise keep a table nobody can rebuild."""
  import subprocess

  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  root = os.path.join(repo, "experiments", "results")
  tracked = subprocess.run(
    ["git", "ls-files", "experiments/results"], cwd=repo, capture_output=True, text=True
  )
  if tracked.returncode != 0:
    pytest.skip("not a git checkout")
  files = set(tracked.stdout.split())
  for name in sorted(os.listdir(root)):
    for scale in ("cpu", "paper"):
      if f"experiments/results/{name}/{scale}/results.md" not in files:
        continue
      runs = [f for f in files if f.startswith(f"experiments/results/{name}/runs/{scale}/")]
      assert any(f.endswith(".json") and "/seed" in f for f in runs), (name, scale)


def test_a_workdir_made_before_a_new_option_continues_while_the_option_is_neutral(tmp_path):
  """A config field added after the workdir was made is no difference at its no-op value
  (configs.NEUTRAL_WHEN); set away from it, or any other field changed, the workdir is refused."""
  before = {"model.name": "resnet20", "optimizer.lr": 0.1}
  neutral = dict(before, **{k: v for k, v in configs.NEUTRAL_WHEN.items()})
  assert run.config_differences(before, neutral) == []
  assert run.config_differences(neutral, before) == []
  assert run.config_differences(before, dict(neutral, init_from="/runs/x")) == ["init_from"]
  assert run.config_differences(before, dict(neutral, **{"optimizer.lr": 0.2})) == ["optimizer.lr"]
  assert run.config_differences(before, dict(before, new_field=1)) == ["new_field"]

  # The runner's record of a workdir follows the same rule.
  workdir = str(tmp_path / "w")
  os.makedirs(workdir)
  with open(os.path.join(workdir, "experiment_config.json"), "w") as f:
    json.dump({"model": {"name": "resnet20"}, "optimizer": {"lr": 0.1}}, f)
  now = ml_collections.ConfigDict(
    {
      "model": {"name": "resnet20"},
      "optimizer": {"lr": 0.1},
      "init_from": "",
      "eval_protocol": "centre",
    }
  )
  run.check_workdir_config(workdir, now)
  now.optimizer.lr = 0.2
  with pytest.raises(ConfigError, match="differs in optimizer.lr"):
    run.check_workdir_config(workdir, now)
