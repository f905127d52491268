"""Pretrained weights in and out: torchvision / timm state dicts <-> our Flax variables.

    python -m classic_cnns.convert --from=torchvision --model=resnet50 --weights=r50.pth --workdir=DIR
    python -m classic_cnns.convert --to=torchvision --workdir=DIR --out=r50.safetensors

Python API:

    variables = from_torch_state_dict("resnet50", state_dict, source="torchvision")
    name = target_model("torchvision", "resnet50", state_dict)      # -> "resnet50_v1_5"
    state_dict = to_torch_state_dict("resnet50_v1_5", variables)    # numpy arrays

`--model` names the source's architecture; `SUPPORTED` maps it to our registered model. torchvision's
and timm's ResNet-50/101/152 put the bottleneck stride in the 3x3 conv ("v1.5"), so they map onto
resnet50_v1_5 etc., not onto the paper-layout resnet50 (He et al. 2016, Table 1). GoogLeNet and
Inception-v3 map onto the variant with auxiliary heads when the state dict has them (aux1/aux2,
AuxLogits), else onto the one without. Layout notes in `layout.py`; presets and commands in
docs/pretrained.md.

torchvision's googlenet / inception_v3 weights are used with `transform_input=True`: the model
re-normalises ImageNet-normalised input to (x - 0.5) / 0.5 before its first conv. Our nets take that
input directly, so those weights are evaluated with the `torchvision_inception` preset (mean = std =
0.5, `config.data.eval_preset`), which is exactly what transform_input computes.

Every mismatch is a `ConvertError` (a ConfigError: one line, exit status 2 from the command line):
an unknown model, a weight our model lacks, a missing weight, a shape mismatch -- each naming the key.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from classic_cnns.convert import layout
from classic_cnns.errors import ConfigError

SOURCES = ("torchvision", "timm")

# source model name -> (our model, our model with aux heads or None)
_TV = {
  "alexnet": ("alexnet", None),
  **{f"vgg{d}{bn}": (f"vgg{d}{bn}", None) for d in (11, 13, 16, 19) for bn in ("", "_bn")},
  "resnet18": ("resnet18", None),
  "resnet34": ("resnet34", None),
  **{f"resnet{d}": (f"resnet{d}_v1_5", None) for d in (50, 101, 152)},
  **{f"densenet{d}": (f"densenet{d}", None) for d in (121, 161, 169, 201)},
  "googlenet": ("googlenet_bn", "googlenet_bn_aux"),
  "inception_v3": ("inception_v3_noaux", "inception_v3"),
}
# timm's architectures with the same layers and module names as torchvision's (timm's ResNets are
# the v1.5 layout; its VGGs hold fc1 as a 7x7 conv, its other nets differ: not supported).
_TIMM = {
  k: v for k, v in _TV.items() if k.startswith(("resnet", "densenet")) or k == "inception_v3"
}
SUPPORTED: dict[str, dict[str, tuple[str, str | None]]] = {"torchvision": _TV, "timm": _TIMM}

# The classifier of each family: its torch weight holds the class count in its first axis.
_HEAD = {
  "alexnet": "classifier.6.weight",
  "vgg": "classifier.6.weight",
  "resnet": "fc.weight",
  "densenet": "classifier.weight",
  "googlenet": "fc.weight",
  "inception_v3": "fc.weight",
}
_AUX_KEYS = {"googlenet": "aux1.", "inception_v3": "AuxLogits."}


class ConvertError(ConfigError):
  """Weights that do not fit the model; the message is one line naming the key."""


def _numpy(value: Any) -> np.ndarray:
  if hasattr(value, "detach"):  # a torch tensor
    value = value.detach().cpu().numpy()
  return np.asarray(value)


def _check_source(source: str) -> None:
  if source not in SOURCES:
    raise ConvertError(f"unknown weight source {source!r}; one of {', '.join(SOURCES)}")


def target_model(source: str, model: str, state_dict: Mapping[str, Any] | None = None) -> str:
  """Our registered model for the source's `model`; with aux heads when `state_dict` has them."""
  _check_source(source)
  if model not in SUPPORTED[source]:
    raise ConvertError(
      f"{source} model {model!r} is not supported; supported: {', '.join(sorted(SUPPORTED[source]))}"
    )
  plain, aux = SUPPORTED[source][model]
  if aux and state_dict is not None:
    prefix = _AUX_KEYS[layout.FAMILIES[plain]]
    if any(k.startswith(prefix) for k in state_dict):
      return aux
  return plain


def num_classes_of(model: str, state_dict: Mapping[str, Any]) -> int:
  """The class count of a state dict for our `model` (its classifier's rows)."""
  key = _HEAD[layout.FAMILIES[model]]
  if key not in state_dict:
    raise ConvertError(f"missing weight {key!r} (the classifier of {model})")
  return int(_numpy(state_dict[key]).shape[0])


def abstract_variables(model: str, num_classes: int = 1000) -> dict:
  """Shapes of our `model`'s variables ({"params", "batch_stats"}), unscanned default layout."""
  import jax
  import jax.numpy as jnp
  from classic_cnns.models import create_model, registry

  if model not in layout.FAMILIES:
    raise ConvertError(
      f"model {model!r} has no torchvision layout; convertible: {', '.join(sorted(layout.FAMILIES))}"
    )
  info = registry.model_info(model)
  net = create_model(model, num_classes=num_classes)
  side = info.input_size
  return jax.eval_shape(
    lambda: net.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1, side, side, info.in_channels)),
      train=False,
    )
  )


def _leaves(tree: Mapping, prefix: tuple[str, ...] = ()):
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _leaves(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
  for k in path[:-1]:
    tree = tree.setdefault(k, {})
  tree[path[-1]] = value


def from_torch_state_dict(
  model: str,
  state_dict: Mapping[str, Any],
  source: str = "torchvision",
  num_classes: int | None = None,
) -> dict:
  """A torchvision / timm state dict of the source's `model` -> our variables {"params",
  "batch_stats"} (numpy float32) for `target_model(source, model, state_dict)`. `num_classes`:
  default the state dict's. ConvertError (one line naming the key) for a weight our model lacks,
  a missing weight or a shape mismatch."""
  ours = target_model(source, model, state_dict)
  return import_variables(ours, state_dict, num_classes)


def import_variables(
  ours: str, state_dict: Mapping[str, Any], num_classes: int | None = None
) -> dict:
  """A torch state dict -> the variables of OUR registered model `ours` (see from_torch_state_dict)."""
  num_classes = num_classes or num_classes_of(ours, state_dict)
  abstract = abstract_variables(ours, num_classes)
  used: set[str] = set()
  out: dict = {}
  for path, leaf in _leaves(abstract):
    collection, rest = path[0], path[1:]
    try:
      key = layout.torch_key(ours, collection, rest)
    except KeyError:
      raise ConvertError(
        f"no torch counterpart is known for {'/'.join(path)} of {ours}; it cannot be converted"
      ) from None
    if key not in state_dict:
      raise ConvertError(f"missing weight {key!r} (for {'/'.join(path)} of {ours})")
    torch_array = _numpy(state_dict[key])
    array = layout.to_ours(ours, rest, torch_array)
    if tuple(array.shape) != tuple(leaf.shape):
      wanted = layout.to_torch(ours, rest, np.zeros(leaf.shape, np.float32)).shape
      raise ConvertError(
        f"shape mismatch for {key!r}: {tuple(torch_array.shape)} in the weights, {ours} needs "
        f"{tuple(wanted)} ({'/'.join(path)} {tuple(leaf.shape)})"
      )
    _set(out, path, np.ascontiguousarray(array, dtype=np.float32))
    used.add(key)
  extra = sorted(k for k in state_dict if k not in used and not k.endswith(".num_batches_tracked"))
  if extra:
    more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
    raise ConvertError(f"weight {extra[0]!r} has no counterpart in our {ours}{more}")
  return out


def to_torch_state_dict(model: str, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Our variables of registered `model` (default unscanned layout) -> a torchvision state dict of
  numpy arrays (BatchNorm `num_batches_tracked` = 0)."""
  import jax

  if model not in layout.FAMILIES:
    raise ConvertError(
      f"model {model!r} has no torchvision layout; convertible: {', '.join(sorted(layout.FAMILIES))}"
    )
  out: dict[str, np.ndarray] = {}
  for path, value in _leaves(variables):
    collection, rest = path[0], path[1:]
    if collection not in ("params", "batch_stats"):
      continue
    try:
      key = layout.torch_key(model, collection, rest)
    except KeyError:
      raise ConvertError(
        f"{'/'.join(path)} of {model} has no torchvision counterpart (another layout, e.g. "
        f"scan_blocks=True?)"
      ) from None
    out[key] = np.ascontiguousarray(layout.to_torch(model, rest, np.asarray(jax.device_get(value))))
    if collection == "batch_stats" and rest[-1] == "mean":
      out[key.rsplit(".", 1)[0] + ".num_batches_tracked"] = np.zeros((), np.int64)
  return out


# ----------------------------------------------------------------------------- files
def load_state_dict(path: str) -> dict[str, Any]:
  """A `.safetensors` file (safetensors' numpy API, no torch) or a `.pth` / `.pt` / `.bin` file
  (torch.load(weights_only=True): tensors and plain containers only, no code). A checkpoint that
  wraps its weights in {"state_dict": ...} or {"model": ...} and DataParallel's "module." prefix
  are unwrapped. ConvertError (one line) when it cannot be read."""
  if not os.path.isfile(path):
    raise ConvertError(f"weights file {path} not found")
  try:
    if path.endswith(".safetensors"):
      from safetensors.numpy import load_file

      sd: Any = load_file(path)
    else:
      import torch

      sd = torch.load(path, map_location="cpu", weights_only=True)
  except ImportError as e:
    raise ConvertError(
      f"reading {path} needs the `{e.name}` package: pip install -e '.[convert]'"
    ) from None
  except Exception as e:  # pylint: disable=broad-except  (any unreadable file: one line)
    raise ConvertError(
      f"cannot read weights file {path}: {' '.join(str(e).split())[:200] or type(e).__name__}"
    ) from None
  for wrapper in ("state_dict", "model"):
    if isinstance(sd, Mapping) and isinstance(sd.get(wrapper), Mapping):
      sd = sd[wrapper]
  if not isinstance(sd, Mapping) or not all(isinstance(k, str) for k in sd):
    raise ConvertError(f"weights file {path} does not hold a state dict (name -> tensor)")
  if sd and all(k.startswith("module.") for k in sd):
    sd = {k[len("module.") :]: v for k, v in sd.items()}
  return dict(sd)


def save_state_dict(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """`.safetensors` (numpy API) or `.pth` (torch.save of tensors), written atomically."""
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    if path.endswith(".safetensors"):
      from safetensors.numpy import save_file

      save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, tmp)
    else:
      import torch

      torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, tmp)
  except ImportError as e:
    raise ConvertError(
      f"writing {path} needs the `{e.name}` package: pip install -e '.[convert]'"
    ) from None
  os.replace(tmp, path)
