"""Model registry: every architecture is registered by name, timm's `create_model` idea.

A family file (`lenet.py`, `resnet.py`, ...) defines its blocks and one `nn.Module`, then
registers named variants with the paper's numbers:

    @register_model("resnet50", paper_params=25_557_032, input_size=224, source="He et al. 2016, Table 1")
    def resnet50(**kw): return ResNet(stage_sizes=(3, 4, 6, 3), block="bottleneck", **kw)

`create_model(name, **overrides)` builds the module; an override the module does not accept is
rejected with a clear `ValueError` (never silently ignored). `paper_params` is the exact count of
trainable parameters (`params` collection only, not `batch_stats`) that the tests assert.

Model calling convention (used by the trainer):
    model.apply(variables, images, train=bool, rngs={"dropout": key}, mutable=[...])
returns logits `[batch, num_classes]`; a model with auxiliary classifiers returns
`(logits, (aux_logits, ...))` when `train=True` and its aux heads are enabled.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable

import flax.linen as nn

from classic_cnns.models.layers import NormSpec, resolve_norm


@dataclasses.dataclass(frozen=True)
class ModelInfo:
  name: str
  builder: Callable[..., nn.Module]
  paper_params: int | None  # exact trainable parameter count for the default num_classes
  input_size: int  # square input side used for the count / summary
  in_channels: int
  num_classes: int
  source: str  # paper + table/section the architecture and the count come from
  paper_gmacs: float | None = None  # multiply-adds at input_size, from the reference table


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
  name: str,
  *,
  paper_params: int | None,
  input_size: int = 224,
  in_channels: int = 3,
  num_classes: int = 1000,
  source: str = "",
  paper_gmacs: float | None = None,
):
  """Decorator registering `builder(**overrides) -> nn.Module` under `name`."""

  def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if name in _REGISTRY:
      raise ValueError(f"model {name!r} registered twice")
    _REGISTRY[name] = ModelInfo(
      name, builder, paper_params, input_size, in_channels, num_classes, source, paper_gmacs
    )
    return builder

  return wrap


def _ensure_families_imported() -> None:
  # Importing the package registers every family (see models/__init__.py).
  import classic_cnns.models  # noqa: F401


def list_models(pattern: str = "") -> list[str]:
  """Sorted registered names, optionally those containing `pattern`."""
  _ensure_families_imported()
  return sorted(n for n in _REGISTRY if pattern in n)


def unknown_model_message(name: str) -> str:
  close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.5)
  hint = f"; did you mean {', '.join(close)}?" if close else ""
  return f"unknown model {name!r}{hint} (see `python -m classic_cnns.summary --all` for all names)"


def model_info(name: str) -> ModelInfo:
  _ensure_families_imported()
  if name not in _REGISTRY:
    raise ValueError(unknown_model_message(name))
  return _REGISTRY[name]


def create_model(name: str, **overrides: Any) -> nn.Module:
  """Builds the registered model `name`; `overrides` are module fields (e.g. num_classes, norm)."""
  info = model_info(name)
  try:
    return info.builder(**overrides)
  except TypeError as e:  # an unknown keyword, reported in one line
    raise ValueError(
      f"model {name!r} does not accept these options {sorted(overrides)}: {e}"
    ) from None


def model_norm(name: str, norm: str | NormSpec | None = None, **overrides: Any) -> NormSpec | None:
  """The norm `create_model(name, norm=...)` builds, as one `NormSpec`: the model's own default (its
  `norm` field on top of the family's paper `NORM_DEFAULTS`, e.g. Inception-v3's BatchNorm epsilon
  1e-3), or the kind / spec `norm`, then the non-None `overrides` (groups, virtual_batch_size,
  momentum, epsilon). None for a model without a `norm` field."""
  if not has_field(name, "norm"):
    return None
  model = create_model(name)
  defaults = getattr(type(model), "NORM_DEFAULTS", NormSpec())
  return resolve_norm(model.norm if norm is None else norm, defaults, **overrides)


def has_field(name: str, field: str) -> bool:
  """Whether the module `create_model(name)` builds has the field `field` (e.g. `kernels`, `norm`)."""
  return field in {f.name for f in dataclasses.fields(create_model(name))}
