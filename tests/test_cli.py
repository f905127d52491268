"""The command lines share one convention (classic_cnns/cli.py): absl flags, `--config` with
`--config.KEY=VALUE` overrides where a command takes a config, a `--help` that documents every flag
the command defines, and a bad flag that is one line `error: ...` on stderr with exit status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

# Every command line of the project: a module (python -m) or a script (python PATH).
COMMANDS = [
  "classic_cnns.main",
  "classic_cnns.evaluate",
  "classic_cnns.predict",
  "classic_cnns.summary",
  "classic_cnns.benchmark",
  "classic_cnns.benchmark_data",
  "experiments.run",
  "benchmarks/profile_step.py",
  "benchmarks/torch_compare.py",
]

# Runs the command's module as __main__ with --help and reports what --help printed and every flag
# that project code defined (absl's own and the libraries' flags aside). experiments.run parses
# with a FlagValues of its own: its flags are those define_flags gives.
PROBE = r"""
import contextlib, io, json, os, runpy, sys
from absl import flags

target, repo = sys.argv[1], sys.argv[2]
sys.argv = [target, "--help"]
out = io.StringIO()
status = None
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
  try:
    if target.endswith(".py"):
      runpy.run_path(os.path.join(repo, target), run_name="__main__")
    else:
      runpy.run_module(target, run_name="__main__", alter_sys=True)
  except SystemExit as e:
    status = e.code or 0
fv = flags.FLAGS
if target == "experiments.run":
  from experiments import run
  fv = flags.FlagValues()
  run.define_flags(fv)
ours = lambda m: m.startswith(("classic_cnns", "experiments", "benchmarks", repo))
defined = {
  f.name: f.help or "" for m, fl in fv.flags_by_module_dict().items() if ours(m) for f in fl
}
print(json.dumps({"status": status, "help": out.getvalue(), "defined": defined}))
"""


def _command(target: str) -> list[str]:
  if target.endswith(".py"):
    return [sys.executable, os.path.join(REPO, target)]
  return [sys.executable, "-m", target]


@pytest.mark.parametrize("target", COMMANDS)
def test_help_lists_every_flag_the_command_defines(target):
  p = subprocess.run(
    [sys.executable, "-c", PROBE, target, REPO],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert p.returncode == 0, p.stderr[-2000:]
  got = json.loads(p.stdout.strip().splitlines()[-1])
  assert got["status"] == 0, got["help"][-2000:]
  assert got["defined"], "no flags found"
  assert "debug" in got["defined"]  # every command shows tracebacks on request
  for name, text in got["defined"].items():
    assert text.strip(), f"{target}: --{name} has no help string"
    shown = re.search(rf"^\s*--(\[no\])?{re.escape(name)}: \S", got["help"], re.M)
    assert shown, f"{target}: --help does not list --{name}"


@pytest.mark.parametrize("target", COMMANDS)
def test_an_unknown_flag_is_one_line_and_exit_2(target, tmp_path):
  p = subprocess.run(
    _command(target) + ["--no_such_flag=1"],
    cwd=tmp_path,  # nothing may be written here
    env={**os.environ, "PYTHONPATH": REPO},  # experiments/ is not installed
    capture_output=True,
    text=True,
    timeout=300,
  )
  err = p.stderr.strip().splitlines()
  assert p.returncode == 2 and len(err) == 1, p.stderr[-2000:]
  assert err[0].startswith("error: ") and "no_such_flag" in err[0], err
  assert not os.listdir(tmp_path)


@pytest.mark.parametrize("target", ["classic_cnns.main", "experiments.run"])
def test_config_overrides_are_checked_against_the_schema(target, tmp_path):
  """--config.KEY=VALUE: a key the config does not have is refused before anything runs."""
  args = (
    ["--config=configs/lenet5_mnist.py", f"--workdir={tmp_path}/w"]
    if target == "classic_cnns.main"
    else ["resnet_degradation", f"--out={tmp_path}/w", f"--results={tmp_path}/r"]
  )
  p = subprocess.run(
    _command(target) + args + ["--config.optimizer.no_such_key=1"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  err = p.stderr.strip().splitlines()
  assert p.returncode == 2 and len(err) == 1, p.stderr[-2000:]
  assert "unknown config key" in err[0] and "no_such_key" in err[0], err
  assert not os.listdir(tmp_path)
