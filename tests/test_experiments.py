"""The experiment runner (experiments/run.py): every experiment at smoke scale writes its table,
JSON and figures; finished variants are skipped on a rerun; plans validate at every scale; the
report's numbers come from the workdirs' metrics. Machinery only, not accuracy."""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import pytest

from classic_cnns import train
from classic_cnns.config import ConfigError, validate_config
from experiments import run
from experiments.definitions import EXPERIMENTS
from experiments.spec import SCALES

NAMES = sorted(EXPERIMENTS)
REQUIRED = {"resnet_degradation", "bn_speedup", "groupnorm_vs_batchnorm", "nin_gap_vs_fc", "googlenet_aux",
            "se_reduction", "vgg_receptive_field", "activation_and_dropout", "densenet_vs_resnet"}
# Every experiment runs at smoke scale in the default suite: 2 steps of tiny (a 2-block GoogLeNet, ResNet-8s, narrow VGG/NiN, the
# real LeNet-5) models on the embedded MNIST sample, ~10-40 s each on 2 cores (mostly XLA compilation).


def test_all_experiments_listed(capsys):
  assert REQUIRED <= set(EXPERIMENTS)
  run.main(["--list"])
  out = capsys.readouterr().out
  for name in REQUIRED:
    assert name in out


@pytest.mark.parametrize("scale", SCALES)
def test_plans_build_valid_configs(scale):
  """Every variant at every scale is a valid config; smoke/cpu models build (eval_shape only)."""
  for name in NAMES:
    plan = EXPERIMENTS[name].plan(scale)
    assert plan.variants and plan.note
    assert len({v.name for v in plan.variants}) == len(plan.variants)
    names = {v.name for v in plan.variants}
    for check in plan.checks:
      assert check.lhs[0] in names and check.rhs[0] in names, (name, scale, check.claim)
    for v in plan.variants:
      config = run.variant_config(plan, v, "tfds:cifar10", 0)  # tfds: no data is touched here
      validate_config(config, 1)
      assert config.num_steps > 0 or config.num_epochs > 0
      if scale != "paper":
        model = train.build_model(config, 1)
        out = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
                                                jnp.zeros((2, 32, 32, 3)), train=False))
        assert out["params"]


def _check_report(root: str, plan) -> dict:
  for f in ("results.md", "results.json", "curves.png", "summary.png"):
    assert os.path.getsize(os.path.join(root, f)) > 0, f
  with open(os.path.join(root, "results.json")) as f:
    data = json.load(f)
  rows = {r["name"]: r for r in data["variants"]}
  assert set(rows) == {v.name for v in plan.variants}
  for r in rows.values():
    assert r["finished_seeds"] == 1 and r["params"] > 0
    assert 0 <= r["final_eval_error"] <= 100 and 0 <= r["final_train_error"] <= 100
    assert r["curve_train"] and r["curve_eval"]
  md = open(os.path.join(root, "results.md")).read()
  assert "| variant | params |" in md and "python -m experiments.run" in md and "Machine:" in md
  return data


@pytest.mark.parametrize("name", NAMES)
def test_smoke_run_writes_report(name, tmp_path):
  run.run_experiment(name, "smoke", out=str(tmp_path))
  _check_report(os.path.join(tmp_path, name, "smoke"), EXPERIMENTS[name].plan("smoke"))


def _fake_run(workdir: str, steps: int, train_err: list[float], eval_err: list[float], final_split="test"):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    n = len(train_err)
    for i, e in enumerate(train_err):
      f.write(json.dumps({"step": (i + 1) * steps // n, "split": "train", "loss": 1.0, "top1": 1 - e / 100,
                          "top5": 1.0, "lr": 0.1}) + "\n")
    for i, e in enumerate(eval_err[:-1]):
      f.write(json.dumps({"step": (i + 1) * steps // len(eval_err), "split": final_split, "loss": 1.0,
                          "top1": 1 - e / 100, "top5": 1.0}) + "\n")
    f.write(json.dumps({"step": steps, "split": f"{final_split}_final", "loss": 1.0,
                        "top1": 1 - eval_err[-1] / 100, "top5": 1.0}) + "\n")


def test_report_numbers_skip_and_checks(tmp_path, capsys):
  """Finished workdirs are skipped (no training); the table, difference and claims come from them."""
  name = "resnet_degradation"
  plan = EXPERIMENTS[name].plan("smoke")
  root = os.path.join(tmp_path, name, "smoke")
  errs = {"plain8": ([90, 80, 70], [85, 75]), "resnet8": ([90, 70, 60], [80, 65])}
  for v in plan.variants:
    _fake_run(os.path.join(root, v.name), 2, *errs[v.name])
  summary = run.run_experiment(name, "smoke", out=str(tmp_path))
  out = capsys.readouterr().out
  assert out.count("[skip]") == 2 and "[train]" not in out
  rows = summary["rows"]
  assert rows["plain8"]["final_train_error"] == pytest.approx(70)
  assert rows["resnet8"]["final_eval_error"] == pytest.approx(65)
  assert rows["resnet8"]["curve_eval"] == [(1, pytest.approx(80)), (2, pytest.approx(65))]
  assert rows["resnet8"]["difference"] is None  # smoke is never compared with the paper
  claims = {c["claim"]: c["holds"] for c in summary["checks"]}
  assert claims["residual: ResNet-8 training error below plain-8"] is True
  md = open(os.path.join(root, "results.md")).read()
  assert "| plain-8 | 4,934 | 2 | 70.00 | 75.00 |" in md and "**holds**" in md


def test_steps_to_target_and_difference(tmp_path):
  """bn_speedup: steps to the baseline's best accuracy; a comparable plan shows ours - paper."""
  name = "bn_speedup"
  plan = EXPERIMENTS[name].plan("smoke")
  root = os.path.join(tmp_path, name, "smoke")
  _fake_run(os.path.join(root, "baseline"), 2, [90, 80], [70, 60])  # best accuracy 40%
  _fake_run(os.path.join(root, "bn"), 2, [90, 60], [55, 50])  # reaches 40% at step 1
  summary = run.run_experiment(name, "smoke", out=str(tmp_path), report_only=True)
  assert summary["target_level"] == pytest.approx(40)
  assert summary["rows"]["bn"]["steps_to_target"] == 1
  assert summary["rows"]["baseline"]["steps_to_target"] == 2
  assert summary["checks"][0]["holds"] is True
  plan.comparable = True
  plan.variants[0].paper = 50.0
  runs = {v.name: [run.summarise_run(run.read_metrics(os.path.join(root, v.name)))] for v in plan.variants}
  s = run.summarise(EXPERIMENTS[name], plan, runs, {})
  assert s["rows"]["baseline"]["difference"] == pytest.approx(10)


def test_workdir_of_another_config_is_refused(tmp_path):
  exp = EXPERIMENTS["resnet_degradation"]
  plan = exp.plan("smoke")
  a = run.variant_config(plan, plan.variants[0], "embedded", 0)
  b = run.variant_config(plan, plan.variants[0], "embedded", 1)
  run.check_workdir_config(str(tmp_path), a)
  run.check_workdir_config(str(tmp_path), a)  # same config: fine
  with pytest.raises(ConfigError, match="another config"):
    run.check_workdir_config(str(tmp_path), b)


def test_bad_arguments():
  with pytest.raises(ConfigError, match="unknown experiment"):
    run.run_experiment("nope", "smoke")
  with pytest.raises(ConfigError, match="--dataset"):
    run.apply_dataset(run.base_config(), "mnist:xyz")
  with pytest.raises(ConfigError, match="no variant"):
    run.run_experiment("resnet_degradation", "smoke", only=["resnet999"])
