"""The portable path: importing the package changes nothing, the models' gradients are autodiff's
own (no custom VJP, no FFI call), the full train step exports for GPU and TPU, and the package's
import graph has no cycle."""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

import classic_cnns
from classic_cnns import optim
from classic_cnns import build
from classic_cnns import steps
from classic_cnns.config import base_config
from classic_cnns.data import augment
from classic_cnns.models import create_model, model_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The models the portability criteria name, at the input side they are traced with (tracing only).
MODELS = {
  "lenet5": 32,
  "alexnet": 224,
  "vgg16_bn": 32,
  "nin_cifar": 32,
  "googlenet_bn_aux": 224,
  "inception_v3": 299,
  "resnet20": 32,
  "resnet50": 64,
  "densenet121": 64,
  "se_resnet50": 64,
  "cbam_resnet50": 64,
}
# (custom_jvp_call is jax.nn.relu's own rule, public JAX.)
OURS = ("custom_vjp_call", "ffi_call", "pure_callback", "io_callback")


def _modules() -> list[str]:
  names = ["classic_cnns"]
  for mod in pkgutil.walk_packages(classic_cnns.__path__, "classic_cnns."):
    names.append(mod.name)
  return names


def test_importing_every_module_changes_neither_environ_nor_jax_config_nor_imports_torch():
  code = (
    "import importlib, os, sys, jax\n"
    "before_env = dict(os.environ)\n"
    "before_cfg = dict(jax.config.values)\n"
    f"for name in {_modules()!r}:\n"
    "  importlib.import_module(name)\n"
    "changed = sorted(k for k in set(os.environ) | set(before_env) if os.environ.get(k) != before_env.get(k))\n"
    "cfg = sorted(k for k in before_cfg if jax.config.values.get(k) != before_cfg[k])\n"
    "print(changed, cfg, os.environ.get('XLA_FLAGS'))\n"
    "print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))\n"
  )
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  out = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
  )
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip().splitlines()[-2] == "[] [] None", out.stdout
  # PyTorch is an optional extra: only the converter's .pth reading and writing import it, on use.
  assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def _loss_fn(name: str, side: int, batch: int = 2):
  info = model_info(name)
  model = create_model(name)
  x = jnp.zeros((batch, side, side, info.in_channels), jnp.float32)
  variables = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
    )
  )
  labels = jnp.zeros((batch,), jnp.int32)

  def loss(params, rest):
    out, _ = model.apply(
      {"params": params, **rest},
      x,
      train=True,
      rngs={"dropout": jax.random.PRNGKey(2)},
      mutable=["batch_stats"],
    )
    logits, aux = steps.split_aux(out)
    return steps.cross_entropy(logits, labels, 0.0).mean() + sum(
      steps.cross_entropy(a, labels, 0.0).mean() for a in aux
    )

  return loss, variables["params"], {k: v for k, v in variables.items() if k != "params"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradient_is_autodiff_of_plain_ops(name):
  """The jaxprs of the loss and of its gradient through create_model(name) (defaults, train mode)
  hold no custom_vjp / FFI call: every gradient is JAX's own, so it runs on any platform."""
  loss, params, rest = _loss_fn(name, MODELS[name])
  for fn in (loss, jax.grad(loss)):
    text = str(jax.make_jaxpr(fn)(params, rest))
    found = [p for p in OURS if p in text]
    assert not found, f"{name}: {found}"


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradient_exports_for_cuda_and_tpu(name):
  """jax.export lowers the same gradient for CUDA and TPU from this CPU-only machine, with no
  custom-call target of ours."""
  loss, params, rest = _loss_fn(name, MODELS[name])
  exported = jax.export.export(jax.jit(jax.grad(loss)), platforms=("cuda", "tpu"))(params, rest)
  assert exported.platforms == ("cuda", "tpu")
  text = exported.mlir_module()
  targets = set(re.findall(r'call_target_name = "([^"]+)"', text)) | set(
    re.findall(r"custom_call @(\w+)", text)
  )
  assert not {t for t in targets if "ClassicCnns" in t or "onednn" in t.lower()}, targets


def _train_step_args(name: str, side: int, batch: int = 2):
  info = model_info(name)
  config = base_config()
  config.model.name, config.model.num_classes = name, info.num_classes
  config.batch_size = batch
  model = build.build_model(config, 1)
  shape = (side, side, info.in_channels)
  schedule = optim.make_schedule(config, 10, 100)
  params = jax.eval_shape(
    lambda: model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1,) + shape),
      train=False,
    )
  )["params"]
  tx = optim.make_optimizer(config, schedule, params)

  def init():
    v = model.init(
      {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)},
      jnp.zeros((1,) + shape),
      train=False,
    )
    return steps.TrainState.create(
      apply_fn=model.apply,
      params=v["params"],
      tx=tx,
      batch_stats=v.get("batch_stats", {}),
      rng=jax.random.PRNGKey(0),
    )

  state = jax.eval_shape(init)
  prep = augment.Preprocess(mean=(127.5,) * info.in_channels, std=(64.0,) * info.in_channels)
  step = steps.make_train_step(model, config, prep, schedule, jnp.float32)
  batch_arrays = {
    "image": jax.ShapeDtypeStruct((batch,) + shape, jnp.uint8),
    "label": jax.ShapeDtypeStruct((batch,), jnp.int32),
  }
  return step, state, batch_arrays


# One model per family: the full train step (forward, loss, gradient, optimizer update).
EXPORTED = {
  "lenet5": 32,
  "alexnet": 224,
  "vgg11_bn": 32,
  "nin_cifar_bn": 32,
  "googlenet_bn_aux": 224,
  "inception_v3": 299,
  "resnet20": 32,
  "densenet40_k12": 32,
  "cbam_resnet20": 32,
}


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_train_step_exports_for_cuda_and_tpu(name):
  """jax.export lowers the portable train step for CUDA and TPU (from this CPU-only machine) with no
  custom-call target of ours: what a GPU/TPU run compiles."""
  step, state, batch = _train_step_args(name, EXPORTED[name])
  exported = jax.export.export(jax.jit(step), platforms=("cuda", "tpu"))(state, batch)
  assert exported.platforms == ("cuda", "tpu")
  text = exported.mlir_module()
  targets = set(re.findall(r'call_target_name = "([^"]+)"', text)) | set(
    re.findall(r"custom_call @(\w+)", text)
  )
  assert not {t for t in targets if "ClassicCnns" in t or "onednn" in t.lower()}, targets


def _imports(path: str, module: str) -> set[str]:
  """classic_cnns modules imported anywhere in the file (top level or inside functions)."""
  tree = ast.parse(open(path).read())
  package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      found |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
      found.add(base)
      found |= {f"{base}.{a.name}" for a in node.names}
  return {m for m in found if m.startswith("classic_cnns")}


def _import_graph() -> dict[str, set[str]]:
  modules = {}
  root = os.path.dirname(classic_cnns.__file__)
  for name in _modules():
    rel = name.split(".")[1:]
    path = os.path.join(root, *rel, "__init__.py")
    if not os.path.exists(path):
      path = os.path.join(root, *rel) + ".py"
    modules[name] = path
  graph = {}
  for name, path in modules.items():
    # An import of a package's submodule also runs the package's __init__; a parent package does
    # not depend on its children unless its __init__ imports them.
    targets = set()
    for m in _imports(path, name):
      while m and m not in modules:
        m = m.rsplit(".", 1)[0] if "." in m else ""
      if m and m != name and not name.startswith(m + "."):
        targets.add(m)
    graph[name] = targets
  return graph


def test_import_graph_has_no_cycle():
  graph = _import_graph()
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node):
    state[node] = 1
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == 1:
        cycle = stack[stack.index(nxt) :] + [nxt]
        pytest.fail("import cycle: " + " -> ".join(cycle))
      if nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node)


def test_models_never_import_backends_or_above():
  graph = _import_graph()
  for name, targets in graph.items():
    if name.startswith("classic_cnns.models"):
      bad = {t for t in targets if not t.startswith("classic_cnns.models")}
      assert not bad, f"{name} imports {bad}"
