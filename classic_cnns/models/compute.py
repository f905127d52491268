"""Published compute figures beside which `classic_cnns.summary` prints our traced multiply-adds.

Both tables count multiply-adds per image at the model's registered input size (what the ResNet
paper calls "FLOPs" and torchvision's weight tables call "GFLOPS").

PAPER_GMACS: the number as the paper states it, with where; a model the paper does not give a figure
for, or a layout that is not the paper's (the torchvision "v1.5" ResNets), has none.
TORCHVISION_GMACS: torchvision's published figure (`Weights.meta["_ops"]`) for our model that equals
its architecture, keyed by our name (the torchvision name in the comment where it differs).

The registry's `paper_gmacs` is different again: the exact count of the registered layout, computed
independently, that the summary's traced count is checked against.
"""

from __future__ import annotations

PAPER_GMACS: dict[str, tuple[float, str]] = {
  "resnet18": (1.8, "He et al. 2016, Table 1"),
  "resnet34": (3.6, "He et al. 2016, Table 1"),
  "resnet50": (3.8, "He et al. 2016, Table 1"),
  "resnet101": (7.6, "He et al. 2016, Table 1"),
  "resnet152": (11.3, "He et al. 2016, Table 1"),
  "se_resnet50": (3.87, "Hu et al. 2018, Table 2"),
  "cbam_resnet50": (3.864, "Woo et al. 2018, Table 4"),
  "googlenet": (1.5, "Szegedy et al. 2015, Sec. 5"),
  "inception_v3": (5.0, "Szegedy et al. 2016, Sec. 1 (\"5 billion multiply-adds\")"),
}

TORCHVISION_GMACS: dict[str, float] = {
  "alexnet": 0.714,
  "vgg11": 7.609,
  "vgg11_bn": 7.609,
  "vgg13": 11.308,
  "vgg13_bn": 11.308,
  "vgg16": 15.47,
  "vgg16_bn": 15.47,
  "vgg19": 19.632,
  "vgg19_bn": 19.632,
  "resnet18": 1.814,
  "resnet34": 3.664,
  "resnet50_v1_5": 4.089,  # torchvision resnet50
  "resnet101_v1_5": 7.801,  # torchvision resnet101
  "resnet152_v1_5": 11.514,  # torchvision resnet152
  "densenet121": 2.834,
  "densenet161": 7.728,
  "densenet169": 3.36,
  "densenet201": 4.291,
  "googlenet_bn": 1.498,  # torchvision googlenet
  "inception_v3": 5.713,  # with its aux head, which runs in training only
  "inception_v3_noaux": 5.713,
}
