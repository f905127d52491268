"""The jitted steps and their pieces: the train step (loss with auxiliary heads, label smoothing,
L2, gradient accumulation, the non-finite guard, the parameters' moving average), the eval step,
and the host-side checks of the state's finiteness.

`make_train_step(model, config, prep, schedule, dtype)` returns `step(state, batch) -> (state,
metrics)`; `make_eval_step(model, prep, dtype)` returns `step(state, batch) -> sums` over a padded,
masked batch (the `centre` protocol of evaluators.py, which holds the others); `evaluate` adds them
up over a split.
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax.training import train_state

from classic_cnns import optim
from classic_cnns.data import augment


class TrainingDivergedError(RuntimeError):
  """Loss or parameters became NaN/Inf; the message is one line meant for the user."""

  exit_status = 1  # a runtime failure, not bad input


# ----------------------------------------------------------------------------- state
class TrainState(train_state.TrainState):
  batch_stats: Any
  rng: jax.Array  # base key; each step uses fold_in(rng, step)
  # Exponential moving average of the parameters (config.ema_decay > 0), what evaluation uses
  # (Inception-v3 Sec. 8); None when off, so the checkpoint holds no extra arrays.
  ema_params: Any = None


def eval_variables(state: TrainState | Mapping[str, Any]) -> dict[str, Any]:
  """The variables a model is evaluated with: the moving average of the parameters where the run
  keeps one (config.ema_decay), else the parameters; the running BatchNorm statistics. A mapping
  is taken as the variables themselves ({"params": ..., "batch_stats": ...})."""
  if isinstance(state, Mapping):
    return {"params": state["params"], "batch_stats": state.get("batch_stats", {})}
  ema = getattr(state, "ema_params", None)
  params = state.params if ema is None else ema
  return {"params": params, "batch_stats": state.batch_stats}


# ----------------------------------------------------------------------------- steps
def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float) -> jax.Array:
  """Per-example softmax cross-entropy; label smoothing as Inception-v3 Sec. 7."""
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if smoothing:
    targets = optax.smooth_labels(targets, smoothing)
  return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  k = min(k, logits.shape[-1])
  top = jax.lax.top_k(logits, k)[1]
  return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def split_aux(out) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  return (out[0], tuple(out[1])) if isinstance(out, tuple) else (out, ())


def all_finite(tree: Any) -> jax.Array:
  """True iff every element of every floating leaf is finite: one reduction per leaf of `x * 0`
  (0 where finite, NaN where not), so nothing is copied or concatenated and nothing overflows."""
  sums = [jnp.sum(x * 0) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.isfinite(sum(sums)) if sums else jnp.array(True)


def make_train_step(
  model: nn.Module,
  config: ml_collections.ConfigDict,
  prep: augment.Preprocess,
  schedule: optax.Schedule,
  dtype,
):
  l2 = optim.uses_l2_loss(config)

  accum = config.accum_steps

  def grads_of(params, batch_stats, images, labels, dropout_key):
    def loss_fn(params):
      out, new_vars = model.apply(
        {"params": params, "batch_stats": batch_stats},
        images,
        train=True,
        rngs={"dropout": dropout_key},
        mutable=["batch_stats"],
      )
      logits, aux = split_aux(out)
      data_loss = cross_entropy(logits, labels, config.loss.label_smoothing).mean()
      # GoogLeNet Sec. 5: auxiliary losses added with weight 0.3 during training only.
      aux_loss = sum(cross_entropy(a, labels, config.loss.label_smoothing).mean() for a in aux)
      loss = data_loss + config.loss.aux_weight * aux_loss
      if l2:
        loss = loss + config.optimizer.weight_decay * optim.l2_penalty(
          params, config.optimizer.decay_mask
        )
      return loss, (data_loss, logits.astype(jnp.float32), new_vars.get("batch_stats", {}))

    (loss, (data_loss, logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      params
    )
    return grads, loss, data_loss, logits, new_stats

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    step_key = jax.random.fold_in(state.rng, state.step)
    aug_key, dropout_key = jax.random.split(step_key)
    images = augment.preprocess(batch["image"], prep, train=True, rng=aug_key, dtype=dtype)
    labels = batch["label"]
    if accum == 1:
      grads, loss, data_loss, logits, batch_stats = grads_of(
        state.params, state.batch_stats, images, labels, dropout_key
      )
    else:
      # Gradient accumulation: `accum` micro-batches, rows strided (i, i+accum, ...) so that every
      # micro-batch spans all devices; gradients averaged = one step on the whole batch (without BN).
      micro = lambda x: x.reshape((x.shape[0] // accum, accum) + x.shape[1:]).swapaxes(0, 1)

      def body(carry, xs):
        grad_sum, stats = carry
        imgs, lbls, i = xs
        g, l, dl, lg, stats = grads_of(
          state.params, stats, imgs, lbls, jax.random.fold_in(dropout_key, i)
        )
        return (jax.tree.map(jnp.add, grad_sum, g), stats), (l, dl, lg)

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, batch_stats), (losses, data_losses, logits) = jax.lax.scan(
        body, (zeros, state.batch_stats), (micro(images), micro(labels), jnp.arange(accum))
      )
      grads = jax.tree.map(lambda g: g / accum, grads)
      loss, data_loss = losses.mean(), data_losses.mean()
      logits = logits.swapaxes(0, 1).reshape((labels.shape[0],) + logits.shape[2:])
    new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
    if config.ema_decay:  # Inception-v3 Sec. 8: evaluate a running average of the parameters
      d = config.ema_decay
      new_state = new_state.replace(
        ema_params=jax.tree.map(
          lambda e, p: d * e + (1 - d) * p, state.ema_params, new_state.params
        )
      )
    ok = jnp.isfinite(loss)
    if (
      config.skip_nonfinite_steps
    ):  # keep the previous state; the step counter (data order) advances
      ok = ok & all_finite(grads)  # a finite loss can still have non-finite gradients
      kept = state.replace(step=new_state.step)
      new_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old), new_state, kept)
    metrics = {
      "loss": data_loss,
      "total_loss": loss,
      "top1": topk_correct(logits, labels, 1).mean(),
      "top5": topk_correct(logits, labels, 5).mean(),
      "lr": schedule(state.step),
      "skipped": 1.0 - ok.astype(jnp.float32),
      "finite": jnp.isfinite(loss),
    }
    return new_state, metrics

  return train_step


def make_eval_step(model: nn.Module, prep: augment.Preprocess, dtype):
  def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    images = augment.preprocess(batch["image"], prep, train=False, rng=None, dtype=dtype)
    logits = model.apply(eval_variables(state), images, train=False)
    labels, mask = batch["label"], batch["mask"]
    return {
      "loss": jnp.sum(cross_entropy(logits, labels, 0.0) * mask),
      "top1": jnp.sum(topk_correct(logits, labels, 1) * mask),
      "top5": jnp.sum(topk_correct(logits, labels, 5) * mask),
      "count": jnp.sum(mask),
    }

  return eval_step


def evaluate(eval_step, state: TrainState, batches) -> dict[str, float]:
  """Loss, top-1 and top-5 accuracy over every example of `batches` (padded, masked tail)."""
  totals = None
  for batch in batches:
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  n = float(totals["count"])
  return {
    "loss": float(totals["loss"]) / n,
    "top1": float(totals["top1"]) / n,
    "top5": float(totals["top5"]) / n,
    "count": n,
  }


# ----------------------------------------------------------------------------- guard
# The whole state (parameters, BatchNorm statistics, optimizer state), checked wherever the loop
# logs, evaluates or saves: nothing NaN/Inf is ever written to a checkpoint.
state_all_finite = jax.jit(
  lambda state: all_finite((state.params, state.batch_stats, state.opt_state))
)


def check_finite(
  window: list[dict[str, np.ndarray]], window_start: int, state: TrainState, config, directory: str
) -> None:
  """Raises TrainingDivergedError if a step of `window` (the host metrics of steps window_start+1 ..
  window_start+len(window)) has a NaN/Inf loss and was not skipped, or if `state` (after the last of
  them) is not finite. The step named is the first such loss, else the last step: the same at every
  rerun from the last checkpoint, since every earlier step was checked before it was saved or logged."""
  bad = next((i for i, m in enumerate(window) if not bool(m["finite"]) and not m["skipped"]), None)
  if bad is None and bool(state_all_finite(state)):
    return
  index = bad if bad is not None else len(window) - 1
  what = "the loss became" if bad is not None else "the model or optimizer state holds"
  hint = "" if config.skip_nonfinite_steps else ", or set config.skip_nonfinite_steps=True"
  raise TrainingDivergedError(
    f"training diverged: {what} NaN/Inf at step {window_start + index + 1} (lr {float(window[index]['lr']):.4g}); "
    f"start again in a new --workdir with a lower config.optimizer.lr or warmup (config.schedule.warmup)"
    f"{hint}; nothing from that step on was saved, the last good checkpoint is kept in {directory}"
  )
