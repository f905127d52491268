"""Optimizers and learning-rate schedules from the config, built from optax pieces.

Weight decay comes in two forms (config.optimizer.weight_decay_mode):
  l2         0.5 * wd * ||w||^2 added to the loss, as the papers (AlexNet Sec. 5, ResNet Sec. 3.4);
             see `l2_penalty`, applied by the trainer.
  decoupled  w <- w - lr * wd * w applied beside the optimizer's update (Loshchilov & Hutter
             2019), i.e. AdamW, and its SGD analogue.
Both are masked to conv/dense kernels by default (decay_mask="kernels": no decay on biases and
norm scales/offsets); decay_mask="all" decays every parameter (GN paper Sec. 5.1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import traverse_util


def decay_mask(params, which: str):
  if which == "all":
    return jax.tree.map(lambda _: True, params)
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: k[-1] == "kernel" for k in flat})


def l2_penalty(params, which: str) -> jax.Array:
  mask = decay_mask(params, which)
  sq = jax.tree.map(lambda p, m: jnp.sum(jnp.square(p)) if m else 0.0, params, mask)
  return 0.5 * sum(jax.tree.leaves(sq))


def make_schedule(
  cfg: ml_collections.ConfigDict, steps_per_epoch: int, total_steps: int
) -> optax.Schedule:
  """Learning rate per step: linear warmup, then constant / step / multistep / cosine."""
  to_steps = (lambda v: int(round(v * steps_per_epoch))) if cfg.schedule.unit == "epoch" else int
  s, lr = cfg.schedule, cfg.optimizer.lr
  warmup = to_steps(s.warmup)
  if s.name == "constant":
    main = optax.constant_schedule(lr)
  elif s.name == "multistep":
    main = optax.piecewise_constant_schedule(
      lr, {to_steps(b) - warmup: s.decay_factor for b in s.boundaries}
    )
  elif s.name == "step":
    main = optax.exponential_decay(lr, to_steps(s.step_size), s.decay_factor, staircase=True)
  elif s.name == "cosine":
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1), s.final_lr_fraction)
  else:
    raise ValueError(f"unknown schedule {s.name!r}")
  if warmup <= 0:
    return main
  ramp = optax.linear_schedule(s.warmup_init * lr, lr, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def make_optimizer(
  cfg: ml_collections.ConfigDict, schedule: optax.Schedule, params
) -> optax.GradientTransformation:
  o = cfg.optimizer
  if o.name in ("sgd", "nesterov"):
    direction = (
      optax.trace(decay=o.momentum, nesterov=o.name == "nesterov")
      if o.momentum
      else optax.identity()
    )
  elif o.name in ("adam", "adamw"):
    direction = optax.scale_by_adam(o.b1, o.b2, o.eps)
  elif o.name == "rmsprop":
    direction = optax.scale_by_rms(decay=o.b2, eps=o.eps)
  else:
    raise ValueError(f"unknown optimizer {o.name!r}")
  parts = [optax.clip_by_global_norm(o.grad_clip_norm)] if o.grad_clip_norm > 0 else []
  parts.append(direction)
  decoupled = o.weight_decay > 0 and (o.weight_decay_mode == "decoupled" or o.name == "adamw")
  if decoupled:
    parts.append(optax.add_decayed_weights(o.weight_decay, decay_mask(params, o.decay_mask)))
  parts.append(optax.scale_by_learning_rate(schedule))
  return optax.chain(*parts)


def uses_l2_loss(cfg: ml_collections.ConfigDict) -> bool:
  o = cfg.optimizer
  return o.weight_decay > 0 and o.weight_decay_mode == "l2" and o.name != "adamw"
