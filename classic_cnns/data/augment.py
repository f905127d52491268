"""Preprocessing and augmentation that run inside the jit-compiled step, with JAX RNG.

Batches arrive as uint8 [B, H, W, C]; `preprocess` turns them into normalised float images on the
accelerator, so the host only moves bytes. Every random op is per example and keyed by the step's
RNG, so a step's augmentation is a pure function of (seed, step); every op has a fixed output shape.
No TensorFlow here. The order (each stage optional, training-only stages marked T):

  1. photometric, in [0, 255] pixel units (T): colour jitter (brightness, contrast, saturation:
     torchvision's ColorJitter factors, applied in that fixed order) and AlexNet's PCA lighting
     noise (Krizhevsky et al. 2012, Sec. 4.1: RGB + V (alpha * lambda), alpha ~ N(0, sigma)).
  2. normalisation: global contrast normalisation and ZCA whitening (NiN Sec. 4.2, following the
     maxout paper's preprocessing), the per-pixel mean image (ResNet Sec. 4.2, AlexNet Sec. 2) or
     the per-channel mean (VGG Sec. 2.1), each optionally divided by the per-channel std.
  3. `pad_to`: centred zero padding (after normalising, so the pad is the mean; LeNet Sec. II.B).
  4. geometry. Training (T), one crop family: pad-and-random-crop (CIFAR: 4 px; ResNet Sec. 4.2),
     `resize` (shorter side -> resize, random crop; AlexNet Sec. 4.1), `inception` (random-resized
     crop, area 8-100 %, aspect 3/4-4/3; Szegedy et al. 2015 Sec. 6) or `scale_jitter` (shorter
     side -> S ~ U[S_min, S_max], random crop; VGG Sec. 3.1), then a random horizontal flip.
     Evaluation, and training with augmentation off: shorter side -> `eval_resize`, centre
     `eval_crop` crop (ImageNet style), or the full image (CIFAR).

Every resize/crop is one `jax.image.scale_and_translate` (bilinear, antialiased) per example, so
crops are continuous windows resampled straight to the output size (no intermediate resize).
Test-time views for `classic_cnns.evaluate` (ten crops, dense evaluation rescales) are here too.

`Preprocess` is a frozen, hashable dataclass (it is closed over by jit); its large constants (the
per-pixel mean image, the ZCA matrix) are `FrozenArray`s, hashed and compared by content digest.
`preprocess_config` builds one from `config.data` and the training split (statistics computed at
load time, or taken from `metadata.py`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

CROPS = ("none", "resize", "inception", "scale_jitter")


@dataclasses.dataclass(frozen=True)
class EvalPreset:
  """The evaluation view a weight source's published accuracies use (config.data.eval_preset):
  shorter side -> round(crop / crop_pct), centre `crop` crop (default `crop`; a config's eval_crop
  or training crop_size wins), mean/std normalisation (fractions of 255), bilinear resampling."""

  crop_pct: float
  mean: tuple[float, float, float]
  std: tuple[float, float, float]
  crop: int = 224
  source: str = ""


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRESETS = {
  # torchvision's IMAGENET1K_V1 weights: ImageClassification(crop_size=224, resize_size=256), and
  # 342 -> 299 for inception_v3 (the same 0.875 ratio).
  "torchvision": EvalPreset(0.875, IMAGENET_MEAN, IMAGENET_STD, 224, "torchvision IMAGENET1K_V1"),
  # torchvision's IMAGENET1K_V2 recipes of resnet50/101/152: resize_size=232, crop_size=224.
  "torchvision_v2": EvalPreset(
    224 / 232, IMAGENET_MEAN, IMAGENET_STD, 224, "torchvision IMAGENET1K_V2"
  ),
  # torchvision's googlenet / inception_v3 weights run with transform_input=True, which maps the
  # ImageNet-normalised input to (x - 0.5) / 0.5: exactly this normalisation, done here instead.
  "torchvision_inception": EvalPreset(
    0.875, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 299, "torchvision transform_input=True"
  ),
  # timm's pretrained_cfg of its torchvision-layout nets (resnet*, densenet*: crop_pct 0.875,
  # ImageNet mean/std; timm resamples bicubic, here bilinear) ...
  "timm": EvalPreset(0.875, IMAGENET_MEAN, IMAGENET_STD, 224, "timm pretrained_cfg"),
  # ... and of inception_v3.tv_in1k (mean = std = 0.5, 299 crop).
  "timm_inception": EvalPreset(
    0.875, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 299, "timm inception_v3 pretrained_cfg"
  ),
}
EVAL_PRESETS = ("",) + tuple(PRESETS)


def preset_resize(preset: str, crop: int) -> int:
  """The shorter side before the centre `crop` crop of `preset` (256 for 224, 342 for 299)."""
  return int(round(crop / PRESETS[preset].crop_pct))


class FrozenArray:
  """A read-only float32 numpy constant a frozen dataclass can hold: hashed/compared by content."""

  __slots__ = ("array", "_key")

  def __init__(self, array):
    a = np.array(array, dtype=np.float32, order="C", copy=True)
    a.flags.writeable = False
    self.array = a
    self._key = (a.shape, hashlib.sha1(a.tobytes()).hexdigest())

  def __hash__(self) -> int:
    return hash(self._key)

  def __eq__(self, other) -> bool:
    return isinstance(other, FrozenArray) and self._key == other._key

  def __repr__(self) -> str:
    return f"FrozenArray(shape={self.array.shape}, sha1={self._key[1][:12]})"


@dataclasses.dataclass(frozen=True)
class Preprocess:
  # normalisation (training and evaluation)
  pad_to: int = 0  # zero-pad to this square size (centred)
  mean: tuple[float, ...] = ()  # per channel, [0, 255] units; empty = not subtracted
  std: tuple[float, ...] = ()  # per channel; empty = not divided
  pixel_mean: FrozenArray | None = None  # [H, W, C] mean image, subtracted instead of `mean`
  gcn: float = (
    0.0  # global contrast normalisation to this L2 norm per image (maxout/NiN: 55); 0 = off
  )
  zca: FrozenArray | None = None  # [D, D] whitening matrix, applied to the flattened (GCN'd) image
  zca_mean: FrozenArray | None = None  # [D]
  # training augmentation
  enabled: bool = True  # False: training images get the evaluation view (augmentation ablation)
  flip: bool = False  # random horizontal flip
  crop_padding: int = 0  # pad by this many pixels, then random crop back (CIFAR: 4)
  crop: str = "none"  # none | resize | inception | scale_jitter
  crop_size: int = 0  # output side of the crop families
  resize: int = 256  # `resize`: shorter side before the random crop (AlexNet 256 -> 224)
  scale_range: tuple[float, float] = (256.0, 512.0)  # `scale_jitter`: [S_min, S_max] (VGG)
  area_range: tuple[float, float] = (0.08, 1.0)  # `inception`: crop area / image area
  aspect_range: tuple[float, float] = (3 / 4, 4 / 3)  # `inception`: crop width / height
  pca_sigma: float = 0.0  # AlexNet lighting noise std (0.1); 0 = off
  pca_eigval: tuple[float, ...] = ()  # RGB covariance eigenvalues, pixel values in [0, 1]
  pca_eigvec: tuple[tuple[float, ...], ...] = ()  # rows = channels, columns = eigenvectors
  brightness: float = 0.0  # colour jitter: factors ~ U[max(0, 1 - b), 1 + b]; 0 = off
  contrast: float = 0.0
  saturation: float = 0.0
  # evaluation view
  eval_resize: int = 0  # shorter side -> this (isotropic); 0 = keep
  eval_crop: int = 0  # centre square crop; 0 = the whole (resized) image

  def train_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of a training image after `preprocess` for uint8 inputs of `image_shape`."""
    h, w, c = padded_shape(image_shape, self.pad_to)
    if not self.enabled:
      return self.eval_shape(image_shape)
    if self.crop != "none":
      return (self.crop_size, self.crop_size, c)
    return (h, w, c)

  def eval_shape(self, image_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an evaluation image: the model's input shape."""
    h, w, c = padded_shape(image_shape, self.pad_to)
    if self.eval_resize:
      h, w = resized_hw(h, w, self.eval_resize)
    if self.eval_crop:
      return (self.eval_crop, self.eval_crop, c)
    return (h, w, c)


def padded_shape(image_shape, pad_to: int) -> tuple[int, int, int]:
  """(H, W, C) after centred zero padding to `pad_to`."""
  h, w, c = image_shape
  return max(h, pad_to), max(w, pad_to), c


def resized_hw(h: int, w: int, shorter: int) -> tuple[int, int]:
  """Size after an isotropic resize of the shorter side to `shorter` (torchvision's Resize(int))."""
  if h <= w:
    return shorter, int(shorter * w / h)
  return int(shorter * h / w), shorter


# ----------------------------------------------------------------------------- resampling
def _resample_one(img: jax.Array, out_hw: tuple[int, int], y0, x0, ch, cw) -> jax.Array:
  """The window [y0, y0+ch) x [x0, x0+cw) (input pixels, continuous) of one HWC image -> out_hw."""
  oh, ow = out_hw
  scale = jnp.stack([oh / ch, ow / cw]).astype(jnp.float32)
  translation = -jnp.stack([y0, x0]).astype(jnp.float32) * scale
  return jax.image.scale_and_translate(
    img, (oh, ow, img.shape[-1]), (0, 1), scale, translation, "linear", antialias=True
  )


def crop_resize(x: jax.Array, out_hw: tuple[int, int], window) -> jax.Array:
  """Windows (y0, x0, h, w) of a batch [B,H,W,C] resampled to `out_hw`. `window` is 4 scalars
  (the same window for every image) or 4 arrays of shape [B] (one window per example)."""
  y0, x0, ch, cw = (jnp.asarray(v, jnp.float32) for v in window)
  if y0.ndim == 0:
    return jax.vmap(lambda img: _resample_one(img, out_hw, y0, x0, ch, cw))(x)
  return jax.vmap(lambda img, a, b, c, d: _resample_one(img, out_hw, a, b, c, d))(x, y0, x0, ch, cw)


# ----------------------------------------------------------------------------- geometric ops
def pad_to_size(x: jax.Array, size: int) -> jax.Array:
  h, w = x.shape[1:3]
  if size <= 0 or (h >= size and w >= size):
    return x
  ph, pw = max(size - h, 0), max(size - w, 0)
  return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def random_flip(x: jax.Array, rng: jax.Array) -> jax.Array:
  """Each image mirrored left-right with probability 1/2."""
  flip = jax.random.bernoulli(rng, 0.5, (x.shape[0], 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1, :], x)


def random_pad_crop(x: jax.Array, rng: jax.Array, padding: int) -> jax.Array:
  """Zero-pad `padding` pixels on each side, then crop a random window of the original size."""
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(xp, offsets)


def resize_random_crop(x: jax.Array, rng: jax.Array, size: int, resize: int) -> jax.Array:
  """AlexNet (Sec. 4.1): shorter side -> `resize`, then a random `size` x `size` crop at integer
  offsets of the resized image (256 -> 224), in one resampling per example."""
  b, h, w, _ = x.shape
  rh, rw = resized_hw(h, w, resize)
  s = resize / min(h, w)
  ky, kx = jax.random.split(rng)
  oy = jax.random.randint(ky, (b,), 0, rh - size + 1).astype(jnp.float32)
  ox = jax.random.randint(kx, (b,), 0, rw - size + 1).astype(jnp.float32)
  side = jnp.full((b,), size / s, jnp.float32)
  return crop_resize(x, (size, size), (oy / s, ox / s, side, side))


def scale_jitter_crop(
  x: jax.Array, rng: jax.Array, size: int, s_min: float, s_max: float
) -> jax.Array:
  """VGG (Sec. 3.1) multi-scale training: isotropically rescale each image so its shorter side is
  S ~ U[s_min, s_max], then crop a random `size` x `size` window."""
  b, h, w, _ = x.shape
  ks, ky, kx = jax.random.split(rng, 3)
  scale = jax.random.uniform(ks, (b,), minval=s_min, maxval=s_max) / min(h, w)
  oy = jax.random.uniform(ky, (b,)) * (h * scale - size)
  ox = jax.random.uniform(kx, (b,)) * (w * scale - size)
  return crop_resize(x, (size, size), (oy / scale, ox / scale, size / scale, size / scale))


def random_resized_crop(
  x: jax.Array,
  rng: jax.Array,
  size: int,
  area_range=(0.08, 1.0),
  aspect_range=(3 / 4, 4 / 3),
  attempts: int = 10,
) -> jax.Array:
  """Inception-style crop (Szegedy et al. 2015 Sec. 6, torchvision's RandomResizedCrop): a window of
  area U[area_range] x image area and aspect ratio log-uniform in `aspect_range`, at a uniform
  position, resized to `size` x `size`. As torchvision, the first of `attempts` draws that fits
  is used, else the whole image with its aspect clamped into the range, centred."""
  b, h, w, _ = x.shape
  ka, kr, ky, kx = jax.random.split(rng, 4)
  area = h * w * jax.random.uniform(ka, (b, attempts), minval=area_range[0], maxval=area_range[1])
  ratio = jnp.exp(
    jax.random.uniform(
      kr, (b, attempts), minval=math.log(aspect_range[0]), maxval=math.log(aspect_range[1])
    )
  )
  cw, ch = jnp.sqrt(area * ratio), jnp.sqrt(area / ratio)
  fits = (cw <= w) & (ch <= h)
  first = jnp.argmax(fits, axis=1)[:, None]
  cw, ch = jnp.take_along_axis(cw, first, 1)[:, 0], jnp.take_along_axis(ch, first, 1)[:, 0]
  ratio_in = w / h
  if ratio_in < aspect_range[0]:
    fw, fh = w, w / aspect_range[0]
  elif ratio_in > aspect_range[1]:
    fw, fh = h * aspect_range[1], h
  else:
    fw, fh = w, h
  ok = fits.any(axis=1)
  ch, cw = jnp.where(ok, ch, fh), jnp.where(ok, cw, fw)
  y0 = jnp.where(ok, jax.random.uniform(ky, (b,)) * (h - ch), (h - fh) / 2)
  x0 = jnp.where(ok, jax.random.uniform(kx, (b,)) * (w - cw), (w - fw) / 2)
  return crop_resize(x, (size, size), (y0, x0, ch, cw))


def center_window(h: int, w: int, resize: int, crop: int) -> tuple[float, float, float, float]:
  """Input-pixel window of the centre `crop` crop after resizing the shorter side to `resize`
  (0 = no resize), offsets rounded as torchvision's CenterCrop."""
  s = resize / min(h, w) if resize else 1.0
  rh, rw = resized_hw(h, w, resize) if resize else (h, w)
  if crop > min(rh, rw):
    raise ValueError(f"centre crop {crop} is larger than the {rh}x{rw} image")
  oy, ox = int(round((rh - crop) / 2.0)), int(round((rw - crop) / 2.0))
  return oy / s, ox / s, crop / s, crop / s


def eval_view(x: jax.Array, resize: int = 0, crop: int = 0) -> jax.Array:
  """Evaluation view: shorter side -> `resize`, then the centre `crop` crop; the full image when
  both are 0 (CIFAR); the whole image resized when only `resize` is set."""
  h, w = x.shape[1:3]
  if not resize and not crop:
    return x
  if crop:
    return crop_resize(x, (crop, crop), center_window(h, w, resize, crop))
  rh, rw = resized_hw(h, w, resize)
  return crop_resize(x, (rh, rw), (0.0, 0.0, float(h), float(w)))


def resize_shorter(x: jax.Array, size: int) -> jax.Array:
  """The whole image, shorter side -> `size` (VGG dense evaluation at scale Q)."""
  return eval_view(x, resize=size, crop=0)


def ten_crop_windows(h: int, w: int, resize: int, crop: int) -> np.ndarray:
  """[5, 4] input-pixel windows (y0, x0, h, w) of the 4 corner crops and the centre crop of size
  `crop` after resizing the shorter side to `resize` (AlexNet Sec. 4.1 / ResNet Sec. 3.4)."""
  s = resize / min(h, w) if resize else 1.0
  rh, rw = resized_hw(h, w, resize) if resize else (h, w)
  if crop > min(rh, rw):
    raise ValueError(f"crop {crop} is larger than the {rh}x{rw} image")
  cy, cx = int(round((rh - crop) / 2.0)), int(round((rw - crop) / 2.0))
  offsets = [(0, 0), (0, rw - crop), (rh - crop, 0), (rh - crop, rw - crop), (cy, cx)]
  return np.array([(oy / s, ox / s, crop / s, crop / s) for oy, ox in offsets], np.float32)


# ----------------------------------------------------------------------------- photometric ops
def _gray(x: jax.Array) -> jax.Array:
  if x.shape[-1] != 3:
    return jnp.mean(x, axis=-1, keepdims=True)
  return jnp.tensordot(x, jnp.array([0.299, 0.587, 0.114], x.dtype), axes=[[-1], [0]])[..., None]


def color_jitter(
  x: jax.Array,
  rng: jax.Array,
  brightness: float = 0.0,
  contrast: float = 0.0,
  saturation: float = 0.0,
) -> jax.Array:
  """torchvision's ColorJitter on [0, 255] floats: each factor ~ U[max(0, 1-a), 1+a] per example;
  brightness scales, contrast blends with the mean grey level, saturation with the grey image
  (a no-op on one channel); clipped to [0, 255] after each. Fixed order (torchvision permutes)."""
  b = x.shape[0]
  kb, kc, ks = jax.random.split(rng, 3)
  factor = lambda k, a: jax.random.uniform(
    k, (b, 1, 1, 1), minval=max(0.0, 1.0 - a), maxval=1.0 + a
  )
  if brightness:
    x = jnp.clip(x * factor(kb, brightness), 0.0, 255.0)
  if contrast:
    m = jnp.mean(_gray(x), axis=(1, 2, 3), keepdims=True)
    x = jnp.clip(m + (x - m) * factor(kc, contrast), 0.0, 255.0)
  if saturation and x.shape[-1] == 3:
    g = _gray(x)
    x = jnp.clip(g + (x - g) * factor(ks, saturation), 0.0, 255.0)
  return x


def pca_lighting(x: jax.Array, rng: jax.Array, sigma: float, eigval, eigvec) -> jax.Array:
  """AlexNet Sec. 4.1: add [p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T to every pixel of an image, a_i ~
  N(0, sigma) drawn per image; l_i, p_i the eigenvalues/vectors of the RGB covariance of the
  training pixels in [0, 1]. `x` is in [0, 255] units (the shift is scaled by 255); not clipped."""
  eigval = jnp.asarray(eigval, jnp.float32)
  eigvec = jnp.asarray(eigvec, jnp.float32)
  alpha = sigma * jax.random.normal(rng, (x.shape[0], eigval.shape[0]))
  shift = (alpha * eigval) @ eigvec.T  # [B, C]
  return x + 255.0 * shift[:, None, None, :]


# ----------------------------------------------------------------------------- normalisation
def global_contrast_normalize(x: jax.Array, scale: float) -> jax.Array:
  """Per image: subtract its mean, rescale to L2 norm `scale` (pylearn2's GCN as the maxout and NiN
  CIFAR preprocessing: scale 55, no sqrt bias)."""
  x = x - jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  norm = jnp.sqrt(jnp.sum(jnp.square(x), axis=(1, 2, 3), keepdims=True)) / scale
  return x / jnp.where(norm < 1e-8, 1.0, norm)


def normalize(images: jax.Array, cfg: Preprocess) -> jax.Array:
  """Float [0, 255] images -> GCN / ZCA / mean / std normalised, then padded to `pad_to`."""
  x = images.astype(jnp.float32)
  if cfg.gcn:
    x = global_contrast_normalize(x, cfg.gcn)
  if cfg.zca is not None:
    shape = x.shape
    flat = x.reshape(shape[0], -1) - jnp.asarray(cfg.zca_mean.array)
    x = jnp.dot(flat, jnp.asarray(cfg.zca.array), precision=jax.lax.Precision.HIGHEST).reshape(
      shape
    )
  if cfg.pixel_mean is not None:
    x = x - jnp.asarray(cfg.pixel_mean.array)
  elif cfg.mean:
    x = x - jnp.asarray(cfg.mean, jnp.float32)
  if cfg.std:
    x = x / jnp.asarray(cfg.std, jnp.float32)
  return pad_to_size(x, cfg.pad_to)  # after normalising, so the pad is the mean (zero), as LeNet's


def preprocess(
  images: jax.Array, cfg: Preprocess, *, train: bool, rng: jax.Array | None, dtype=jnp.float32
) -> jax.Array:
  """uint8 [B,H,W,C] -> normalised float [B,H',W',C]: training augmentation when `train` (and
  `cfg.enabled`), else the evaluation view."""
  x = images.astype(jnp.float32)
  augment = train and cfg.enabled and rng is not None
  if augment:
    flip_rng, crop_rng = jax.random.split(rng)
    if cfg.brightness or cfg.contrast or cfg.saturation:
      x = color_jitter(x, jax.random.fold_in(rng, 1), cfg.brightness, cfg.contrast, cfg.saturation)
    if cfg.pca_sigma:
      x = pca_lighting(x, jax.random.fold_in(rng, 2), cfg.pca_sigma, cfg.pca_eigval, cfg.pca_eigvec)
  x = normalize(x, cfg)
  if not augment:
    return eval_view(x, cfg.eval_resize, cfg.eval_crop).astype(dtype)
  if cfg.crop == "resize":
    x = resize_random_crop(x, crop_rng, cfg.crop_size, cfg.resize)
  elif cfg.crop == "inception":
    x = random_resized_crop(x, crop_rng, cfg.crop_size, cfg.area_range, cfg.aspect_range)
  elif cfg.crop == "scale_jitter":
    x = scale_jitter_crop(x, crop_rng, cfg.crop_size, *cfg.scale_range)
  elif cfg.crop_padding:
    x = random_pad_crop(x, crop_rng, cfg.crop_padding)
  if cfg.flip:
    x = random_flip(x, flip_rng)
  return x.astype(dtype)


# ----------------------------------------------------------------------------- statistics (host, numpy)
def channel_stats(
  images: np.ndarray, max_images: int = 10_000
) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std in [0, 255] units over (up to `max_images` of) a uint8 split."""
  x = images[:max_images].astype(np.float64)
  mean = x.mean(axis=(0, 1, 2))
  std = x.std(axis=(0, 1, 2))
  return tuple(float(m) for m in mean), tuple(float(max(s, 1e-3)) for s in std)


def pixel_mean(images: np.ndarray, chunk: int = 5000) -> np.ndarray:
  """The mean image [H, W, C] (float, [0, 255] units) over the whole training split."""
  total = np.zeros(images.shape[1:], np.float64)
  for i in range(0, len(images), chunk):
    total += images[i : i + chunk].astype(np.float64).sum(axis=0)
  return total / len(images)


def pca_rgb(
  images: np.ndarray, max_pixels: int = 2_000_000
) -> tuple[tuple[float, ...], tuple[tuple[float, ...], ...]]:
  """Eigenvalues (descending) and eigenvectors (columns) of the covariance of the pixel colours,
  values in [0, 1] (AlexNet Sec. 4.1), over an evenly strided subset of at most `max_pixels`."""
  c = images.shape[-1]
  n_img = max(1, min(len(images), max_pixels // max(1, images.shape[1] * images.shape[2])))
  step = max(1, len(images) // n_img)
  pixels = images[::step][:n_img].reshape(-1, c).astype(np.float64) / 255.0
  cov = np.atleast_2d(np.cov(pixels, rowvar=False))
  val, vec = np.linalg.eigh(cov)
  order = np.argsort(val)[::-1]
  val, vec = np.maximum(val[order], 0.0), vec[:, order]
  return tuple(float(v) for v in val), tuple(tuple(float(v) for v in row) for row in vec)


def _gcn_np(x: np.ndarray, scale: float) -> np.ndarray:
  x = x - x.mean(axis=1, keepdims=True)
  norm = np.sqrt(np.square(x).sum(axis=1, keepdims=True)) / scale
  return x / np.where(norm < 1e-8, 1.0, norm)


def zca_fit(
  images: np.ndarray, gcn: float = 0.0, bias: float = 0.1, chunk: int = 5000, max_dim: int = 12_288
) -> tuple[np.ndarray, np.ndarray]:
  """ZCA whitening (pylearn2's, as maxout/NiN): mean m and W = V diag(1/sqrt(l + bias)) V^T from
  the covariance of the flattened training images (after GCN when `gcn`), so (x - m) W is white."""
  n = len(images)
  d = int(np.prod(images.shape[1:]))
  if d > max_dim:
    raise ValueError(
      f"ZCA over {d}-dimensional images needs a {d}x{d} matrix; it is meant for "
      f"CIFAR-size data (32x32x3 = 3072)"
    )
  total = np.zeros(d, np.float64)
  gram = np.zeros((d, d), np.float64)
  for i in range(0, n, chunk):
    x = images[i : i + chunk].reshape(-1, d).astype(np.float32)
    if gcn:
      x = _gcn_np(x, gcn).astype(np.float32)
    total += x.sum(axis=0, dtype=np.float64)
    gram += (x.T @ x).astype(np.float64)
  mean = total / n
  cov = gram / n - np.outer(mean, mean)
  val, vec = np.linalg.eigh(cov)
  w = (vec * (1.0 / np.sqrt(np.maximum(val, 0.0) + bias))) @ vec.T
  return w.astype(np.float32), mean.astype(np.float32)


# ----------------------------------------------------------------------------- from the config
def preprocess_config(data, ds, save_to: str | None = None) -> Preprocess:
  """`config.data` + the loaded dataset -> Preprocess. Statistics come from `metadata.py` for a
  known TFDS dataset with `data.stats="auto"` (or any source with "metadata"), else from the
  training split. With `save_to` (the workdir), process 0 writes the result to
  `save_to/preprocess.npz` so that `classic_cnns.predict` needs no training data."""
  from classic_cnns.errors import ConfigError
  from classic_cnns.data import metadata

  a = data.augment
  image_shape = tuple(ds.image_shape)
  c = image_shape[-1]
  from classic_cnns.data import streaming

  streamed = streaming.is_streamed(ds.train)
  canvas = (
    streamed and data.streaming.augment == "canvas"
  )  # host gives fixed squares: all ops apply
  use_meta = data.stats == "metadata" or (data.stats == "auto" and data.source == "tfds")
  info = metadata.get(data.name) if use_meta else None
  if data.stats == "metadata" and metadata.channel_stats(data.name, c) is None:
    raise ConfigError(
      f"config.data.stats='metadata': no {c}-channel statistics for data.name={data.name!r} in "
      f"classic_cnns/data/metadata.py (known: {', '.join(metadata.DATASETS)})"
    )
  if streamed and not canvas and (data.normalize == "pixel" or data.zca or a.crop != "none"):
    raise ConfigError(
      f"streamed data is cropped on the host in data.streaming.augment={data.streaming.augment!r} "
      f"mode; data.normalize='pixel', data.zca and data.augment.crop need fixed-size images: "
      f"set config.data.streaming.augment=canvas"
    )
  sample = []

  def images():
    if not streamed:
      return ds.train.images
    if not sample:  # the host's view of `stats_images` training images
      s = data.streaming
      side = streaming.streamed_shape(s)[0]
      sample.append(streaming.sample_images(ds.train, s.resize, side, s.stats_images))
    return sample[0]

  mean = std = ()
  pixel = None
  if data.normalize in ("channel", "pixel"):
    stats = metadata.channel_stats(data.name, c) if info is not None else None
    if stats is None:
      stats = channel_stats(images())
    mean, std = stats
    if data.normalize == "pixel":
      pixel, mean = FrozenArray(pixel_mean(images())), ()
    if not data.divide_std:
      std = ()
  zca = zca_mean = None
  if data.zca:
    try:
      w, m = zca_fit(images(), data.gcn, data.zca_bias)
    except ValueError as e:
      raise ConfigError(f"config.data.zca: {e}") from None
    zca, zca_mean = FrozenArray(w), FrozenArray(m)

  pca_val, pca_vec, pca_sigma = (), (), 0.0
  if a.enabled and a.pca_lighting > 0:
    pca_sigma = float(a.pca_lighting)
    meta = metadata.get(data.name)
    if meta is not None and meta.pca_eigval and (use_meta or streamed) and c == 3:
      pca_val, pca_vec = meta.pca_eigval, meta.pca_eigvec
    else:
      pca_val, pca_vec = pca_rgb(images())

  h, w, _ = padded_shape(image_shape, data.pad_to)
  crop_size = a.crop_size or min(h, w)
  eval_crop, eval_resize = data.eval_crop, data.eval_resize
  preset = PRESETS.get(data.get("eval_preset", ""))
  if preset is not None:  # a weight source's view: its crop ratio and mean/std (0-255 units)
    mean, std = tuple(255.0 * m for m in preset.mean), tuple(255.0 * s for s in preset.std)
    eval_crop = eval_crop or (crop_size if a.crop != "none" else preset.crop)
    eval_resize = eval_resize or preset_resize(data.eval_preset, eval_crop)
  if a.crop != "none":  # ImageNet-style: evaluate on the centre crop of the training crop size
    eval_crop = eval_crop or crop_size
    if not eval_resize:
      eval_resize = {"resize": a.resize, "scale_jitter": int(a.scale_min)}.get(
        a.crop, round(eval_crop * 8 / 7)
      )
  prep = Preprocess(
    pad_to=data.pad_to,
    mean=tuple(mean),
    std=tuple(std),
    pixel_mean=pixel,
    gcn=float(data.gcn),
    zca=zca,
    zca_mean=zca_mean,
    enabled=bool(a.enabled),
    flip=bool(a.flip),
    crop_padding=int(a.crop_padding),
    crop=a.crop,
    crop_size=int(crop_size),
    resize=int(a.resize),
    scale_range=(float(a.scale_min), float(a.scale_max)),
    area_range=(float(a.area_min), float(a.area_max)),
    aspect_range=(float(a.aspect_min), float(a.aspect_max)),
    pca_sigma=pca_sigma,
    pca_eigval=tuple(pca_val),
    pca_eigvec=tuple(tuple(r) for r in pca_vec),
    brightness=float(a.brightness),
    contrast=float(a.contrast),
    saturation=float(a.saturation),
    eval_resize=int(eval_resize),
    eval_crop=int(eval_crop),
  )
  check_shapes(prep, image_shape)
  if save_to and jax.process_index() == 0:
    save_preprocess(prep, os.path.join(save_to, "preprocess.npz"), image_shape)
  return prep


def check_shapes(prep: Preprocess, image_shape: tuple[int, ...]) -> None:
  """ConfigError unless the crops fit the images and training and evaluation shapes agree."""
  from classic_cnns.errors import ConfigError

  h, w, _ = padded_shape(image_shape, prep.pad_to)
  short = min(h, w)
  if prep.crop == "resize" and prep.crop_size > prep.resize:
    raise ConfigError(
      f"config.data.augment.crop_size={prep.crop_size} exceeds augment.resize={prep.resize}"
    )
  if prep.crop == "scale_jitter" and prep.crop_size > prep.scale_range[0]:
    raise ConfigError(
      f"config.data.augment.crop_size={prep.crop_size} exceeds augment.scale_min="
      f"{prep.scale_range[0]:g}"
    )
  if prep.crop == "inception" and prep.crop_size <= 0:
    raise ConfigError("config.data.augment.crop='inception' needs a positive crop_size")
  eval_side = min(resized_hw(h, w, prep.eval_resize)) if prep.eval_resize else short
  if prep.eval_crop > eval_side:
    raise ConfigError(
      f"config.data.eval_crop={prep.eval_crop} exceeds the {eval_side}-pixel shorter side of "
      f"the evaluation image (image {h}x{w}, eval_resize={prep.eval_resize})"
    )
  train_shape, eval_shape = prep.train_shape(image_shape), prep.eval_shape(image_shape)
  if train_shape != eval_shape:
    raise ConfigError(
      f"training images are {train_shape[0]}x{train_shape[1]} but evaluation images "
      f"{eval_shape[0]}x{eval_shape[1]} (config.data.eval_resize={prep.eval_resize}, "
      f"eval_crop={prep.eval_crop}); make them agree"
    )


# ----------------------------------------------------------------------------- saved with the run
_ARRAYS = ("pixel_mean", "zca", "zca_mean")


def save_preprocess(prep: Preprocess, path: str, image_shape: tuple[int, ...]) -> None:
  """Writes the preprocessing (scalars as JSON, constants as arrays) to an .npz (no pickle)."""
  fields = {
    f.name: getattr(prep, f.name) for f in dataclasses.fields(prep) if f.name not in _ARRAYS
  }
  arrays = {k: getattr(prep, k).array for k in _ARRAYS if getattr(prep, k) is not None}
  meta = json.dumps({"fields": fields, "image_shape": list(image_shape)})
  tmp = path + ".tmp.npz"
  np.savez(tmp, meta=np.array(meta), **arrays)
  os.replace(tmp, path)


def _tuples(v):
  return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def load_preprocess(path: str) -> tuple[Preprocess, tuple[int, int, int]]:
  """(Preprocess, training image shape) as written by `save_preprocess`; DatasetError (one line) for
  a file that is truncated, corrupt or of another version."""
  import zipfile
  import zlib
  from classic_cnns.data.common import DatasetError

  try:
    with np.load(path, allow_pickle=False) as f:
      meta = json.loads(str(f["meta"]))
      arrays = {k: FrozenArray(f[k]) for k in _ARRAYS if k in f.files}
    fields = {k: _tuples(v) for k, v in meta["fields"].items()}
    image_shape = tuple(int(d) for d in meta["image_shape"])
    if len(image_shape) != 3:
      raise ValueError(f"image_shape {image_shape}")
    return Preprocess(**fields, **arrays), image_shape
  except (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
  ) as e:
    why = " ".join(str(e).split())[:150] or type(e).__name__
    raise DatasetError(
      f"cannot read {path} (truncated or corrupt: {why}); delete it to refit the "
      f"preprocessing from the training data, or rerun the training command"
    ) from None
