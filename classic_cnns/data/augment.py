"""Preprocessing and augmentation that run inside the jit-compiled step, with JAX RNG.

Batches arrive as uint8 [B, H, W, C]; `preprocess` pads, augments (training only) and normalises
them on the accelerator, so the host only moves bytes. Every op is per-example and keyed by the
step's RNG, so a step's augmentation is a pure function of (seed, step).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Preprocess:
  pad_to: int = 0  # zero-pad to this square size (centred)
  flip: bool = False  # random horizontal flip (training)
  crop_padding: int = 0  # pad by this many pixels, then random crop back (training; CIFAR: 4)
  mean: tuple[float, ...] = ()  # per-channel, in [0, 255] units; empty = no normalisation
  std: tuple[float, ...] = ()


def pad_to_size(x: jax.Array, size: int) -> jax.Array:
  h, w = x.shape[1:3]
  if size <= 0 or (h >= size and w >= size):
    return x
  ph, pw = max(size - h, 0), max(size - w, 0)
  return jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def random_flip(x: jax.Array, rng: jax.Array) -> jax.Array:
  flip = jax.random.bernoulli(rng, 0.5, (x.shape[0], 1, 1, 1))
  return jnp.where(flip, x[:, :, ::-1, :], x)


def random_pad_crop(x: jax.Array, rng: jax.Array, padding: int) -> jax.Array:
  """Zero-pad `padding` pixels on each side, then crop a random window of the original size."""
  b, h, w, c = x.shape
  xp = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  offsets = jax.random.randint(rng, (b, 2), 0, 2 * padding + 1)
  crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c))
  return jax.vmap(crop)(xp, offsets)


def preprocess(images: jax.Array, cfg: Preprocess, *, train: bool, rng: jax.Array | None,
               dtype=jnp.float32) -> jax.Array:
  """uint8 [B,H,W,C] -> normalised float [B,H',W',C]."""
  x = images.astype(jnp.float32)
  if cfg.mean:
    x = (x - jnp.asarray(cfg.mean, jnp.float32)) / jnp.asarray(cfg.std, jnp.float32)
  x = pad_to_size(x, cfg.pad_to)  # after normalising, so the pad is the mean (zero), as LeNet's
  if train:
    flip_rng, crop_rng = jax.random.split(rng)
    if cfg.crop_padding:
      x = random_pad_crop(x, crop_rng, cfg.crop_padding)
    if cfg.flip:
      x = random_flip(x, flip_rng)
  return x.astype(dtype)


def channel_stats(images: np.ndarray, max_images: int = 10_000) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Per-channel mean and std in [0, 255] units over (up to `max_images` of) a uint8 split."""
  x = images[:max_images].astype(np.float64)
  mean = x.mean(axis=(0, 1, 2))
  std = x.std(axis=(0, 1, 2))
  return tuple(float(m) for m in mean), tuple(float(max(s, 1e-3)) for s in std)
