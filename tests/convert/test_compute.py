"""The torchvision compute figures the summary prints are torchvision's own (`Weights.meta["_ops"]`)."""

from __future__ import annotations

from classic_cnns.convert import _TV
from classic_cnns.models import compute
from tests.convert.helpers import import_torchvision


def test_torchvision_figures_are_torchvisions_published_ones():
  tv = import_torchvision()
  ours_to_tv = {ours: tv_name for tv_name, (ours, _) in _TV.items()}
  ours_to_tv["inception_v3"] = "inception_v3"  # the aux layout: the same eval-mode count
  assert set(compute.TORCHVISION_GMACS) == set(ours_to_tv)
  for ours, tv_name in ours_to_tv.items():
    weights = tv.models.get_model_weights(tv_name)
    published = {w.meta["_ops"] for w in weights}
    assert published == {compute.TORCHVISION_GMACS[ours]}, (ours, tv_name, published)
