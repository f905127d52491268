"""The papers' test-time protocols, one evaluator each, chosen by name (`EVALUATORS[name]`), all
behind one interface:

    ev = make(name, model, prep, config, mesh, resize=..., crop=..., scales=...)
    ev.evaluate(state_or_variables, split) -> {"top1", "top5", "loss", "count"}

`state_or_variables` is a train state (its moving average of the parameters where it keeps one,
else its parameters, and its BatchNorm statistics: steps.eval_variables) or a dict of variables;
`split` is any `data.split.Split` (every example once, the last batch padded and masked).

  centre           the trainer's evaluation view (config.data.eval_resize / eval_crop: shorter side
                   -> resize, centre crop; the full image when unset); the trainer's periodic and
                   final evaluations by default (config.eval_protocol)
  center_crop      one centre crop: shorter side -> resize, centre crop (defaults: the config's
                   evaluation view, else the training input size and 8/7 of it)
  full             the whole image (CIFAR), no resize or crop
  ten_crop         the 4 corner crops + the centre crop and their horizontal flips, logits averaged
                   (AlexNet Sec. 4.1, ResNet Sec. 3.4 / Table 3); sizes as center_crop
  dense_multiscale the fully-convolutional net on the whole image rescaled to each Q in `scales`,
                   plus its flip; soft-max posteriors averaged over flips and scales (VGG Sec. 3.2,
                   ResNet Sec. 3.4 / Table 4). Needs VGG's dense form or a model flagged
                   FULLY_CONVOLUTIONAL (global-average-pooling head: ResNet, DenseNet)
  multi_crop_144   GoogLeNet Sec. 10: 4 scales (shorter side 256/288/320/352 for 224 crops), the
                   left/centre/right (or top/centre/bottom) squares of each, from each square the 4
                   corner and the centre 224 crops and the square resized to 224, and their mirrors:
                   4 x 3 x 6 x 2 = 144 views, soft-max probabilities averaged. For another input
                   size the scales are scaled by crop / 224

Aliases: `single` = centre, `dense` = dense_multiscale.

Streamed splits (config.data.streaming) in `canvas` mode hand over squares on which every protocol
runs as on in-memory images. In the host-crop modes the multi-view protocols read the central square
of each image rescaled to the protocol's size (resize for center_crop / ten_crop, the largest scale
for dense_multiscale and multi_crop_144, whose other scales are resized from it in jit): dense and
144-crop evaluation then see the central square, not the whole non-square image (for 144 crops the
three squares of a scale coincide), a documented deviation from VGG Sec. 3.2 and GoogLeNet Sec. 10;
`full` needs canvas mode.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from classic_cnns import parallel, steps
from classic_cnns.config import ConfigError
from classic_cnns.data import augment
from classic_cnns.data.split import Split

# GoogLeNet Sec. 10: the shorter side of the test image at 256, 288, 320 and 352 for 224 crops.
GOOGLENET_SCALES = (256, 288, 320, 352)
GOOGLENET_CROP = 224


# ----------------------------------------------------------------------------- model forms
def has_dense_mode(model) -> bool:
  """VGG's dense form: FC layers applied as convolutions (`model(x, dense=True)`, Sec. 3.2)."""
  return "dense" in inspect.signature(type(model).__call__).parameters


def supports_dense(model) -> bool:
  """Whether dense_multiscale applies: a dense form, or a global-average-pooling head that takes any
  input size (FULLY_CONVOLUTIONAL: ResNet Sec. 3.4 / Table 4, DenseNet)."""
  return has_dense_mode(model) or getattr(type(model), "FULLY_CONVOLUTIONAL", False)


def dense_kwargs(model) -> dict:
  return {"dense": True} if has_dense_mode(model) else {}


# ----------------------------------------------------------------------------- eval steps
def _sums(scores, labels, mask, log_probs) -> dict[str, jax.Array]:
  nll = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  return {
    "loss": jnp.sum(nll * mask),
    "top1": jnp.sum(steps.topk_correct(scores, labels, 1) * mask),
    "top5": jnp.sum(steps.topk_correct(scores, labels, 5) * mask),
    "count": jnp.sum(mask),
  }


def make_ten_crop_step(model, prep: augment.Preprocess, resize: int, crop: int, dtype):
  """Eval step averaging the logits of 10 views (5 crops x flip), one view at a time (lax.map)."""

  def step(state, batch):
    x = augment.normalize(batch["image"], prep)
    windows = jnp.asarray(augment.ten_crop_windows(x.shape[1], x.shape[2], resize, crop))
    variables = steps.eval_variables(state)

    def view_logits(i):
      view = augment.crop_resize(x, (crop, crop), tuple(windows[i % 5]))
      view = jnp.where(i >= 5, view[:, :, ::-1, :], view)
      return model.apply(variables, view.astype(dtype), train=False).astype(jnp.float32)

    logits = jnp.mean(jax.lax.map(view_logits, jnp.arange(10)), axis=0)
    return _sums(logits, batch["label"], batch["mask"], jax.nn.log_softmax(logits))

  return step


def make_dense_step(model, prep: augment.Preprocess, scales: Sequence[int], dtype):
  """Eval step: dense (fully-convolutional) net at each scale Q and on the flipped image; soft-max
  posteriors averaged (VGG Sec. 3.2)."""

  def step(state, batch):
    x = augment.normalize(batch["image"], prep)
    variables = steps.eval_variables(state)
    probs = 0.0
    for q in scales:
      view = augment.resize_shorter(x, q)
      for v in (view, view[:, :, ::-1, :]):
        logits = model.apply(variables, v.astype(dtype), train=False, **dense_kwargs(model))
        probs = probs + jax.nn.softmax(logits.astype(jnp.float32))
    log_probs = jnp.log(probs / (2 * len(scales)) + 1e-30)
    return _sums(log_probs, batch["label"], batch["mask"], log_probs)

  return step


def multi_crop_windows(h: int, w: int, scales: Sequence[int], crop: int) -> np.ndarray:
  """[len(scales) * 18, 4] input-pixel windows (y0, x0, h, w) of GoogLeNet's crops (Sec. 10): at
  each scale s (shorter side -> s) the left/centre/right (top/centre/bottom for a portrait image)
  s x s squares, from each the 4 corner and the centre `crop` crops and the whole square (resampled
  to `crop` by the step). ValueError when a crop does not fit."""
  out = []
  for s in scales:
    if crop > s:
      raise ValueError(f"crop {crop} is larger than the scale {s}")
    f = s / min(h, w)
    rh, rw = augment.resized_hw(h, w, s)
    long = max(rh, rw) - s
    for off in (0, int(round(long / 2.0)), long):
      sy, sx = (0, off) if rw >= rh else (off, 0)
      c2 = int(round((s - crop) / 2.0))
      corners = [(0, 0), (0, s - crop), (s - crop, 0), (s - crop, s - crop), (c2, c2)]
      for oy, ox in corners:
        out.append(((sy + oy) / f, (sx + ox) / f, crop / f, crop / f))
      out.append((sy / f, sx / f, s / f, s / f))
  return np.array(out, np.float32)


def make_multi_crop_step(model, prep: augment.Preprocess, scales: Sequence[int], crop: int, dtype):
  """Eval step of GoogLeNet's 144 crops: soft-max probabilities averaged over every view and its
  mirror image, one window at a time (lax.map)."""

  def step(state, batch):
    x = augment.normalize(batch["image"], prep)
    windows = jnp.asarray(multi_crop_windows(x.shape[1], x.shape[2], scales, crop))
    variables = steps.eval_variables(state)

    def window_probs(window):
      view = augment.crop_resize(x, (crop, crop), tuple(window))
      probs = 0.0
      for v in (view, view[:, :, ::-1, :]):
        logits = model.apply(variables, v.astype(dtype), train=False)
        probs = probs + jax.nn.softmax(logits.astype(jnp.float32))
      return probs

    probs = jnp.sum(jax.lax.map(window_probs, windows), axis=0) / (2 * windows.shape[0])
    log_probs = jnp.log(probs + 1e-30)
    return _sums(log_probs, batch["label"], batch["mask"], log_probs)

  return step


def crop_sizes(prep: augment.Preprocess, image_shape, resize: int = 0, crop: int = 0):
  """(resize, crop) of center_crop / ten_crop: explicit values, else the config's evaluation view,
  else the model's input side and 8/7 of it (256 for 224)."""
  side = prep.eval_shape(image_shape)[0]
  crop = crop or prep.eval_crop or side
  resize = resize or prep.eval_resize or round(crop * 8 / 7)
  return resize, crop


# ----------------------------------------------------------------------------- evaluators
class Evaluator:
  """One protocol. `prepare(split)` works out the views for the split's images (and refuses, with
  one ConfigError line, what cannot run); `evaluate(state_or_variables, split)` runs it."""

  name = ""
  dense = False  # the model is applied in its dense form

  def __init__(
    self,
    model,
    prep: augment.Preprocess,
    config: ml_collections.ConfigDict,
    mesh=None,
    *,
    resize: int = 0,
    crop: int = 0,
    scales: Sequence[int] | None = None,
  ):
    self.model, self.prep, self.config = model, prep, config
    self.mesh = mesh if mesh is not None else parallel.make_mesh()
    self.dtype = jnp.dtype(config.dtype)
    n_dev = jax.device_count()
    self.batch_size = -(-config.eval_batch_size // n_dev) * n_dev
    self.resize, self.crop = int(resize), int(crop)
    self.scales = [int(q) for q in scales] if scales else []
    self._prepared: dict = {}  # (image_shape, streamed) -> (step, canvas, shape, info)

  # What a protocol defines: the side of the squares a streamed split in host-crop mode hands over
  # (0: the host's evaluation view) with the sizes worked out on the streamed images, and its step
  # and views for uint8 images of `image_shape`.
  def _host_canvas(self, prep, image_shape) -> tuple[int, dict]:
    return 0, {}

  def _build(self, prep, image_shape, **sizes) -> tuple[Any, tuple[int, int, int], dict]:
    raise NotImplementedError

  def prepare(self, split: Split) -> dict:
    """The protocol's views for `split` (resize / crop / scales); ConfigError when it cannot run."""
    return self._setup(split)[3]

  def _setup(self, split: Split):
    shape, streamed = tuple(split.image_shape), bool(split.streamed)
    key = (shape, streamed)
    if key not in self._prepared:
      canvas, sizes = 0, {}
      host_crops = streamed and self.config.data.streaming.augment != "canvas"
      if host_crops:
        canvas, sizes = self._host_canvas(self.prep, shape)
        if canvas:
          shape = (canvas, canvas, shape[-1])
      try:
        step, view_shape, info = self._build(self.prep, shape, **sizes)
      except ConfigError:
        raise
      except ValueError as e:
        raise ConfigError(self._error(shape, e)) from None
      jitted = jax.jit(
        step,
        in_shardings=(parallel.replicated(self.mesh), parallel.batch_sharded(self.mesh)),
        out_shardings=parallel.replicated(self.mesh),
      )
      self._prepared[key] = (jitted, canvas, shape, info, step, view_shape)
    return self._prepared[key]

  def _error(self, shape, e: BaseException) -> str:
    return (
      f"--protocol={self.name} on {self.config.model.name!r} ({shape[0]}x{shape[1]} images): "
      f"{' '.join(str(e).split())[:300]}"
    )

  def check(self, state_or_variables, split: Split) -> None:
    """Traces the protocol's step abstractly (no compilation) on `state_or_variables` (arrays or
    jax.ShapeDtypeStructs): a view the model cannot take is one ConfigError line."""
    _, _, shape, _, step, _ = self._setup(split)
    n = 1
    batch = {
      "image": jax.ShapeDtypeStruct((n,) + tuple(shape), jnp.uint8),
      "label": jax.ShapeDtypeStruct((n,), jnp.int32),
      "mask": jax.ShapeDtypeStruct((n,), jnp.float32),
    }
    try:
      jax.eval_shape(step, state_or_variables, batch)
    except ConfigError:
      raise
    except (ValueError, TypeError) as e:
      raise ConfigError(self._error(shape, e)) from None

  def evaluate(self, state_or_variables, split: Split) -> dict[str, float]:
    """top1, top5, loss (mean over examples) and count of `split` under this protocol."""
    jitted, canvas, _, _, _, _ = self._setup(split)
    batches = split.eval_batches(self.batch_size, self.config, self.mesh, canvas)
    return steps.evaluate(jitted, state_or_variables, batches)


class Centre(Evaluator):
  """The trainer's evaluation view (config.data.eval_resize / eval_crop)."""

  name = "centre"

  def _build(self, prep, image_shape, **sizes):
    info = {"resize": prep.eval_resize, "crop": prep.eval_crop}
    return steps.make_eval_step(self.model, prep, self.dtype), prep.eval_shape(image_shape), info


class Full(Evaluator):
  """The whole image, no resize or crop (CIFAR)."""

  name = "full"

  def _host_canvas(self, prep, image_shape) -> tuple[int, dict]:
    raise ConfigError(
      "--protocol=full needs whole images of one size; streamed data in host-crop mode has "
      "none (use center_crop, ten_crop or dense, or data.streaming.augment=canvas)"
    )

  def _build(self, prep, image_shape, **sizes):
    prep = dataclasses.replace(prep, eval_resize=0, eval_crop=0)
    info = {"resize": 0, "crop": 0}
    return steps.make_eval_step(self.model, prep, self.dtype), prep.eval_shape(image_shape), info


class CenterCrop(Evaluator):
  """One centre crop: shorter side -> resize, centre crop."""

  name = "center_crop"

  def _host_canvas(self, prep, image_shape) -> tuple[int, dict]:
    resize = self.resize or self.config.data.streaming.resize
    r, c = crop_sizes(prep, image_shape, resize, self.crop)
    return r, {"resize": r, "crop": c}  # the canvas is the resized image's central square

  def _build(self, prep, image_shape, resize=0, crop=0):
    h, w, _ = augment.padded_shape(image_shape, prep.pad_to)
    r, c = crop_sizes(prep, image_shape, resize or self.resize, crop or self.crop)
    prep = dataclasses.replace(prep, eval_resize=r, eval_crop=c)
    augment.center_window(h, w, r, c)  # a crop that does not fit: ValueError
    step = steps.make_eval_step(self.model, prep, self.dtype)
    return step, prep.eval_shape(image_shape), {"resize": r, "crop": c}


class TenCrop(CenterCrop):
  """4 corners + centre and their flips, logits averaged (AlexNet Sec. 4.1, ResNet Table 3)."""

  name = "ten_crop"

  def _build(self, prep, image_shape, resize=0, crop=0):
    h, w, c_in = augment.padded_shape(image_shape, prep.pad_to)
    r, c = crop_sizes(prep, image_shape, resize or self.resize, crop or self.crop)
    augment.ten_crop_windows(h, w, r, c)  # a crop that does not fit: ValueError
    step = make_ten_crop_step(self.model, prep, r, c, self.dtype)
    return step, (c, c, c_in), {"resize": r, "crop": c}


class DenseMultiscale(Evaluator):
  """The fully-convolutional net at several scales and flips, posteriors averaged (VGG Sec. 3.2,
  ResNet Table 4)."""

  name = "dense_multiscale"
  dense = True

  def _scales(self, prep, image_shape) -> list[int]:
    h, w, _ = augment.padded_shape(image_shape, prep.pad_to)
    scales = self.scales or [prep.eval_resize or min(h, w)]
    if any(q <= 0 for q in scales):
      raise ConfigError(f"--scales must be positive, got {scales}")
    return scales

  def _host_canvas(self, prep, image_shape) -> tuple[int, dict]:
    scales = self.scales or [int(self.config.data.streaming.resize)]
    return max(scales), {"scales": scales}

  def _build(self, prep, image_shape, scales=None):
    if not supports_dense(self.model):
      raise ConfigError(
        f"model {self.config.model.name!r} has no dense evaluation mode (VGG's fully-convolutional "
        f"`dense=True`, Sec. 3.2, or a FULLY_CONVOLUTIONAL global-pooling head); use the "
        f"centre or ten_crop protocol"
      )
    h, w, c_in = augment.padded_shape(image_shape, prep.pad_to)
    scales = list(scales or self._scales(prep, image_shape))
    if any(q <= 0 for q in scales):
      raise ConfigError(f"--scales must be positive, got {scales}")
    step = make_dense_step(self.model, prep, scales, self.dtype)
    return step, augment.resized_hw(h, w, min(scales)) + (c_in,), {"scales": scales}


class MultiCrop144(Evaluator):
  """GoogLeNet's 144 crops (Sec. 10), soft-max probabilities averaged."""

  name = "multi_crop_144"

  def _sizes(self, prep, image_shape) -> tuple[list[int], int]:
    crop = self.crop or prep.eval_shape(image_shape)[0]
    scales = self.scales or [int(round(q * crop / GOOGLENET_CROP)) for q in GOOGLENET_SCALES]
    if len(scales) != len(GOOGLENET_SCALES) or any(q <= 0 for q in scales):
      raise ConfigError(f"multi_crop_144 needs 4 positive scales, got {scales}")
    return scales, crop

  def _host_canvas(self, prep, image_shape) -> tuple[int, dict]:
    scales, crop = self._sizes(prep, image_shape)  # on the host's crop: the model's input side
    return max(scales), {"scales": scales, "crop": crop}

  def _build(self, prep, image_shape, scales=None, crop=0):
    h, w, c_in = augment.padded_shape(image_shape, prep.pad_to)
    if not scales:
      scales, crop = self._sizes(prep, image_shape)
    multi_crop_windows(h, w, scales, crop)  # a crop that does not fit: ValueError
    step = make_multi_crop_step(self.model, prep, scales, crop, self.dtype)
    return step, (crop, crop, c_in), {"scales": scales, "crop": crop}


EVALUATORS: dict[str, type[Evaluator]] = {
  e.name: e for e in (Centre, CenterCrop, Full, TenCrop, DenseMultiscale, MultiCrop144)
}
ALIASES = {"single": "centre", "dense": "dense_multiscale"}
NAMES = tuple(EVALUATORS) + tuple(ALIASES)  # every name a protocol may be chosen by


def get(name: str) -> type[Evaluator]:
  """The evaluator class of protocol `name` (or an alias); ConfigError naming the choices."""
  cls = EVALUATORS.get(ALIASES.get(name, name))
  if cls is None:
    raise ConfigError(f"unknown evaluation protocol {name!r}; one of {', '.join(NAMES)}")
  return cls


def make(
  name: str,
  model,
  prep: augment.Preprocess,
  config: ml_collections.ConfigDict,
  mesh=None,
  **options,
) -> Evaluator:
  """The evaluator of protocol `name` (options: resize, crop, scales)."""
  return get(name)(model, prep, config, mesh, **options)
