"""Where each of our variables lives in a torchvision / timm state dict, and how its array is laid out.

A variable of ours is a path in the Flax variables (`params/layer1_0/conv1/conv/kernel`); its torch
counterpart is a state-dict key (`layer1.0.conv1.weight`). `torch_key(family, path)` maps one to the
other; `to_ours` / `to_torch` convert the array between the layouts:

  conv kernels      PyTorch OIHW (out, in, kh, kw) <-> Flax HWIO (kh, kw, in, out)
  linear weights    PyTorch (out, in) <-> Flax Dense kernel (in, out): a transpose
  first FC after a  PyTorch flattens an NCHW map (index c*H*W + h*W + w), we flatten NHWC
  flattened map     (h*W*C + w*C + c): the rows of AlexNet's fc1 (256 x 6 x 6), VGG's fc1
                    (512 x 7 x 7) and GoogLeNet's aux fc1 (128 x 4 x 4) are permuted
  BatchNorm         weight/bias -> params scale/bias; running_mean/running_var -> batch_stats
                    mean/var; `num_batches_tracked` has no counterpart (skipped on import, written
                    as 0 on export)

timm's resnet*, densenet* and inception_v3 use torchvision's module names, so one table serves
both sources.
"""

from __future__ import annotations

import re

import numpy as np

# Our registered model -> its family (the naming scheme of its modules).
FAMILIES = {
  "alexnet": "alexnet",
  **{f"vgg{d}{bn}": "vgg" for d in (11, 13, 16, 19) for bn in ("", "_bn")},
  "resnet18": "resnet",
  "resnet34": "resnet",
  **{f"resnet{d}_v1_5": "resnet" for d in (50, 101, 152)},
  **{f"densenet{d}": "densenet" for d in (121, 161, 169, 201)},
  "googlenet_bn": "googlenet",
  "googlenet_bn_aux": "googlenet",
  "inception_v3": "inception_v3",
  "inception_v3_noaux": "inception_v3",
}

# The first FC after a flattened map in torchvision: (our module path, (C, H, W) it flattens).
FLATTENED = {
  "alexnet": {"fc1": (256, 6, 6)},
  "vgg": {"fc1": (512, 7, 7)},
  "googlenet": {"aux1/fc1": (128, 4, 4), "aux2/fc1": (128, 4, 4)},
}

# VGG: the kernel sizes per stage of each registered net (vgg.CONFIGS); torchvision numbers every
# layer of `features` (conv, [bn], relu per conv; one max-pool per stage).
_VGG_STAGES = {"11": "A", "13": "B", "16": "D", "19": "E"}


def _vgg_feature_index(model: str, layer: int, bn: bool) -> int:
  """torchvision's `features.<i>` index of our conv<layer> (1-based); the BN is at i + 1."""
  from classic_cnns.models import vgg

  stages = vgg.CONFIGS[_VGG_STAGES[re.match(r"vgg(\d+)", model).group(1)]]
  i, n = 0, 0
  for stage in stages:
    for _ in stage:
      n += 1
      if n == layer:
        return i
      i += 3 if bn else 2
    i += 1  # max-pool
  raise KeyError(f"conv{layer}")


def _conv_norm(prefix: str, sub: str, bn_name: str = "bn") -> str:
  """A ConvNormAct's `conv` / `norm` submodule -> torchvision's BasicConv2d `conv` / `bn`."""
  return f"{prefix}.conv" if sub == "conv" else f"{prefix}.{bn_name}"


def torch_module(model: str, path: tuple[str, ...]) -> str:
  """The torch module name of our module `path` (without collection and leaf); KeyError if none."""
  family = FAMILIES[model]
  p = "/".join(path)
  if family == "alexnet":
    convs = {"conv1": 0, "conv2": 3, "conv3": 6, "conv4": 8, "conv5": 10}
    fcs = {"fc1": 1, "fc2": 4, "fc3": 6}
    if p in convs:
      return f"features.{convs[p]}"
    if p in fcs:
      return f"classifier.{fcs[p]}"
  elif family == "vgg":
    m = re.fullmatch(r"(conv|norm)(\d+)", p)
    if m:
      i = _vgg_feature_index(model, int(m.group(2)), model.endswith("_bn"))
      return f"features.{i + (m.group(1) == 'norm')}"
    fcs = {"fc1": 0, "fc2": 3, "fc3": 6}
    if p in fcs:
      return f"classifier.{fcs[p]}"
  elif family == "resnet":
    if p == "fc":
      return "fc"
    if path[0] == "stem":
      return "conv1" if path[1] == "conv" else "bn1"
    m = re.fullmatch(r"layer(\d)_(\d+)", path[0])
    if m:
      block = f"layer{m.group(1)}.{m.group(2)}"
      if path[1] == "shortcut":  # shortcut/proj/{conv,norm} -> downsample.{0,1}
        return f"{block}.downsample.{0 if path[3] == 'conv' else 1}"
      k = path[1][-1]  # conv1..conv3 -> conv{k} / bn{k}
      return f"{block}.conv{k}" if path[2] == "conv" else f"{block}.bn{k}"
  elif family == "densenet":
    if p == "stem_conv":
      return "features.conv0"
    if p == "stem_norm":
      return "features.norm0"
    if p == "final_norm":
      return "features.norm5"
    if p == "classifier":
      return "classifier"
    m = re.fullmatch(r"block(\d)_layer(\d+)", path[0])
    if m:
      return f"features.denseblock{m.group(1)}.denselayer{m.group(2)}.{path[1]}"
    if path[0].startswith("transition"):
      return f"features.{path[0]}.{path[1]}"
  elif family == "googlenet":
    stem = {"conv1": "conv1", "conv2_reduce": "conv2", "conv2": "conv3"}
    branches = {
      "b1": "branch1",
      "b2_reduce": "branch2.0",
      "b2_3x3": "branch2.1",
      "b3_reduce": "branch3.0",
      "b3_5x5": "branch3.1",  # torchvision's "5x5" branch is a 3x3 conv (its known deviation)
      "b4_proj": "branch4.1",  # branch4.0 is the max-pool
    }
    if p == "fc":
      return "fc"
    if path[0] in stem:
      return _conv_norm(stem[path[0]], path[1])
    if path[0].startswith("inception"):
      return _conv_norm(f"{path[0]}.{branches[path[1]]}", path[2])
    if path[0] in ("aux1", "aux2"):
      if path[1] == "conv":
        return _conv_norm(f"{path[0]}.conv", path[2])
      return f"{path[0]}.{path[1]}"
  elif family == "inception_v3":
    if p in ("fc", "AuxLogits/fc"):
      return p.replace("/", ".")
    if path[0].startswith("Conv2d_"):
      return _conv_norm(path[0], path[1])
    if path[0] == "AuxLogits":
      return _conv_norm(f"AuxLogits.{path[1]}", path[2])
    if path[0].startswith("Mixed_"):
      branch = "branch_pool" if path[1] == "bpool" else "branch" + path[1][1:]
      return _conv_norm(f"{path[0]}.{branch}", path[2])
  raise KeyError(p)


_LEAVES = {
  ("params", "kernel"): "weight",
  ("params", "bias"): "bias",
  ("params", "scale"): "weight",
  ("batch_stats", "mean"): "running_mean",
  ("batch_stats", "var"): "running_var",
}


def torch_key(model: str, collection: str, path: tuple[str, ...]) -> str:
  """`params`/`batch_stats` + our module path + leaf -> the torch state-dict key."""
  return f"{torch_module(model, path[:-1])}.{_LEAVES[(collection, path[-1])]}"


def to_ours(model: str, path: tuple[str, ...], array: np.ndarray) -> np.ndarray:
  """A torch array -> our layout for the variable at `path` (module path + leaf)."""
  if path[-1] != "kernel":
    return array
  if array.ndim == 4:  # OIHW -> HWIO
    return np.transpose(array, (2, 3, 1, 0))
  flat = FLATTENED.get(FAMILIES[model], {}).get("/".join(path[:-1]))
  if flat is not None and array.ndim == 2 and array.shape[1] == int(np.prod(flat)):
    c, h, w = flat  # rows of ours in NHWC flatten order
    return array.reshape(array.shape[0], c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, -1)
  return array.T  # Linear (out, in) -> Dense (in, out)


def to_torch(model: str, path: tuple[str, ...], array: np.ndarray) -> np.ndarray:
  """Our array at `path` -> the torch layout (the inverse of `to_ours`)."""
  if path[-1] != "kernel":
    return array
  if array.ndim == 4:  # HWIO -> OIHW
    return np.transpose(array, (3, 2, 0, 1))
  flat = FLATTENED.get(FAMILIES[model], {}).get("/".join(path[:-1]))
  if flat is not None and array.shape[0] == int(np.prod(flat)):
    c, h, w = flat
    return array.reshape(h, w, c, -1).transpose(3, 2, 0, 1).reshape(array.shape[1], c * h * w)
  return array.T
