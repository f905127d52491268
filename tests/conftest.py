import os
import shutil
import tempfile

import pytest

# One persistent XLA compilation cache per test run, shared by the xdist workers and by the
# subprocesses tests start (they inherit the environment): the trainer runs of the reliability,
# multi-host and CLI tests compile the same steps again (a resumed run, a rerun), and compiling is
# most of this suite's time on a 2-core CPU. Created before JAX is imported (JAX reads the variable
# then); a run-private directory, removed at the end, so no test ever sees another run's programs.
# Set JAX_COMPILATION_CACHE_DIR yourself to choose (or keep) the directory.
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _OWN_CACHE = tempfile.mkdtemp(prefix="classic_cnns_test_xla_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# XLA's LLVM backend at optimisation level 0 in tests (CLASSIC_CNNS_TEST_XLA_OPT_LEVEL; "" = XLA's
# default). Compiling, not running, is most of this suite's time on 2 cores: level 0 compiles the
# same optimised HLO with an unoptimised LLVM pass pipeline, about 35% less backend-compile time
# (the full GoogLeNet test: 35 -> 24 s) for slower elementwise kernels (the 470-step LeNet-5 test:
# 13 -> 23 s); the whole suite ~4 min shorter. What the tests check (shapes, counts, gradients,
# thresholds, equality of two runs) holds at any level; bits can differ between levels in the last
# place, so a test comparing bits compiles both sides alike (test_batched_init: as the trainer does).
# Added to the CPU backend's flags, which the CLIs would set (when the user set none); test
# subprocesses inherit XLA_FLAGS. Importing classic_cnns itself never touches the environment.
from classic_cnns.backends import cpu as _cpu_backend  # noqa: E402

if "XLA_FLAGS" not in os.environ:
  os.environ["XLA_FLAGS"] = _cpu_backend.XLA_FLAGS
_OPT_LEVEL = os.environ.get("CLASSIC_CNNS_TEST_XLA_OPT_LEVEL", "0")
if _OPT_LEVEL and "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level={_OPT_LEVEL}".strip()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared", "datasets"))


@pytest.fixture
def shared_datasets():
  """../shared/datasets, or skip (a fresh clone elsewhere has no shared folder)."""
  if not os.path.isdir(SHARED):
    pytest.skip("../shared/datasets is not present")
  return SHARED


def pytest_unconfigure(config):
  if _OWN_CACHE is not None:  # the process that made it (the xdist controller; workers inherit it)
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
