"""Model summary: per-layer table, parameter counts and compute, beside the paper's numbers.

    python -m classic_cnns.summary --model=resnet50                 # table + totals at 224x224
    python -m classic_cnns.summary --model=resnet20 --input=64 --batch=8 --depth=2
    python -m classic_cnns.summary --all                            # one row per registered model
    python -m classic_cnns.summary --all --pattern=resnet --flops   # some models, + XLA FLOPs

Everything is abstract: `jax.eval_shape` of init (shapes only, no parameter is allocated) and a
trace of the forward pass; nothing is compiled. One model takes 0.1-2 s on a CPU (ResNet-1202
~10 s); `--all` about a minute on 2 cores, `--flops` adds the XLA lowering (~+50%).

Numbers reported (per image, eval mode: auxiliary heads and dropout off):
  params       trainable parameters, the `params` collection (what the papers count), aux heads
               included as in the registry's counts;
  non-train.   `batch_stats` (BatchNorm running means/variances) and any other collection;
  GMACs        multiply-adds of every convolution and matrix product in the traced forward pass
               (conv and FC layers, SE/CBAM MLPs; AlexNet's adaptive-pool einsum, negligible):
               output elements x kernel window x input channels per group, zero-padded taps
               included. This is the papers' and torchvision/fvcore's convention, so it compares
               with the reference GMACs (registry `paper_gmacs`);
  XLA GFLOPs   `jax.jit(apply).trace(...).lower().cost_analysis()["flops"]` (lowered, not
               compiled). XLA counts a multiply-add as 2 FLOPs but skips the kernel taps that fall
               on padding and adds the element-wise work (BN, ReLU, pooling, additions): flops/2 is
               ~3% below the GMACs of 224-input nets and ~9% below on 32x32 CIFAR nets, where the
               border is a larger share of each map.

Imports no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from absl import flags

from classic_cnns import cli
from classic_cnns.models import compute

_MODEL = cli.define_once(flags.DEFINE_string, "model", None, "Registered model name (see --all).")
_INPUT = cli.define_once(
  flags.DEFINE_integer,
  "input",
  None,
  "Square input size (default: the model's registered input_size).",
)
_BATCH = cli.define_once(
  flags.DEFINE_integer, "batch", 1, "Batch size traced (numbers are reported per image)."
)
_CHANNELS = flags.DEFINE_integer(
  "in_channels", None, "Input channels (default: the registered value)."
)
_CLASSES = flags.DEFINE_integer("num_classes", None, "Override the model's num_classes.")
_DEPTH = flags.DEFINE_integer(
  "depth", None, "Show layers down to this nesting depth (default: all)."
)
_ALL = cli.define_once(
  flags.DEFINE_bool, "all", False, "One row per registered model instead of a layer table."
)
_FLOPS = flags.DEFINE_bool(
  "flops", False, "With --all: also lower every model for XLA FLOPs (slower)."
)
_PATTERN = flags.DEFINE_string(
  "pattern", "", "With --all: only the models whose name contains this."
)


@dataclasses.dataclass
class Layer:
  path: tuple[
    str, ...
  ]  # module path from the root, e.g. ("layer1_0", "conv1"); ("(model)",) = root
  kind: str  # module class name
  output_shape: str  # e.g. "1x56x56x64", tuples as "(...)"
  params: int  # trainable parameters of this module and its submodules


@dataclasses.dataclass
class Summary:
  name: str
  input_shape: tuple[int, int, int, int]  # N, H, W, C
  layers: list[Layer]
  params: int  # trainable (`params` collection)
  non_trainable: int  # every other collection (`batch_stats`)
  macs: int | None  # conv + matmul multiply-adds per image, paper convention (module docstring)
  xla_flops: float | None  # XLA cost-analysis FLOPs per image, None when not computed
  output_shape: str
  comparable: bool = True  # False when num_classes / in_channels differ from the registered ones


def _size(tree) -> int:
  import jax

  return sum(int(math.prod(x.shape)) for x in jax.tree.leaves(tree))


def _shape_str(out) -> str:
  import jax

  if hasattr(out, "shape"):
    return "x".join(str(d) for d in out.shape) or "scalar"
  if isinstance(out, (tuple, list)):
    return "(" + ", ".join(_shape_str(o) for o in out) + ")"
  leaves = jax.tree.leaves(out)
  return "(" + ", ".join(_shape_str(o) for o in leaves) + ")" if leaves else "-"


def _subtree(params: dict, path: tuple[str, ...]):
  node = params
  for p in path:
    if not isinstance(node, dict) or p not in node:
      return {}
    node = node[p]
  return node


def _jaxpr_macs(jaxpr) -> int:
  """Multiply-adds of every convolution and matrix product in a jaxpr (sub-jaxprs included):
  output elements x (kernel window x input channels per group), or x the contracted size."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      out, rhs = eqn.outvars[0].aval.shape, eqn.invars[1].aval.shape
      out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
      total += math.prod(out) * (math.prod(rhs) // rhs[out_feature_dim])
    elif name == "dot_general":
      (lhs_contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
    else:
      subs = []
      for v in eqn.params.values():
        for item in v if isinstance(v, (tuple, list)) else (v,):
          inner = getattr(item, "jaxpr", item)  # ClosedJaxpr -> Jaxpr
          if hasattr(inner, "eqns"):
            subs.append(_jaxpr_macs(inner))
      if subs:
        # cond: the costliest branch; scan: every iteration; calls (pjit, custom_jvp, remat): once
        total += (max(subs) if name == "cond" else sum(subs)) * int(eqn.params.get("length", 1))
  return total


def trace(model, input_shape: tuple[int, int, int, int]) -> tuple[dict, list[Layer], str]:
  """Abstract init of `model` on zeros of `input_shape` under `jax.eval_shape`: returns (abstract
  variables, every module called, in call order, output shape). Init runs the modules that
  create parameters, auxiliary heads included."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  calls: list[tuple[tuple[str, ...], str, list]] = []  # pre-order; output filled in on return
  seen: set[tuple[str, ...]] = set()

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    try:
      path = tuple(context.module.path)
    except Exception:  # an unbound helper module applied inside a parent
      path = None
    slot: list = []
    if path is not None and path not in seen:
      seen.add(path)
      calls.append((path, type(context.module).__name__, slot))
    out = next_fun(*args, **kwargs)
    slot.append(_shape_str(out))
    return out

  result: dict[str, Any] = {}

  def init(x):
    with nn.intercept_methods(interceptor):
      out, variables = model.init_with_output(
        {"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)}, x, train=False
      )
    result["out"] = _shape_str(out)
    return variables

  variables = dict(jax.eval_shape(init, jax.ShapeDtypeStruct(input_shape, jnp.float32)))
  params = variables.get("params", {})
  layers = [
    Layer(
      p if p else ("(model)",),
      kind,
      slot[0] if slot else "-",
      _size(_subtree(params, p)) if p else _size(params),
    )
    for p, kind, slot in calls
  ]
  return variables, layers, result.get("out", "-")


def inference_cost(
  model, variables, input_shape: tuple[int, int, int, int], flops: bool = True
) -> tuple[int, float | None]:
  """(MACs, XLA FLOPs or None) of the eval-mode forward pass over the batch.

  The MACs are counted on the traced jaxpr (every conv and matrix product, the papers' and
  torchvision's convention: padded taps included); the FLOPs come from XLA's cost analysis of the
  lowered -- not compiled -- computation, of the model with its portable kernels."""
  import jax
  import jax.numpy as jnp
  import dataclasses
  from classic_cnns.models.layers import PORTABLE

  if "kernels" in {
    f.name for f in dataclasses.fields(model)
  }:  # oneDNN custom calls hide their convs
    model = model.clone(kernels=PORTABLE)
  x = jax.ShapeDtypeStruct(input_shape, jnp.float32)
  traced = jax.jit(lambda v, x: model.apply(v, x, train=False)).trace(variables, x)
  macs = _jaxpr_macs(traced.jaxpr.jaxpr)
  if not flops:
    return macs, None
  cost = traced.lower().cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per computation
    cost = cost[0] if cost else None
  return macs, (float(cost["flops"]) if cost and "flops" in cost else None)


def build(
  name: str,
  input_size: int | None = None,
  batch: int = 1,
  in_channels: int | None = None,
  num_classes: int | None = None,
  macs: bool = True,
  flops: bool = True,
) -> Summary:
  """Summary of the registered model `name` (ValueError for an unknown name). macs=False skips
  the trace of the forward pass (parameter counts only: one abstract init); flops=False skips the
  XLA lowering."""
  from classic_cnns.models import registry

  info = registry.model_info(name)
  overrides = {} if num_classes is None else {"num_classes": num_classes}
  model = registry.create_model(name, **overrides)
  size = input_size or info.input_size
  shape = (batch, size, size, in_channels or info.in_channels)
  variables, layers, out = trace(model, shape)
  params = _size(variables.get("params", {}))
  other = sum(_size(v) for k, v in variables.items() if k != "params")
  m, f = inference_cost(model, variables, shape, flops) if (macs or flops) else (None, None)
  comparable = shape[-1] == info.in_channels and num_classes in (None, info.num_classes)
  return Summary(
    name,
    shape,
    layers,
    params,
    other,
    None if m is None else m // batch,
    None if f is None else f / batch,
    out,
    comparable,
  )


def _g(x: float | None) -> str:
  """A count in billions: 3 decimals, or 3 significant digits below 0.01 (LeNet: 0.000417)."""
  if x is None:
    return "-"
  v = x / 1e9
  return f"{v:.3f}" if v >= 0.01 else f"{v:.3g}"


def format_summary(s: Summary, depth: int | None = None) -> str:
  from classic_cnns.models import registry

  info = registry.model_info(s.name)
  rows = [("layer", "module", "output", "params")]
  for layer in s.layers:
    d = len(layer.path) - 1
    if depth is not None and d + 1 > max(depth, 0) and layer.path != ("(model)",):
      continue
    rows.append(
      (
        "  " * d + layer.path[-1] if layer.path != ("(model)",) else s.name,
        layer.kind,
        layer.output_shape,
        f"{layer.params:,}",
      )
    )
  w = [max(len(r[i]) for r in rows) for i in range(4)]
  lines = [f"{s.name}: input {'x'.join(map(str, s.input_shape))} (NHWC), output {s.output_shape}"]
  for i, r in enumerate(rows):
    lines.append(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]:>{w[3]}}")
    if i == 0:
      lines.append("-" * (sum(w) + 6))
  lines.append("-" * (sum(w) + 6))
  paper = "-" if info.paper_params is None else f"{info.paper_params:,}"
  if info.paper_params is None:
    match = ""
  elif not s.comparable:
    match = f"  (for {info.in_channels} input channels and {info.num_classes} classes)"
  else:
    match = (
      "  (match)"
      if info.paper_params == s.params
      else f"  (MISMATCH: {s.params - info.paper_params:+,})"
    )
  lines.append(f"trainable params:      {s.params:,}")
  lines.append(f"non-trainable:         {s.non_trainable:,} (batch_stats)")
  lines.append(f"paper params:          {paper}{match}")
  size = s.input_shape[1]
  note = (
    ""
    if size == info.input_size
    else f"; the paper numbers are at {info.input_size}x{info.input_size}"
  )
  if s.macs is not None:
    lines.append(
      f"GMACs (conv+fc):       {_g(s.macs)} per image at {size}x{size} ({s.macs:,} multiply-adds{note})"
    )
  if s.xla_flops is not None:
    lines.append(
      f"XLA GFLOPs:            {_g(s.xla_flops)} (= {_g(s.xla_flops / 2)} GMACs; padding taps "
      f"excluded, element-wise ops included)"
    )
  lines.append(f"ref GMACs:             {'-' if info.paper_gmacs is None else info.paper_gmacs}")
  said, where = compute.PAPER_GMACS.get(info.name, (None, ""))
  lines.append(f"paper says:            {'-' if said is None else f'{said:g} GMACs ({where})'}")
  tv = compute.TORCHVISION_GMACS.get(info.name)
  lines.append(f"torchvision:           {'-' if tv is None else f'{tv:g} GMACs'}")
  lines.append(f"source:                {info.source}")
  return "\n".join(lines)


def row(name: str, macs: bool = True, flops: bool = False) -> dict[str, Any]:
  """The `--all` row of one registered model at its registered input size."""
  from classic_cnns.models import registry

  info = registry.model_info(name)
  s = build(name, macs=macs, flops=flops)
  return {
    "name": name,
    "params": s.params,
    "paper_params": info.paper_params,
    "match": None if info.paper_params is None else s.params == info.paper_params,
    "input": info.input_size,
    "gmacs": None if s.macs is None else s.macs / 1e9,
    "paper_gmacs": info.paper_gmacs,
    "paper_says_gmacs": compute.PAPER_GMACS.get(info.name, (None, ""))[0],
    "paper_says_source": compute.PAPER_GMACS.get(info.name, (None, ""))[1] or None,
    "torchvision_gmacs": compute.TORCHVISION_GMACS.get(info.name),
    "xla_gflops": None if s.xla_flops is None else s.xla_flops / 1e9,
  }


def all_rows(pattern: str = "", macs: bool = True, flops: bool = False) -> list[dict[str, Any]]:
  """One row per registered model whose name contains `pattern`. Abstract evaluation only: an
  `eval_shape` of init per model, a trace of the forward pass for the MACs, its lowering for the
  XLA FLOPs."""
  from classic_cnns.models import registry

  return [row(name, macs, flops) for name in registry.list_models(pattern)]


def format_all(rows: list[dict[str, Any]]) -> str:
  flops = any(r["xla_gflops"] is not None for r in rows)
  head = ["model", "params", "paper params", "match", "input", "GMACs", "ref GMACs"]
  head += ["paper says", "torchvision"]
  if flops:
    head.append("XLA GFLOPs/2")
  table = [head]
  for r in rows:
    match = "-" if r["match"] is None else ("yes" if r["match"] else "NO")
    line = [
      r["name"],
      f"{r['params']:,}",
      "-" if r["paper_params"] is None else f"{r['paper_params']:,}",
      match,
      str(r["input"]),
      "-" if r["gmacs"] is None else _g(r["gmacs"] * 1e9),
      "-" if r["paper_gmacs"] is None else f"{r['paper_gmacs']:g}",
      "-" if r["paper_says_gmacs"] is None else f"{r['paper_says_gmacs']:g}",
      "-" if r["torchvision_gmacs"] is None else f"{r['torchvision_gmacs']:g}",
    ]
    if flops:
      line.append(_g(r["xla_gflops"] / 2 * 1e9))
    table.append(line)
  w = [max(len(t[i]) for t in table) for i in range(len(head))]
  out = []
  for i, t in enumerate(table):
    out.append(
      "  ".join(c.ljust(w[j]) if j in (0, 3) else c.rjust(w[j]) for j, c in enumerate(t)).rstrip()
    )
    if i == 0:
      out.append("-" * len(out[0]))
  n_no = sum(r["match"] is False for r in rows)
  out.append(
    f"{len(rows)} models; {sum(r['match'] is True for r in rows)} match the reference "
    f"parameter count{f', {n_no} do NOT' if n_no else ''}. GMACs: conv+fc multiply-adds per image "
    f"(traced); ref: the exact count of the registered layout; paper says: the figure the paper "
    f"states (the ResNet paper's 'FLOPs'); torchvision: its published figure (models/compute.py)."
  )
  return "\n".join(out)


def main(argv: list[str]) -> None:
  with cli.user_errors():  # one line and a non-zero exit (cli.py); --debug: the traceback
    _main(argv)


def _main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # no INFO lines from JAX's backend probing
  from classic_cnns.models import registry

  if _ALL.value:
    rows = all_rows(_PATTERN.value, flops=_FLOPS.value)
    if not rows:
      cli.fail(f"no registered model name contains {_PATTERN.value!r}")
    print(format_all(rows), flush=True)
    return
  if not _MODEL.value:
    cli.fail("give --model=NAME or --all")
  registry.list_models()
  if _MODEL.value not in registry._REGISTRY:  # pylint: disable=protected-access
    cli.fail(registry.unknown_model_message(_MODEL.value))
  for flag, value in (
    ("input", _INPUT.value),
    ("batch", _BATCH.value),
    ("in_channels", _CHANNELS.value),
    ("num_classes", _CLASSES.value),
  ):
    if value is not None and value <= 0:
      cli.fail(f"--{flag} must be positive, got {value}")
  try:
    s = build(_MODEL.value, _INPUT.value, _BATCH.value, _CHANNELS.value, _CLASSES.value, flops=True)
  except Exception as e:  # e.g. an input too small for the architecture: one line, not a traceback
    if cli.debugging():
      raise
    cli.fail(
      f"cannot build {_MODEL.value!r} for input {_INPUT.value or 'default'}: "
      f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    )
  print(format_summary(s, _DEPTH.value), flush=True)


if __name__ == "__main__":
  cli.run(main)
