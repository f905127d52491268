"""The model zoo. Every module in this package that is not infrastructure is a model family
(`lenet.py`, `resnet.py`, ...) and registers its named variants on import; importing the
package imports them all, so `create_model("resnet50")` works after `import classic_cnns.models`.
"""

import importlib
import pkgutil

from classic_cnns.models.registry import (
  ModelInfo,
  create_model,
  list_models,
  model_info,
  register_model,
)

_INFRASTRUCTURE = {"registry", "layers", "inits", "compute"}

for _mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
  if _mod.name not in _INFRASTRUCTURE and not _mod.name.startswith("_"):
    importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]
