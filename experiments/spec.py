"""The data structures of an experiment: variants, the paper's numbers, what to compare.

An `Experiment` is a name, the paper it reproduces, and `plan(scale)`: a `Plan` with the config
overrides shared by every variant at that scale, the variants (each a dict of dotted config keys
-> values applied on top of `classic_cnns.config.base_config()`), and a note saying what the
scale reduces. `checks` state the paper's qualitative claims as comparisons of our numbers, so
results.md says whether each claim holds in our run (never tuned: a claim that fails is printed
as failing, with the numbers).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

SCALES = ("smoke", "cpu", "paper")


@dataclasses.dataclass
class Variant:
  name: str  # workdir name, [a-z0-9_]
  overrides: dict[str, Any]  # dotted config keys -> values ("model.norm": "group")
  label: str = ""  # legend / table label (default: name)
  group: str = ""  # curve-figure panel (e.g. "plain" / "residual") and summary-figure series
  x: float | None = None  # position in the summary figure (batch per device, reduction, ...)
  paper: float | None = None  # the paper's error (%) for this variant, same metric as ours
  paper_text: str = ""  # the paper's number as text (other dataset/metric, or a qualitative claim)

  @property
  def title(self) -> str:
    return self.label or self.name


@dataclasses.dataclass
class Plan:
  base: dict[str, Any]  # overrides shared by every variant at this scale
  variants: list[Variant]
  note: str  # what this scale reduces w.r.t. the paper's recipe
  comparable: bool = (
    False  # our error is the paper's metric on the paper's data (then a difference is shown)
  )
  checks: Sequence["Check"] = ()
  target: "Target | None" = None  # overrides the experiment's target at this scale


@dataclasses.dataclass
class Target:
  """'Steps to reach' a level: train error below `value` (%), or eval accuracy above it; with
  `reference` set, the level is that variant's best eval accuracy (BN paper: steps to reach the
  baseline Inception's maximum accuracy)."""

  kind: str  # "train_error_below" | "eval_accuracy_above"
  value: float | None = None
  reference: str | None = None
  label: str = ""


@dataclasses.dataclass
class Check:
  """A claim of the paper as a comparison of two of our numbers: `lhs op rhs`, each
  (variant, field) with field in final_train_error | final_eval_error | steps_to_target."""

  claim: str
  lhs: tuple[str, str]
  op: str  # "<", "<=", ">", ">="
  rhs: tuple[str, str]
  tolerance: float = 0.0  # added to rhs before comparing ("at or below, within ...")


@dataclasses.dataclass
class Experiment:
  name: str
  title: str
  source: str  # paper, table / figure
  compare: str  # what the paper shows and what to look at
  plan: Callable[[str], Plan]
  datasets: dict[str, str]  # scale -> default --dataset
  curves: str = "error"  # curve figure: "error" (train dashed, eval solid, per group panel)
  summary: str = (
    "bar"  # summary figure: "bar" (final errors per variant) | "x" (error vs variant.x) | "params"
  )
  x_label: str = ""
  log_x: bool = False
  target: Target | None = None
  flat_groups: Sequence[
    str
  ] = ()  # summary-figure series independent of x (drawn as horizontal lines)
  paper_note: str = ""  # where the paper's numbers come from, and why they are / are not comparable
  figure: str = ""  # the paper's figure / table our figures mirror (figure titles), e.g. "He et al. 2016, Fig. 6"
