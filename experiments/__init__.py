"""Paper ablations as named experiments: `python -m experiments.run NAME --scale=smoke|cpu|paper`.

`experiments/definitions.py` holds the experiments (config variants + the papers' numbers + what
to compare); `experiments/run.py` trains the variants (each in its own workdir, skipping finished
ones and resuming unfinished ones) and writes results.md, results.json and the PNG figures.
"""
