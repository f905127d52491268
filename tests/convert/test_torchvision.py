"""torchvision -> ours: random torchvision weights (random BatchNorm statistics too) converted give
the same logits (max |diff| <= 1e-4, float32, eval mode), the same aux outputs in training mode, and
ours -> torch -> ours is bit-identical; the exported state dict loads into torchvision strictly and
computes the same function. Inputs are the smallest each net takes, to keep the CPU time low."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from classic_cnns import convert
from tests.convert.helpers import import_torchvision, our_logits, randomize, torch, torch_input

TOL = 1e-4
# (torchvision name, constructor options, input side, our model)
PAIRS = [
  ("alexnet", {}, 64, "alexnet"),
  ("vgg11", {}, 32, "vgg11"),
  ("vgg16", {}, 32, "vgg16"),
  ("vgg16_bn", {}, 32, "vgg16_bn"),
  ("vgg19", {}, 32, "vgg19"),
  ("resnet18", {}, 32, "resnet18"),
  ("resnet34", {}, 32, "resnet34"),
  ("resnet50", {}, 64, "resnet50_v1_5"),
  ("resnet101", {}, 64, "resnet101_v1_5"),
  ("resnet152", {}, 64, "resnet152_v1_5"),
  ("densenet121", {}, 32, "densenet121"),
  ("densenet169", {}, 32, "densenet169"),
  ("googlenet", {"aux_logits": False}, 64, "googlenet_bn"),
  ("googlenet", {"aux_logits": True}, 64, "googlenet_bn_aux"),
  ("inception_v3", {"aux_logits": False}, 75, "inception_v3_noaux"),
  ("inception_v3", {"aux_logits": True}, 75, "inception_v3"),
]
IDS = [ours for *_, ours in PAIRS]


def torchvision_net(name: str, num_classes: int = 10, seed: int = 0, **kw):
  tv = import_torchvision()
  if name in ("googlenet", "inception_v3"):  # the converter's input convention: see test below
    kw = {"init_weights": False, "transform_input": False, **kw}
  return randomize(getattr(tv.models, name)(num_classes=num_classes, **kw), seed)


@pytest.mark.parametrize("name,kw,side,ours", PAIRS, ids=IDS)
def test_logits_equal_and_round_trip(name, kw, side, ours):
  net = torchvision_net(name, **kw)
  state_dict = net.state_dict()
  assert convert.target_model("torchvision", name, state_dict) == ours
  variables = convert.from_torch_state_dict(name, state_dict, source="torchvision")
  x = torch_input(side)
  with torch.no_grad():
    ref = net(torch.from_numpy(x)).numpy()
  got = our_logits(ours, variables, x)
  assert got.shape == ref.shape == (2, 10)
  assert np.abs(got - ref).max() <= TOL
  # ours -> torch: loads strictly into torchvision (no key missing or extra), same function
  exported = convert.to_torch_state_dict(ours, variables)
  net2 = torchvision_net(name, seed=1, **kw)
  net2.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in exported.items()}, strict=True)
  with torch.no_grad():
    assert np.abs(net2(torch.from_numpy(x)).numpy() - ref).max() <= TOL
  # ... and back to ours: bit-identical
  again = convert.import_variables(ours, exported)
  assert jax.tree.structure(again) == jax.tree.structure(variables)
  for a, b in zip(jax.tree.leaves(again), jax.tree.leaves(variables)):
    assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize(
  "name,side,ours,tv_kw,our_kw",
  [
    # Dropout is random on both sides and the streams differ: rates 0 make training mode
    # deterministic (BatchNorm then normalises with the batch statistics on both sides), so the
    # aux heads' outputs compare exactly.
    (
      "googlenet",
      64,
      "googlenet_bn_aux",
      {"dropout": 0.0, "dropout_aux": 0.0},
      {"dropout": 0.0, "aux_dropout": 0.0},
    ),
    # the aux head's 5x5/3 pool and 5x5 conv need the 17x17 Mixed_6e map: a 299 input
    ("inception_v3", 299, "inception_v3", {"dropout": 0.0}, {"dropout": 0.0}),
  ],
  ids=["googlenet_bn_aux", "inception_v3"],
)
def test_train_mode_aux_outputs_equal(name, side, ours, tv_kw, our_kw):
  net = torchvision_net(name, aux_logits=True, **tv_kw).train()
  variables = convert.from_torch_state_dict(name, net.state_dict())
  x = torch_input(side, batch=3)
  with torch.no_grad():
    out = net(torch.from_numpy(x))
  if name == "googlenet":  # GoogLeNetOutputs(logits, aux_logits2, aux_logits1)
    ref_main, ref_aux = out.logits.numpy(), (out.aux_logits1.numpy(), out.aux_logits2.numpy())
  else:  # InceptionOutputs(logits, aux_logits)
    ref_main, ref_aux = out.logits.numpy(), (out.aux_logits.numpy(),)
  main, aux = our_logits(ours, variables, x, train=True, **our_kw)
  # Training-mode BatchNorm divides by the statistics of 3 images in every one of Inception-v3's 94
  # norms; torch and XLA sum them in another float32 order, so the bound is 1e-4 of the outputs'
  # scale (at 299 px they differ by ~2e-4 on logits of size ~2.5; eval mode stays within 1e-4).
  tol = TOL * max(1.0, float(np.abs(ref_main).max()))
  assert np.abs(main - ref_main).max() <= tol
  assert len(aux) == len(ref_aux)
  for a, r in zip(aux, ref_aux):
    assert np.abs(a - r).max() <= TOL * max(1.0, float(np.abs(r).max()))


def test_transform_input_is_the_inception_preset_normalisation():
  """torchvision's googlenet with transform_input=True on ImageNet-normalised pixels equals ours on
  the same pixels normalised with mean = std = 0.5 (the torchvision_inception preset)."""
  from classic_cnns.data import augment

  net = torchvision_net("googlenet", aux_logits=False, transform_input=True)
  variables = convert.from_torch_state_dict("googlenet", net.state_dict())
  pixels = np.random.default_rng(3).random((2, 3, 64, 64)).astype(np.float32)  # in [0, 1]
  imagenet = (pixels - np.array(augment.IMAGENET_MEAN)[:, None, None]) / np.array(
    augment.IMAGENET_STD
  )[:, None, None]
  p = augment.PRESETS["torchvision_inception"]
  ours_in = (pixels - np.array(p.mean)[:, None, None]) / np.array(p.std)[:, None, None]
  with torch.no_grad():
    ref = net(torch.from_numpy(imagenet.astype(np.float32))).numpy()
  got = our_logits("googlenet_bn", variables, ours_in.astype(np.float32))
  assert np.abs(got - ref).max() <= TOL
  # and the plain ImageNet normalisation would NOT match: the preset matters
  wrong = our_logits("googlenet_bn", variables, imagenet.astype(np.float32))
  assert np.abs(wrong - ref).max() > 100 * TOL


def test_num_classes_comes_from_the_weights():
  net = torchvision_net("resnet18", num_classes=7)
  variables = convert.from_torch_state_dict("resnet18", net.state_dict())
  assert variables["params"]["fc"]["kernel"].shape == (512, 7)
