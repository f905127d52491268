"""timm -> ours: the timm architectures with torchvision's layers and names (resnet*, v1.5 layout;
densenet*; inception_v3) convert with the same table and give the same logits."""

from __future__ import annotations

import numpy as np
import pytest

from classic_cnns import convert
from tests.convert.helpers import import_timm, our_logits, randomize, torch, torch_input

PAIRS = [
  ("resnet18", 32, "resnet18"),
  ("resnet50", 64, "resnet50_v1_5"),
  ("densenet121", 32, "densenet121"),
  ("inception_v3", 75, "inception_v3_noaux"),
]


@pytest.mark.parametrize("name,side,ours", PAIRS, ids=[p[0] for p in PAIRS])
def test_timm_logits_equal(name, side, ours):
  timm = import_timm()
  net = randomize(timm.create_model(name, pretrained=False, num_classes=10))
  state_dict = net.state_dict()
  assert convert.target_model("timm", name, state_dict) == ours
  variables = convert.from_torch_state_dict(name, state_dict, source="timm")
  x = torch_input(side)
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).numpy()
  assert np.abs(our_logits(ours, variables, x) - ref).max() <= 1e-4


def test_timm_models_without_our_layout_are_refused():
  with pytest.raises(convert.ConvertError, match="timm model 'vgg16' is not supported"):
    convert.target_model("timm", "vgg16")
