"""classic_cnns.summary: exact totals, compute against the reference GMACs, the --all table, and the
command line's one-line errors. Everything is abstract (eval_shape / lowering), nothing compiles."""

import os
import subprocess
import sys

import pytest

from classic_cnns import summary
from classic_cnns.models import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_summary(*args, timeout=300):
  return subprocess.run(
    [sys.executable, "-m", "classic_cnns.summary", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def test_lenet5_totals_and_layers():
  s = summary.build("lenet5")
  assert (s.params, s.non_trainable) == (61_706, 0)
  assert s.input_shape == (1, 32, 32, 1) and s.output_shape == "1x10"
  # c1 5x5x1x6 on 28x28, c3 5x5x6x16 on 10x10, c5 5x5x16x120, f6 120x84, output 84x10
  assert s.macs == 28 * 28 * 6 * 25 + 10 * 10 * 16 * 150 + 120 * 400 + 120 * 84 + 84 * 10
  rows = {layer.path: layer for layer in s.layers}
  assert rows[("c1",)].output_shape == "1x28x28x6" and rows[("c1",)].params == 156
  assert rows[("c5",)].output_shape == "1x1x1x120" and rows[("c5",)].params == 48_120
  text = summary.format_summary(s)
  assert "trainable params:      61,706" in text and "(match)" in text
  assert "non-trainable:         0 (batch_stats)" in text
  assert "LeCun et al. 1998" in text


def test_resnet20_totals_and_compute():
  s = summary.build("resnet20")
  assert (s.params, s.non_trainable) == (269_722, 1_376)  # BN: 19 norms, mean + var per channel
  assert round(s.macs / 1e9, 3) == 0.041  # the reference 0.041 GMACs at 32x32
  # XLA: 2 FLOPs per multiply-add, padded taps skipped, element-wise ops added: a bit below 2x MACs
  assert 0.8 * 2 * s.macs < s.xla_flops < 2 * s.macs
  text = summary.format_summary(s)
  assert "trainable params:      269,722" in text and "non-trainable:         1,376" in text
  assert "ref GMACs:             0.041" in text and "He et al. 2016" in text
  top = summary.format_summary(s, depth=1).splitlines()
  assert any(line.startswith("layer3_2 ") for line in top) and not any(
    line.startswith("    conv") for line in top
  )


def test_batch_and_input_size_are_per_image():
  a, b = (
    summary.build("resnet20", batch=1, flops=False),
    summary.build("resnet20", batch=4, flops=False),
  )
  assert a.macs == b.macs and b.input_shape == (4, 32, 32, 3)
  big = summary.build("resnet20", input_size=64, flops=False)
  assert (
    big.params == a.params and big.macs == 4 * (a.macs - 640) + 640
  )  # convs x4, the FC (64x10) once
  c100 = summary.build("resnet20", num_classes=100, macs=False, flops=False)
  assert c100.params == 269_722 + 90 * 65 and not c100.comparable
  assert "(for 3 input channels and 10 classes)" in summary.format_summary(c100)


def _check_all_rows(pattern: str) -> None:
  all_rows = summary.all_rows(pattern, macs=False)  # parameter counts only: one abstract init each
  assert [r["name"] for r in all_rows] == registry.list_models(pattern)
  assert all(r["match"] is True for r in all_rows), [r["name"] for r in all_rows if not r["match"]]
  table = summary.format_all(all_rows)
  lines = table.splitlines()
  for r in all_rows:
    line = next(l for l in lines if l.split()[0] == r["name"])
    assert f"{r['params']:,}" in line and " yes " in line
  assert f"{len(all_rows)} models; {len(all_rows)} match" in lines[-1]


def test_all_lists_the_models_with_matching_counts():
  # Two families here; the exact count of every registered model is asserted in tests/models/ already.
  _check_all_rows("lenet")
  _check_all_rows("vgg1")


@pytest.mark.slow  # ~70 s: an abstract init of all registered models
def test_all_lists_every_model_with_matching_counts():
  _check_all_rows("")


def _assert_gmacs_match(name: str) -> None:
  ref = registry.model_info(name).paper_gmacs
  digits = len(repr(ref).split(".")[1]) if "." in repr(ref) else 0
  gmacs = summary.build(name, flops=False).macs / 1e9
  assert round(gmacs, digits) == ref, (name, gmacs, ref)


# One network per family; the slow test below checks every model with a reference GMACs.
@pytest.mark.parametrize(
  "name",
  [
    "alexnet_paper",
    "vgg16",
    "nin_cifar",
    "googlenet",
    "resnet56",
    "resnet50",
    "se_resnet50",
    "densenet121",
  ],
)
def test_gmacs_equal_the_reference_to_its_digits(name):
  _assert_gmacs_match(name)


@pytest.mark.slow
def test_gmacs_of_every_model_with_a_reference():
  names = [n for n in registry.list_models() if registry.model_info(n).paper_gmacs is not None]
  assert len(names) >= 20
  for name in names:
    _assert_gmacs_match(name)


def test_cli_table_and_all(tmp_path):
  p = run_summary("--model=lenet5")
  assert p.returncode == 0, p.stderr[-2000:]
  assert "trainable params:      61,706" in p.stdout and "XLA GFLOPs" in p.stdout
  p = run_summary("--all", "--pattern=resnet2", "--flops")
  assert p.returncode == 0, p.stderr[-2000:]
  names = [l.split()[0] for l in p.stdout.splitlines()[2:-1]]
  assert names == registry.list_models("resnet2") and "XLA GFLOPs/2" in p.stdout


@pytest.mark.parametrize(
  "args,match",
  [
    (["--model=resnet5O"], "error: unknown model 'resnet5O'; did you mean"),
    (["--model=resnet20", "--batch=0"], "error: --batch must be positive"),
    ([], "error: give --model=NAME or --all"),
    (["--all", "--pattern=no_such_net"], "error: no registered model name contains"),
  ],
)
def test_cli_errors_are_one_line_exit_2(args, match):
  p = run_summary(*args)
  assert p.returncode == 2, (p.stdout[-500:], p.stderr[-2000:])
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(match), p.stderr
  if args and "resnet5O" in args[0]:
    assert "resnet50" in lines[0]
  assert p.stdout == ""


def test_imports_no_tensorflow():
  code = (
    "import sys; from classic_cnns import summary; summary.build('lenet5'); "
    "bad = [m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.')]; "
    "assert not bad, bad"
  )
  p = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
  )
  assert p.returncode == 0, p.stderr[-2000:]


# ----------------------------------------------------------------------------- published figures
def test_published_compute_tables_name_registered_models():
  from classic_cnns.models import compute

  for name in (*compute.PAPER_GMACS, *compute.TORCHVISION_GMACS):
    registry.model_info(name)  # raises for an unknown name
  # The paper's figure is for the paper's layout only: none for torchvision's v1.5 ResNets.
  assert not [n for n in compute.PAPER_GMACS if n.endswith("_v1_5")]
  assert compute.PAPER_GMACS["resnet50"][0] == 3.8
  assert compute.TORCHVISION_GMACS["resnet50_v1_5"] == 4.089


@pytest.mark.parametrize("name", ["resnet50_v1_5", "googlenet_bn", "inception_v3", "alexnet"])
def test_torchvision_figure_equals_our_traced_count(name):
  """torchvision's `_ops` is the same count as ours (multiply-adds, padding taps included), rounded
  to 3 decimals: equal to that rounding, so a wrong layout (e.g. the stride in the wrong conv of a
  bottleneck: 3.858 vs 4.089 for ResNet-50) fails."""
  from classic_cnns.models import compute

  r = summary.row(name, True, False)
  assert abs(r["gmacs"] - compute.TORCHVISION_GMACS[name]) <= 0.0015, (name, r["gmacs"])
  assert r["torchvision_gmacs"] == compute.TORCHVISION_GMACS[name]


@pytest.mark.slow
def test_every_torchvision_figure_equals_our_traced_count():
  from classic_cnns.models import compute

  for name, published in compute.TORCHVISION_GMACS.items():
    assert abs(summary.row(name, True, False)["gmacs"] - published) <= 0.0015, name


def test_table_shows_the_paper_and_torchvision_figures_separately():
  rows = [summary.row(n, True, False) for n in ("resnet50", "resnet50_v1_5")]
  text = summary.format_all(rows)
  head = text.splitlines()[0].split()
  assert head[-2:] == ["says", "torchvision"]  # "paper says", "torchvision"
  paper_row, tv_row = text.splitlines()[2], text.splitlines()[3]
  assert paper_row.split()[-2:] == ["3.8", "-"]
  assert tv_row.split()[-2:] == ["-", "4.089"]
