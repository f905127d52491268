"""The registry and the family layout: every variant is a factory decorated with `register_model`,
families depend only on the shared infrastructure (`layers`, `inits`, `registry`, `compute`), never on each other."""

from __future__ import annotations

import ast
import pathlib
import pkgutil

import pytest

from classic_cnns import models
from classic_cnns.models import list_models, model_info, register_model
from classic_cnns.models.registry import ModelInfo

PACKAGE = models.__name__
INFRASTRUCTURE = {"layers", "inits", "registry", "compute"}
FAMILIES = sorted(
  m.name
  for m in pkgutil.iter_modules(models.__path__)
  if m.name not in INFRASTRUCTURE and not m.name.startswith("_")
)


def _tree(module: str) -> ast.Module:
  path = pathlib.Path(models.__file__).with_name(f"{module}.py")
  return ast.parse(path.read_text(), filename=str(path))


def _is_register_model(node: ast.AST) -> bool:
  return (isinstance(node, ast.Name) and node.id == "register_model") or (
    isinstance(node, ast.Attribute) and node.attr == "register_model"
  )


def test_infrastructure_is_not_a_family():
  assert models._INFRASTRUCTURE == INFRASTRUCTURE
  assert {"lenet", "alexnet", "vgg", "nin", "googlenet", "inception", "resnet", "densenet"} <= set(
    FAMILIES
  )


@pytest.mark.parametrize("family", FAMILIES)
def test_family_registers_only_with_the_decorator(family):
  """`register_model(...)` appears only as the decorator of a factory `def`: no `register_model(...)(f)`
  calls, no aliases, no direct access to the registry's table."""
  tree = _tree(family)
  decorators = {
    id(d.func)
    for node in ast.walk(tree)
    if isinstance(node, ast.FunctionDef)
    for d in node.decorator_list
    if isinstance(d, ast.Call) and _is_register_model(d.func)
  }
  uses = [node for node in ast.walk(tree) if _is_register_model(node)]
  bad = [node.lineno for node in uses if id(node) not in decorators]
  assert not bad, f"{family}.py uses register_model other than as a decorator at lines {bad}"
  assert decorators, f"{family}.py registers no model"
  private = [
    node.lineno
    for node in ast.walk(tree)
    if (isinstance(node, ast.Name) and node.id == "_REGISTRY")
    or (isinstance(node, ast.Attribute) and node.attr == "_REGISTRY")
  ]
  assert not private, f"{family}.py touches the registry table at lines {private}"


def _imported_modules(tree: ast.Module) -> set[str]:
  """Fully qualified names of the modules of this package a file imports."""
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative to the package
        base = ".".join(filter(None, (PACKAGE, base)))
      if base == PACKAGE:  # `from classic_cnns.models import layers`
        out |= {f"{PACKAGE}.{alias.name}" for alias in node.names}
      else:
        out.add(base)
  return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_imports_only_the_infrastructure(family):
  allowed = {f"{PACKAGE}.{m}" for m in INFRASTRUCTURE}
  imported = _imported_modules(_tree(family))
  assert imported <= allowed, f"{family}.py imports {sorted(imported - allowed)}"


@pytest.mark.parametrize("module", sorted(INFRASTRUCTURE))
def test_infrastructure_registers_nothing_and_imports_no_family(module):
  tree = _tree(module)
  assert not any(
    isinstance(d, ast.Call) and _is_register_model(d.func)
    for node in ast.walk(tree)
    if isinstance(node, ast.FunctionDef)
    for d in node.decorator_list
  )
  families = {f"{PACKAGE}.{f}" for f in FAMILIES}
  assert not _imported_modules(tree) & families


def test_every_model_is_built_by_a_factory_of_its_family():
  names = list_models()
  assert len(names) == len(set(names))
  for name in names:
    info = model_info(name)
    assert isinstance(info, ModelInfo) and info.name == name
    family = info.builder.__module__.rsplit(".", 1)[-1]
    assert family in FAMILIES, (name, info.builder.__module__)
    assert info.builder.__name__ == name, (name, info.builder.__name__)


def test_registering_a_name_twice_is_rejected():
  with pytest.raises(ValueError, match="registered twice"):
    register_model("resnet50", paper_params=None)(lambda **kw: None)
