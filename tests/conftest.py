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
