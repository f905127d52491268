"""From a config to what a run trains: the backend (`config.kernels`), the model (with its paper
norm and the config's explicit overrides) and the initial, replicated train state."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from classic_cnns import backends, parallel
from classic_cnns.config import ConfigError
from classic_cnns.models import create_model, registry
from classic_cnns.models.layers import PORTABLE, AttnSpec, Kernels
from classic_cnns.steps import TrainState


def bn_virtual_batch_size(config: ml_collections.ConfigDict, num_devices: int) -> int | None:
  """Examples per BatchNorm statistics group in one forward pass (a micro-batch when accumulating)."""
  if config.bn.stats == "per_device":
    return config.batch_size // (num_devices * config.accum_steps)
  if config.bn.stats == "ghost":
    return config.bn.ghost_batch_size
  return None


def build_model(
  config: ml_collections.ConfigDict, num_devices: int = 1, kernels: Kernels = PORTABLE
) -> nn.Module:
  """config.model -> module, computing with `kernels` (the backend's, `backends.select`). The norm is
  the model's own (`registry.model_norm`: its paper defaults, e.g. Inception-v3's BatchNorm epsilon
  1e-3) with the config's explicit values on top: `norm` (kind), `norm_groups`, `norm_epsilon`,
  `norm_momentum`, and the BatchNorm statistics scope of config.bn.stats. `attn` + `attn_reduction`,
  `attn_use_bias`, `attn_spatial_kernel`, `attn_min_channels` become an AttnSpec. bn.stats other than global on a model without BatchNorm is a ConfigError."""
  kw = {k: v for k, v in config.model.to_dict().items() if v is not None}
  name = kw.pop("name")
  norm_fields = {
    "groups": kw.pop("norm_groups", None),
    "epsilon": kw.pop("norm_epsilon", None),
    "momentum": kw.pop("norm_momentum", None),
  }
  kind = kw.pop("norm", None)
  spec = registry.model_norm(name, kind, **norm_fields)
  explicit = [
    key
    for key, v in (("norm", kind), *((f"norm_{k}", v) for k, v in norm_fields.items()))
    if v is not None
  ]
  if spec is None and explicit:
    raise ConfigError(f"model {name!r} has no norm layers; remove config.model.{explicit[0]}")
  if config.bn.stats != "global":
    if spec is None or spec.kind != "batch":
      what = "no norm layers" if spec is None else f"norm {spec.kind!r}"
      raise ConfigError(
        f"config.bn.stats={config.bn.stats} applies to BatchNorm, but model {name!r} has "
        f"{what}; use config.bn.stats=global"
      )
    spec = dataclasses.replace(spec, virtual_batch_size=bn_virtual_batch_size(config, num_devices))
  if spec is not None:
    kw["norm"] = spec
  attn_fields = {  # config.model.attn_<field> -> AttnSpec.<field> (layers.AttnSpec documents them)
    f: kw.pop(f"attn_{f}")
    for f in ("reduction", "use_bias", "spatial_kernel", "min_channels")
    if f"attn_{f}" in kw
  }
  if kw.get("attn"):
    try:
      kw["attn"] = AttnSpec(kw["attn"], **attn_fields)
    except ValueError as e:
      raise ConfigError(f"config.model.attn: {e}") from None
  elif "attn" in kw:
    kw["attn"] = None
  if (
    config.dtype != "float32"
  ):  # mixed precision: compute dtype; params, optimizer, BN stats stay float32
    kw["dtype"] = jnp.dtype(config.dtype)
  if kernels is not PORTABLE or registry.has_field(name, "kernels"):
    kw["kernels"] = kernels
  return create_model(name, **kw)


def select_backend(config: ml_collections.ConfigDict) -> backends.Backend:
  """config.kernels / config.cpu_convs -> this run's backend (`classic_cnns.backends`); ConfigError
  (one line) where it cannot run here."""
  try:
    backend = backends.select(config.kernels, config.cpu_convs)
  except backends.BackendError as e:
    raise ConfigError(str(e)) from None
  name = config.model.name
  if backend.name != "portable" and not registry.has_field(name, "kernels"):  # a model of one's own
    if config.kernels != "auto":
      raise ConfigError(
        f"model {name!r} has no `kernels` field, so config.kernels={config.kernels} cannot "
        f"reach it; use --config.kernels=portable"
      )
    return backends.Backend("portable", f"auto: model {name!r} has no kernels field")
  return backend


def create_train_state(
  model: nn.Module,
  tx: optax.GradientTransformation,
  input_shape: tuple[int, ...],
  seed: int,
  mesh,
  backend: backends.Backend | None = None,
  ema: bool = False,
) -> TrainState:
  """Initialises replicated parameters and optimizer state on the mesh (jit, out_shardings), compiled
  as `backend` compiles initialisations; `ema`: also the parameters' moving average, starting at
  the initial parameters. The parameters depend on the seed only, not the backend: the
  initialisation is traced with the portable kernels."""
  if "kernels" in {f.name for f in dataclasses.fields(model)}:
    model = model.clone(kernels=PORTABLE)

  def init():
    key = jax.random.PRNGKey(seed)
    params_key, dropout_key, state_key = jax.random.split(key, 3)
    variables = model.init(
      {"params": params_key, "dropout": dropout_key},
      jnp.zeros((1,) + input_shape, jnp.float32),
      train=False,
    )
    return TrainState.create(
      apply_fn=model.apply,
      params=variables["params"],
      tx=tx,
      batch_stats=variables.get("batch_stats", {}),
      rng=state_key,
      ema_params=variables["params"] if ema else None,
    )

  shardings = jax.tree.map(lambda _: parallel.replicated(mesh), jax.eval_shape(init))
  return (backend or backends.PORTABLE_BACKEND).compile_init(init, shardings)()
