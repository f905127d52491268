"""The report of an experiment at a scale, built only from the stored per-run summaries (store.py):
results.md (the table beside the paper's numbers, the claims checked, failures, stale results, the
machines), results.json (every number and curve) and two PNG figures about 900 px wide.

Statistics: over the seeds of a variant, the mean and the sample standard deviation (ddof=1); one
seed shows "n=1" instead of a spread. A claim `lhs op rhs` (spec.Check) compares the means: it
**holds** or **does not hold**, or is **inconclusive** when |mean_lhs - (mean_rhs + tolerance)| is
below two standard errors of that difference, sqrt(s_lhs^2/n_lhs + s_rhs^2/n_rhs) (Welch; with one
side at n=1 its spread stands for both). With n=1 on both sides the verdict is the means' and says
n=1. "Steps to reach" a target is taken at the logging/evaluation resolution; a seed that never
reached it counts as infinitely many steps in a claim.
"""

from __future__ import annotations

import json
import math
import operator
import os
from typing import Any

import numpy as np

from experiments.spec import Check, Experiment, Plan, Target

FIELDS = (
  "final_train_error",
  "final_eval_error",
  "final_eval_top5_error",
  "final_train_loss",
  "final_eval_loss",
  "best_eval_accuracy",
)
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
FIG_WIDTH_IN, FIG_DPI = 9.0, 100  # 900 px: README width


# ----------------------------------------------------------------------------- statistics
def mean_std(values: list[float | None]) -> tuple[float | None, float | None]:
  """Mean and sample std (ddof=1) of the non-None values; std None below two values."""
  vals = [float(v) for v in values if v is not None]
  if not vals:
    return None, None
  return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def mean_curve(curves: list[list]) -> tuple[list[list[float]], list[float | None]]:
  """Mean over seeds at the steps every seed logged, and the sample std there (None for one seed)."""
  curves = [c for c in curves if c]
  if not curves:
    return [], []
  common = set.intersection(*({int(s) for s, _ in c} for c in curves))
  points, stds = [], []
  for s in sorted(common):
    m, sd = mean_std([dict((int(a), b) for a, b in c)[s] for c in curves])
    points.append([s, m])
    stds.append(sd)
  return points, stds


def steps_to(curve: list, below: float) -> int | None:
  """First step at which an error curve is at or below `below`."""
  return next((int(s) for s, e in curve if e <= below + 1e-9), None)


def target_level(target: Target | None, rows: dict[str, dict[str, Any]]) -> float | None:
  """The error (train) or accuracy (eval) level of the target, % ."""
  if target is None:
    return None
  if target.reference:
    return rows.get(target.reference, {}).get("best_eval_accuracy")
  return target.value


def seed_steps(target: Target, level: float | None, run: dict[str, Any]) -> int | None:
  if level is None:
    return None
  if target.kind == "train_error_below":
    return steps_to(run["curve_train"], level)
  return steps_to(run["curve_eval"], 100.0 - level)


# ----------------------------------------------------------------------------- rows and claims
def summarise(
  exp: Experiment,
  plan: Plan,
  runs: dict[str, list[dict[str, Any]]],
  params: dict[str, int | None],
  comparable_identity: bool = True,
) -> dict[str, Any]:
  """Per variant: mean / std / per-seed values of the final numbers, mean curves with their spread,
  the paper's number and the difference; the target and the claims. `runs[variant]` are the
  summaries (store.summarise_run fields, `seed` optional) of its finished seeds."""
  rows: dict[str, dict[str, Any]] = {}
  for v in plan.variants:
    per_seed = [r for r in runs.get(v.name, []) if r.get("finished", True)]
    row: dict[str, Any] = {
      "name": v.name,
      "label": v.title,
      "group": v.group,
      "x": v.x,
      "params": params.get(v.name),
      "paper": v.paper,
      "paper_text": v.paper_text,
      "n": len(per_seed),
      "seeds": [r.get("seed", i) for i, r in enumerate(per_seed)],
    }
    for k in FIELDS:
      vals = [r.get(k) for r in per_seed]
      row[k], row[f"{k}_std"] = mean_std(vals)
      row.setdefault("per_seed", {})[k] = vals
    row["steps"] = max((r["steps"] for r in per_seed), default=None)
    row["final_split"] = next((r["final_split"] for r in per_seed if r.get("final_split")), None)
    row["heldout_split"] = next(
      (r["heldout_split"] for r in per_seed if r.get("heldout_split")), None
    )
    row["curve_train"], row["curve_train_std"] = mean_curve([r["curve_train"] for r in per_seed])
    row["curve_eval"], row["curve_eval_std"] = mean_curve([r["curve_eval"] for r in per_seed])
    splits = sorted({s for r in per_seed for s in r.get("curves", {}) if s != "train"})
    row["curves"] = {
      s: mean_curve([r.get("curves", {}).get(s, []) for r in per_seed])[0] for s in splits
    }
    row["difference"] = (
      row["final_eval_error"] - v.paper
      if plan.comparable
      and comparable_identity
      and v.paper is not None
      and row["final_eval_error"] is not None
      else None
    )
    row["_runs"] = per_seed
    rows[v.name] = row
  target = plan.target or exp.target
  level = target_level(target, rows)
  for row in rows.values():
    steps = [seed_steps(target, level, r) for r in row["_runs"]] if target else []
    row["per_seed"]["steps_to_target"] = steps
    reached = [s for s in steps if s is not None]
    row["steps_to_target_reached"] = len(reached)
    if steps and len(reached) == len(steps):
      row["steps_to_target"], row["steps_to_target_std"] = mean_std(reached)
    else:
      row["steps_to_target"], row["steps_to_target_std"] = None, None
    del row["_runs"]
  checks = [evaluate_check(c, rows) for c in plan.checks]
  return {"rows": rows, "checks": checks, "target_level": level}


def _values(rows: dict[str, dict[str, Any]], ref: tuple[str, str]) -> list[float]:
  row = rows.get(ref[0])
  if row is None:
    return []
  vals = row["per_seed"].get(ref[1], [])
  if ref[1] == "steps_to_target":  # not reached: infinitely many steps
    return [math.inf if v is None else float(v) for v in vals]
  return [float(v) for v in vals if v is not None]


def evaluate_check(check: Check, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
  lhs, rhs = _values(rows, check.lhs), _values(rows, check.rhs)
  out = {
    "claim": check.claim,
    "lhs": list(check.lhs),
    "op": check.op,
    "rhs": list(check.rhs),
    "tolerance": check.tolerance,
    "n_lhs": len(lhs),
    "n_rhs": len(rhs),
    "lhs_value": None,
    "rhs_value": None,
    "lhs_std": None,
    "rhs_std": None,
    "difference": None,
    "two_se": None,
    "holds": None,
    "verdict": "not measured",
  }
  if not lhs or not rhs:
    return out
  inf_l, inf_r = any(math.isinf(x) for x in lhs), any(math.isinf(x) for x in rhs)
  ml = math.inf if inf_l else float(np.mean(lhs))
  mr = math.inf if inf_r else float(np.mean(rhs))
  sl = float(np.std(lhs, ddof=1)) if len(lhs) > 1 and not inf_l else None
  sr = float(np.std(rhs, ddof=1)) if len(rhs) > 1 and not inf_r else None
  out.update(lhs_value=_json_num(ml), rhs_value=_json_num(mr), lhs_std=sl, rhs_std=sr)
  if all(math.isinf(x) for x in lhs + rhs):  # no seed reached the target
    return out
  if inf_l or inf_r:  # some seeds never reached the target: no mean, judge by ordering
    return _ordering_verdict(check, lhs, rhs, out)
  bound = mr + check.tolerance
  holds = bool(_OPS[check.op](ml, bound))
  out["holds"] = holds
  out["verdict"] = "holds" if holds else "does not hold"
  if not (math.isfinite(ml) and math.isfinite(mr)):
    return out
  diff = ml - bound
  out["difference"] = diff
  if sl is not None or sr is not None:
    s_l = sl if sl is not None else sr
    s_r = sr if sr is not None else sl
    two_se = 2.0 * math.sqrt(s_l**2 / len(lhs) + s_r**2 / len(rhs))
    out["two_se"] = two_se
    if abs(diff) < two_se:
      out["holds"], out["verdict"] = None, "inconclusive"
  return out


def _ordering_verdict(
  check: Check, lhs: list[float], rhs: list[float], out: dict[str, Any]
) -> dict[str, Any]:
  """Verdict for censored samples (a seed that never reached the target counts as never): the
  claim holds when every seed of one side is ordered as claimed against every seed of the other,
  fails when every pair is ordered the other way, and is inconclusive otherwise (with 3 seeds a
  side, full separation is a one-sided rank test at p = 0.05)."""
  op = _OPS[check.op]
  pairs = [
    (a, b + check.tolerance) for a in lhs for b in rhs if not (math.isinf(a) and math.isinf(b))
  ]
  out.update(
    lhs_values=[_json_num(x) for x in lhs], rhs_values=[_json_num(x) for x in rhs], ordering=True
  )
  if len(pairs) == len(lhs) * len(rhs) and all(op(a, b) for a, b in pairs):
    out["holds"], out["verdict"] = True, "holds"
  elif not any(op(a, b) or a == b for a, b in pairs):  # pairs is non-empty: some seed reached
    out["holds"], out["verdict"] = False, "does not hold"
  else:
    out["holds"], out["verdict"] = None, "inconclusive"
  return out


def _json_num(x: float) -> float | str:
  return x if math.isfinite(x) else "not reached"


# ----------------------------------------------------------------------------- formatting
def fmt(v: float | None, std: float | None = None, n: int | None = None, digits: int = 2) -> str:
  if v is None:
    return "—"
  s = f"{v:.{digits}f}"
  if std is not None:
    return f"{s} ± {std:.{digits}f}"
  return f"{s} (n=1)" if n == 1 else s


def _fmt_value(v, std, n) -> str:
  if isinstance(v, str):
    return v
  return fmt(v, std, n)


def _steps_cell(r: dict[str, Any]) -> str:
  steps = r["per_seed"].get("steps_to_target", [])
  if not steps:
    return "—"
  if r["steps_to_target"] is None:
    missed = len(steps) - r["steps_to_target_reached"]
    reached = ", ".join(str(s) for s in steps if s is not None)
    return (f"{reached}; " if reached else "") + f"not reached in {missed} of {len(steps)} seeds"
  return fmt(r["steps_to_target"], r["steps_to_target_std"], r["n"], digits=0)


# ----------------------------------------------------------------------------- the report
def write_report(
  exp: Experiment,
  scale: str,
  plan: Plan,
  summary: dict[str, Any],
  meta: dict[str, Any],
  outdir: str,
) -> list[str]:
  """results.json, the figures and results.md in `outdir` (a pure function of its inputs: rebuilding
  from the same summaries writes the same files); returns the file names."""
  os.makedirs(outdir, exist_ok=True)
  figures = make_figures(exp, scale, plan, summary, meta, outdir)
  rows = summary["rows"]
  target = plan.target or exp.target
  with open(os.path.join(outdir, "results.json"), "w") as f:
    json.dump(
      {
        "experiment": exp.name,
        "title": exp.title,
        "source": exp.source,
        "figure": exp.figure,
        "scale": scale,
        "note": plan.note,
        "target": target.label if target else None,
        "target_level": summary["target_level"],
        "checks": summary["checks"],
        "variants": list(rows.values()),
        "figures": figures,
        **meta,
      },
      f,
      indent=1,
      sort_keys=True,
    )
    f.write("\n")
  split = next((r["final_split"] for r in rows.values() if r["final_split"]), "eval")
  datasets = "; ".join(meta["datasets"]) or meta["default_dataset"]
  lines = [
    f"# {exp.name}: {exp.title}",
    "",
    f"Paper: {exp.source}. Scale: **{scale}**. Data: {datasets}.",
    "",
    f"What the paper shows: {exp.compare}",
    "",
    f"Reductions at this scale: {plan.note}",
    "",
  ]
  head = [
    "variant",
    "params",
    "steps",
    "seeds",
    "train error %",
    f"{split} error %",
    "paper %",
    "ours - paper",
  ]
  if target is not None:
    head.append(f"steps to {target.label or 'target'}")
  lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for r in rows.values():
    paper = fmt(r["paper"]) if r["paper"] is not None else ""
    if r["paper_text"]:
      paper = f"{paper} ({r['paper_text']})" if paper else r["paper_text"]
    if not r["n"]:
      cells = [
        r["label"],
        f"{r['params']:,}" if r["params"] else "—",
        "—",
        "0",
        "not run yet",
        "—",
        paper or "—",
        "—",
      ]
    else:
      cells = [
        r["label"],
        f"{r['params']:,}" if r["params"] else "—",
        str(r["steps"]),
        str(r["n"]),
        fmt(r["final_train_error"], r["final_train_error_std"], r["n"]),
        fmt(r["final_eval_error"], r["final_eval_error_std"], r["n"]),
        paper or "—",
        fmt(r["difference"]) if r["difference"] is not None else "—",
      ]
    if target is not None:
      cells.append(_steps_cell(r) if r["n"] else "—")
    lines.append("| " + " | ".join(cells) + " |")
  lines += [
    "",
    "Mean ± sample standard deviation (ddof=1) over the seeds; n=1: one seed, no spread measured. "
    "Train error: 1 - top-1 on the augmented training batches in training mode, averaged over the last "
    f"logging window; {split} error: the final evaluation on the {split} split (one pass, evaluation view). "
    "Ours - paper is shown only where our number is the paper's metric on the paper's data (the `paper` "
    "scale on its default dataset); otherwise the paper's numbers are for reference.",
  ]
  if exp.paper_note:
    lines += ["", f"Paper's numbers: {exp.paper_note}"]
  if target is not None:
    level = summary["target_level"]
    what = (
      "training error at or below"
      if target.kind == "train_error_below"
      else f"{rows[next(iter(rows))]['heldout_split'] or 'held-out'} accuracy at or above"
    )
    lines += [
      "",
      f"Target: {target.label} = {fmt(level)}% ({what}"
      f"{', the mean best accuracy of ' + target.reference if target.reference else ''}); steps at the "
      "logging/evaluation resolution, mean over the seeds (each seed's steps where some did not reach it).",
    ]
  if summary["checks"]:
    lines += ["", "## The paper's claims in our run", ""]
    for c in summary["checks"]:
      lines.append(f"- {c['claim']}: **{c['verdict']}** ({_claim_numbers(c)})")
    lines += [
      "",
      "A claim is inconclusive when the difference of the means is below two standard errors of "
      "that difference (seeds' sample spread, Welch); with one seed per side the verdict is the means'. "
      "Where some seeds never reached the target there is no mean: the claim holds only if every "
      "seed of one side is ordered as claimed against every seed of the other (not reached = never), "
      "does not hold if every pair is ordered the other way, and is inconclusive otherwise.",
    ]
  if meta["failures"]:
    lines += ["", "## Failed runs", ""]
    lines += [
      f"- {f['variant']} seed {f['seed']}: {f['error']} ({f['machine']}, {f['date']})"
      for f in meta["failures"]
    ]
  if meta["stale"]:
    lines += [
      "",
      "## Stale results (not used)",
      "",
      "Summaries made with another config than the current plan's (the plan, the code's config schema "
      "or a --set changed since); rerun those variants to replace them:",
      "",
    ]
    lines += [
      f"- {s['variant']} seed {s['seed']}: config {s['config_hash']} (now {s['current'] or 'not in the plan'}), "
      f"{s['date']}"
      for s in meta["stale"]
    ]
  lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figures]
  lines += ["", "## How it was run", "", "```", meta["command"], "```", ""]
  if meta["commands"]:
    lines += [
      "Commands that made the runs: " + "; ".join(f"`{c}`" for c in meta["commands"]) + ".",
      "",
    ]
  for m in meta["machines"]:
    lines.append(
      f"- {m['label']}; jax {m['jax']}, flax {m['flax']}: {m['runs']} run(s), "
      f"{m['wall_time']} wall time in all, {m['dates']}."
    )
  if meta.get("notes"):
    lines += ["", "## Notes", "", meta["notes"].strip()]
  with open(os.path.join(outdir, "results.md"), "w") as f:
    f.write("\n".join(lines) + "\n")
  return ["results.md", "results.json"] + figures


def _claim_numbers(c: dict[str, Any]) -> str:
  def side(ref, value, std, n):
    return f"{ref[0]} {ref[1]} = {_fmt_value(value, std, n)}" + (
      f" (n={n})" if std is not None else ""
    )

  if c.get("ordering"):  # censored: every seed's value, judged by ordering
    seeds = lambda vals: ", ".join(v if isinstance(v, str) else f"{v:g}" for v in vals)
    return (
      f"{c['lhs'][0]} {c['lhs'][1]} per seed = {seeds(c['lhs_values'])} {c['op']} "
      f"{c['rhs'][0]} {c['rhs'][1]} per seed = {seeds(c['rhs_values'])}"
      + (f" + {c['tolerance']}" if c["tolerance"] else "")
      + "; judged by ordering (not every seed reached the target)"
    )
  text = (
    f"{side(c['lhs'], c['lhs_value'], c['lhs_std'], c['n_lhs'])} {c['op']} "
    f"{side(c['rhs'], c['rhs_value'], c['rhs_std'], c['n_rhs'])}"
  )
  if c["tolerance"]:
    text += f" + {c['tolerance']}"
  if c["two_se"] is not None:
    text += f"; difference {c['difference']:.2f}, 2 SE {c['two_se']:.2f}"
  return text


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


# ----------------------------------------------------------------------------- figures
def _title(
  exp: Experiment, scale: str, meta: dict[str, Any], rows: list[dict[str, Any]], what: str
) -> str:
  ns = sorted({r["n"] for r in rows if r["n"]})
  seeds = "no finished runs" if not ns else ("seeds per variant: " + "/".join(map(str, ns)))
  data = meta["dataset_short"] or meta["default_dataset"]
  return (
    f"{exp.name}: {what} (cf. {exp.figure or exp.source})\nours: {data}, {scale} scale, {seeds}"
  )


def make_figures(
  exp: Experiment,
  scale: str,
  plan: Plan,
  summary: dict[str, Any],
  meta: dict[str, Any],
  outdir: str,
) -> list[str]:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  rows = list(summary["rows"].values())
  heldout = next((r["heldout_split"] for r in rows if r["heldout_split"]), "eval")
  final_split = next((r["final_split"] for r in rows if r["final_split"]), heldout)
  # Curves: one panel per group; dashed = training error, solid = held-out error, bands = ±1 std
  # over seeds, a cross = the final evaluation on another split, dotted = the paper's final error.
  groups = list(dict.fromkeys(r["group"] for r in rows))
  ncols = min(len(groups), 3)
  nrows = -(-len(groups) // ncols)
  fig, axes = plt.subplots(
    nrows, ncols, figsize=(FIG_WIDTH_IN, 1.0 + 3.4 * nrows), squeeze=False, sharey=True
  )
  for ax, g in zip(axes.flat, groups):
    for i, r in enumerate(r for r in rows if r["group"] == g):
      color = f"C{i}"
      _band(ax, r["curve_train"], r["curve_train_std"], color, "--", 1.0)
      _band(ax, r["curve_eval"], r["curve_eval_std"], color, "-", 2.0, marker="o", label=r["label"])
      if not r["curve_eval"]:
        ax.plot([], [], "-", color=color, label=r["label"] + ("" if r["n"] else " (not run)"))
      for split, pts in r["curves"].items():
        if split != r["heldout_split"] and pts:
          ax.plot([pts[-1][0]], [pts[-1][1]], "x", color=color, markersize=8, mew=2)
      if r["paper"] is not None:
        ax.axhline(r["paper"], color=color, linestyle=":", linewidth=1.2)
    ax.set_title(g or exp.name, fontsize=9)
    ax.set_xlabel("training steps", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(groups) :]:
    ax.axis("off")
  key = f"error (%): dashed training, solid {heldout}"
  if final_split != heldout:
    key += f", x final {final_split}"
  if any(r["paper"] is not None for r in rows):
    key += ", dotted paper"
  for ax in axes[:, 0]:
    ax.set_ylabel(key, fontsize=7)
  fig.suptitle(_title(exp, scale, meta, rows, "training curves"), fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "curves.png"), dpi=FIG_DPI, metadata={"Software": None})
  plt.close(fig)
  # Summary: final errors per variant (bars), or against variant.x / parameters (one line per group).
  fig, ax = plt.subplots(figsize=(FIG_WIDTH_IN, 4.6))
  nan = lambda v: np.nan if v is None else v
  err = lambda v: 0.0 if v is None else v
  spread = lambda key: [err(r[key]) for r in rows] if any(r[key] for r in rows) else None
  if exp.summary == "bar":
    idx = np.arange(len(rows))
    ax.bar(
      idx - 0.2,
      [nan(r["final_train_error"]) for r in rows],
      0.4,
      yerr=spread("final_train_error_std"),
      capsize=3,
      label="train",
    )
    ax.bar(
      idx + 0.2,
      [nan(r["final_eval_error"]) for r in rows],
      0.4,
      yerr=spread("final_eval_error_std"),
      capsize=3,
      label=final_split,
    )
    if any(r["paper"] is not None for r in rows):
      ax.plot(idx, [nan(r["paper"]) for r in rows], "k*", markersize=10, label="paper")
    ax.set_xticks(idx)
    ax.set_xticklabels([r["label"] for r in rows], rotation=20, ha="right", fontsize=8)
  else:
    all_x = [r["x"] for r in rows if r["x"] is not None]
    for i, g in enumerate(groups):
      sel = [r for r in rows if r["group"] == g]
      xs = [(r["params"] if exp.summary == "params" else r["x"]) for r in sel]
      pts = sorted(((x, r) for x, r in zip(xs, sel) if x is not None), key=lambda p: p[0])
      # A group whose single run stands for every x (no batch statistics): a horizontal line.
      if g in exp.flat_groups and exp.summary == "x" and len(sel) == 1 and all_x:
        r = sel[0]
        if r["final_eval_error"] is not None:
          ax.hlines(
            r["final_eval_error"],
            min(all_x),
            max(all_x),
            colors=f"C{i}",
            label=f"{g} (any x, {final_split})",
          )
          if r["final_eval_error_std"]:
            ax.fill_between(
              [min(all_x), max(all_x)],
              r["final_eval_error"] - r["final_eval_error_std"],
              r["final_eval_error"] + r["final_eval_error_std"],
              color=f"C{i}",
              alpha=0.15,
            )
        if r["paper"] is not None:
          ax.hlines(
            r["paper"], min(all_x), max(all_x), colors=f"C{i}", linestyles=":", label=f"{g} (paper)"
          )
        continue
      if not pts:
        continue
      x = [p[0] for p in pts]
      for key, fmt, alpha, label in (
        ("final_eval_error", "-o", 1.0, final_split),
        ("final_train_error", "--.", 0.7, "train"),
      ):
        # variants not run yet are left out, so their neighbours stay joined
        done = [p for p in pts if p[1][key] is not None]
        ax.errorbar(
          [p[0] for p in done],
          [p[1][key] for p in done],
          yerr=[err(p[1][f"{key}_std"]) for p in done],
          fmt=fmt,
          color=f"C{i}",
          alpha=alpha,
          capsize=3,
          label=f"{g} ({label})",
        )
      if any(p[1]["paper"] is not None for p in pts):
        ax.plot(
          x,
          [nan(p[1]["paper"]) for p in pts],
          ":*",
          color=f"C{i}",
          markersize=9,
          label=f"{g} (paper)",
        )
    ax.set_xlabel("parameters" if exp.summary == "params" else exp.x_label, fontsize=8)
    if exp.log_x or exp.summary == "params":
      ax.set_xscale("log", base=2 if exp.summary != "params" else 10)
  ax.set_ylabel("final error (%), bars ±1 std over seeds", fontsize=8)
  ax.grid(alpha=0.3)
  ax.tick_params(labelsize=7)
  ax.legend(fontsize=7)
  ax.set_title(_title(exp, scale, meta, rows, "final errors"), fontsize=9)
  fig.tight_layout()
  fig.savefig(os.path.join(outdir, "summary.png"), dpi=FIG_DPI, metadata={"Software": None})
  plt.close(fig)
  return ["curves.png", "summary.png"]


def _band(ax, points, stds, color, style, width, marker=None, label=None) -> None:
  if not points:
    return
  s = np.array([p[0] for p in points], float)
  m = np.array([p[1] for p in points], float)
  ax.plot(
    s,
    m,
    style,
    color=color,
    linewidth=width,
    marker=marker,
    markersize=3 if marker else None,
    label=label,
    alpha=1.0 if style == "-" else 0.8,
  )
  if stds and all(v is not None for v in stds):
    sd = np.array(stds, float)
    ax.fill_between(s, m - sd, m + sd, color=color, alpha=0.15, linewidth=0)
