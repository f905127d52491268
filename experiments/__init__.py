"""Paper ablations as named experiments: `python -m experiments.run NAME --scale=smoke|cpu|paper`.

definitions.py  the experiments: per scale, the config variants, the papers' numbers, the claims
spec.py         their data structures (Experiment, Plan, Variant, Check, Target)
configs.py      a variant's config: --dataset spec, the plan's overrides, --set, the validation
                hold-out rule, host-side crops for streamed data, the config hash
run.py          the command line: trains the variants (workdirs under experiments/runs), stores
                one summary per finished run, rebuilds the report
store.py        the per-run summaries, experiments/results/NAME/runs/SCALE/VARIANT/seedS.json
report.py       results.md, results.json and the figures in experiments/results/NAME/SCALE/,
                built from the summaries alone (mean ± std over seeds, the claims checked)
"""
