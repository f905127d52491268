import os

import pytest

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
