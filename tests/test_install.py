"""A fresh install from pyproject.toml alone: a new virtual environment, `pip install .` from a copy
of the repository (pip's cache may serve the downloads), and every module of the installed package
imports. Needs a package index: skipped with the reason when none can be reached."""

import os
import shutil
import socket
import subprocess
import sys
import urllib.parse

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.slow


def _index_urls() -> list[str]:
  """The index URLs pip would use here (its configuration and environment), PyPI by default."""
  p = subprocess.run(
    [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60
  )
  urls = []
  for line in p.stdout.splitlines():
    key, _, value = line.partition("=")
    if key.endswith(("index-url", "extra-index-url")):
      urls += value.strip().strip("'\"").split()
  for var in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
    urls += os.environ.get(var, "").split()
  keys = [line.partition("=")[0] for line in p.stdout.splitlines()]
  if not any(key.endswith(".index-url") for key in keys) and "PIP_INDEX_URL" not in os.environ:
    urls.append("https://pypi.org/simple")
  return urls


def _unreachable_index() -> str | None:
  """None when the first network index answers a TCP connection; else why the test cannot run."""
  for url in _index_urls():
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
      continue  # a local index (file://) is always there
    try:
      socket.create_connection(
        (parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)), timeout=5
      ).close()
      return None
    except OSError as e:
      return f"no network to the package index {url} ({e})"
  return None


def _copy_repo(dest: str) -> None:
  """The repository's files as a fresh clone (plus uncommitted ones) has them, without ignored ones
  (virtual environment, build outputs)."""
  p = subprocess.run(
    ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
    cwd=REPO,
    capture_output=True,
    timeout=60,
  )
  if p.returncode != 0:
    shutil.copytree(
      REPO,
      dest,
      ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "__pycache__", ".hypothesis", ".pytest_cache"
      ),
    )
    return
  for rel in p.stdout.decode().split("\0"):
    src = os.path.join(REPO, rel)
    if rel and os.path.isfile(src):
      os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
      shutil.copy2(src, os.path.join(dest, rel))


IMPORT_ALL = """
import importlib, os, pkgutil, sys
import classic_cnns
assert "site-packages" in classic_cnns.__file__, classic_cnns.__file__
names = sorted(m.name for m in pkgutil.walk_packages(classic_cnns.__path__, "classic_cnns."))
for name in names:
  importlib.import_module(name)
from classic_cnns.data import sources
assert len(sources.load_embedded().train) == 10_000  # the package data came along
import classic_cnns.backends.cpu as cpu
assert os.path.isfile(os.path.join(os.path.dirname(cpu.__file__), "onednn_conv.cc"))
print(len(names), "modules")
"""


def test_fresh_venv_installs_from_pyproject_and_imports_every_module(tmp_path):
  why = _unreachable_index()
  if why:
    pytest.skip(why)
  src, venv = tmp_path / "src", tmp_path / "venv"
  _copy_repo(str(src))
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
  python = str(venv / "bin" / "python")
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
  p = subprocess.run(
    [python, "-m", "pip", "install", "--quiet", str(src)],
    capture_output=True,
    text=True,
    timeout=3000,
    env=env,
  )
  assert p.returncode == 0, p.stderr[-3000:]
  p = subprocess.run(
    [python, "-c", IMPORT_ALL],
    cwd=str(tmp_path),
    capture_output=True,
    text=True,
    timeout=600,
    env=env,
  )
  assert p.returncode == 0, p.stderr[-3000:]
  assert "modules" in p.stdout
