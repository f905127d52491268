"""Shared pieces of the conversion tests: torchvision / timm imports, random weights, our forward."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the [convert] extra (torch) is not installed")


def import_torchvision():
  """torchvision, or a skip. A CUDA build of torchvision beside a CPU-only torch cannot load its C++
  ops (nms, roi_align: detection only) and its import fails registering them; the classification
  models are pure Python, so the import is retried with those registrations skipped."""
  try:
    import torchvision

    return torchvision
  except ImportError:
    pytest.skip("the [convert] extra (torchvision) is not installed")
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]
  real = torch.library.register_fake

  def tolerant(op, *args, **kwargs):
    if isinstance(op, str) and op.startswith("torchvision::"):
      return lambda fn: fn
    return real(op, *args, **kwargs)

  torch.library.register_fake = tolerant
  try:
    import torchvision
  finally:
    torch.library.register_fake = real
  return torchvision


def import_timm():
  import_torchvision()  # timm imports torchvision's transforms
  return pytest.importorskip("timm", reason="the [convert] extra (timm) is not installed")


def randomize(net, seed: int = 0):
  """Random weights everywhere, and random BatchNorm running statistics (not the 0 / 1 defaults,
  which would hide a mean/var mix-up), moderate so that deep nets stay in range."""
  g = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, t in net.state_dict().items():
      if not t.is_floating_point():
        continue
      if name.endswith("running_var"):
        t.copy_(0.5 + torch.rand(t.shape, generator=g))
      elif name.endswith("running_mean"):
        t.copy_(0.1 * torch.randn(t.shape, generator=g))
      elif name.endswith("bias"):
        t.copy_(0.05 * torch.randn(t.shape, generator=g))
      elif t.ndim == 1:  # BN scale
        t.copy_(0.8 + 0.4 * torch.rand(t.shape, generator=g))
      else:  # conv / linear weights: variance-preserving for the fan-in
        fan_in = int(np.prod(t.shape[1:]))
        t.copy_(torch.randn(t.shape, generator=g) * (1.0 / fan_in) ** 0.5)
  return net.eval()


def torch_input(side: int, batch: int = 2, seed: int = 1) -> np.ndarray:
  return np.random.default_rng(seed).standard_normal((batch, 3, side, side)).astype(np.float32)


def our_logits(name: str, variables: dict, x_nchw: np.ndarray, train: bool = False, **kw):
  """Our model's output on the NCHW input (transposed to NHWC); train=True: (logits, aux) with
  BatchNorm in its training mode and dropout rates set by `kw`."""
  import jax
  import jax.numpy as jnp
  from classic_cnns.models import create_model

  num_classes = variables["params"][_head(name)]["kernel"].shape[-1]
  model = create_model(name, num_classes=num_classes, **kw)
  x = jnp.asarray(x_nchw.transpose(0, 2, 3, 1))
  if not train:
    return np.asarray(model.apply(variables, x, train=False))
  out, _ = model.apply(
    variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}, mutable=["batch_stats"]
  )
  return jax.tree.map(np.asarray, out)


def _head(name: str) -> str:
  if name.startswith(("alexnet", "vgg")):
    return "fc3"
  if name.startswith("densenet"):
    return "classifier"
  return "fc"
