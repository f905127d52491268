"""The host-side TensorFlow image ops of the streamed pipelines (image folders and TFDS): decode,
the training crops of `config.data.streaming.augment` and the evaluation view. TensorFlow is
imported on first use and never sees an accelerator."""

from __future__ import annotations

MODES = ("inception", "resize_crop", "scale_jitter", "canvas")


def _tf():
  """TensorFlow, imported on first use (quiet: its C++ INFO/WARNING lines would bury our one-line
  errors; set TF_CPP_MIN_LOG_LEVEL yourself to see them), with no accelerator visible to it."""
  import os

  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf

  tf.config.set_visible_devices([], "GPU")  # TF must never take accelerator memory
  return tf


def _decode(tf, path, channels):
  return tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)


def _resize_shorter(tf, img, size):
  h, w = tf.shape(img)[0], tf.shape(img)[1]
  scale = tf.cast(size, tf.float32) / tf.cast(tf.minimum(h, w), tf.float32)
  new = tf.cast(tf.round(tf.cast(tf.stack([h, w]), tf.float32) * scale), tf.int32)
  return tf.image.resize(img, tf.maximum(new, size), antialias=True)


def train_transform(tf, img, seed, mode: str, resize: int, crop: int, scale_range=(256, 512)):
  """uint8 HWC -> uint8 crop x crop x C (canvas: resize x resize), stateless random ops keyed by
  `seed` (int32[2])."""
  if mode == "canvas":
    return eval_transform(tf, img, resize, resize)
  seeds = tf.random.experimental.stateless_split(seed, 3)
  if mode == "scale_jitter":
    side = tf.random.stateless_uniform(
      [], seeds[2], scale_range[0], scale_range[1] + 1, dtype=tf.int32
    )
    img = _resize_shorter(tf, img, side)
    img = tf.image.stateless_random_crop(img, (crop, crop, tf.shape(img)[2]), seed=seeds[0])
  elif mode == "inception":
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.shape(img),
      tf.zeros([0, 0, 4], tf.float32),
      seed=seeds[0],
      area_range=(0.08, 1.0),
      aspect_ratio_range=(3 / 4, 4 / 3),
      max_attempts=10,
      use_image_if_no_bounding_boxes=True,
    )
    img = tf.image.resize(tf.slice(img, begin, size), (crop, crop), antialias=True)
  elif mode == "resize_crop":
    img = _resize_shorter(tf, img, resize)
    img = tf.image.stateless_random_crop(img, (crop, crop, tf.shape(img)[2]), seed=seeds[0])
  else:
    raise ValueError(f"unknown streaming augmentation {mode!r}; choose one of {', '.join(MODES)}")
  img = tf.image.stateless_random_flip_left_right(img, seed=seeds[1])
  return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def eval_transform(tf, img, resize: int, crop: int):
  img = _resize_shorter(tf, img, resize)
  h, w = tf.shape(img)[0], tf.shape(img)[1]
  img = tf.image.crop_to_bounding_box(img, (h - crop) // 2, (w - crop) // 2, crop, crop)
  return tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)


def streamed_shape(streaming_config, channels: int = 3) -> tuple[int, int, int]:
  """The uint8 image shape the host hands to jit: the crop, or the canvas square in canvas mode."""
  side = streaming_config.resize if streaming_config.augment == "canvas" else streaming_config.crop
  return (int(side), int(side), channels)


def train_options(streaming_config, channels: int) -> dict:
  """The keyword arguments of the streamed training batches (image folder or TFDS) of
  `config.data.streaming`."""
  s = streaming_config
  return dict(
    mode=s.augment,
    resize=s.resize,
    crop=s.crop,
    channels=channels,
    threads=s.threads,
    scale_range=(s.scale_min, s.scale_max),
  )


def eval_options(streaming_config, canvas: int = 0) -> dict:
  """(resize, crop, threads) of a streamed evaluation pass: the host's evaluation view (shorter side
  -> resize, centre crop; the canvas square in canvas mode) or, with `canvas`, the central canvas x
  canvas square of the image rescaled to that shorter side."""
  s = streaming_config
  side = canvas or streamed_shape(s)[0]
  return dict(resize=canvas or s.resize, crop=side, threads=s.threads)
