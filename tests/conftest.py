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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(REPO, "..", "shared", "datasets"))


@pytest.fixture
def shared_datasets():
  """../shared/datasets, or skip (a fresh clone elsewhere has no shared folder)."""
  if not os.path.isdir(SHARED):
    pytest.skip("../shared/datasets is not present")
  return SHARED


@pytest.fixture(autouse=True)
def _xla_conv_backend_between_tests():
  """The conv backend is process state (the trainer sets it from config.conv_backend): every test
  starts from the default (XLA) whatever the test before it ran."""
  from classic_cnns.models import layers
  layers.set_conv_backend("xla")
  yield
  layers.set_conv_backend("xla")


def pytest_unconfigure(config):
  if _OWN_CACHE is not None:  # the process that made it (the xdist controller; workers inherit it)
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)
