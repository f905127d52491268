"""Input-pipeline benchmarks, on whatever machine runs them:

    python -m classic_cnns.benchmark_data --cifar_folder=/tmp/cifar10_jpeg [--json=out.json]

1. CIFAR pipeline (pad-4 crop + flip + normalise, batch 128), img/s:
   host tf.data (uint8 arrays -> map crop/flip -> batch), the trainer's host path (numpy gather ->
   device, augment in jit) and its device-resident path (gather + augment in jit).
2. ImageNet-style streaming pipeline (JPEG decode + inception crop to 224 + flip, batch 64), img/s,
   on a folder of CIFAR images upscaled to 256x256 JPEGs (written once to --jpeg_cache).
3. Share of a CIFAR ResNet-20 training step (batch 128) spent waiting for data: wall time of N
   steps fed by the device-resident pipeline vs the same N steps on one pre-made batch.
Medians of --repeats timed repeats after a warm-up.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from absl import flags

from classic_cnns import cli

_CIFAR = cli.define_once(
  flags.DEFINE_string,
  "cifar_folder",
  "/tmp/cifar10_jpeg",
  "Extracted CIFAR-10 image folder (train/<class>/).",
)
_JPEG_CACHE = cli.define_once(
  flags.DEFINE_string,
  "jpeg_cache",
  "/tmp/classic_cnns_jpeg256",
  "Where the upscaled JPEG folder goes.",
)
_N_IMAGES = cli.define_once(
  flags.DEFINE_integer, "images", 10_000, "CIFAR images to load for the in-memory pipelines."
)
_REPEATS = cli.define_once(flags.DEFINE_integer, "repeats", 5, "Timed repeats (median reported).")
_STEPS = cli.define_once(flags.DEFINE_integer, "steps", 20, "Batches per timed repeat.")
_JSON = cli.define_once(flags.DEFINE_string, "json", None, "Write the numbers here.")


def _median_rate(fn, images_per_call: int, repeats: int) -> float:
  fn()  # warm-up (compilation, caches)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return images_per_call / statistics.median(times)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  for flag in (_N_IMAGES, _REPEATS, _STEPS):
    if flag.value <= 0:
      cli.fail(f"--{flag.name} must be positive, got {flag.value}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  cli.set_xla_flags("auto")  # before JAX starts its backends
  import jax
  import jax.numpy as jnp
  import numpy as np
  from classic_cnns import parallel
  from classic_cnns import build
  from classic_cnns import steps as train_steps
  from classic_cnns.config import base_config
  from classic_cnns.data import augment, pipeline, sources, streaming

  if not os.path.isdir(os.path.join(_CIFAR.value, "train")):
    cli.fail(
      f"{_CIFAR.value}/train not found; extract it: tar xzf ../shared/datasets/cifar10_jpeg_train.tar.gz -C /tmp"
    )
  results = {
    "devices": str(jax.devices()),
    "cpu_count": os.cpu_count(),
    "load_average": os.getloadavg(),
  }
  steps, repeats, mesh = _STEPS.value, _REPEATS.value, parallel.make_mesh()

  # --- 1. CIFAR in-memory pipelines ---------------------------------------------------------
  files, labels, _ = streaming.list_image_folder(_CIFAR.value, "train")
  pick = np.random.default_rng(0).permutation(len(files))[: _N_IMAGES.value]
  from PIL import Image

  images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[pick]])
  split = sources.Split(images, labels[pick])
  prep = augment.Preprocess(
    flip=True, crop_padding=4, mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7)
  )
  batch = 128

  aug = jax.jit(lambda x, key: augment.preprocess(x, prep, train=True, rng=key))
  for name, on_device in (("trainer_host_path", False), ("trainer_device_resident", True)):
    tb = pipeline.TrainBatches(split, batch, 0, mesh, on_device)
    counter = iter(range(10**9))

    def run():
      out = None
      for _ in range(steps):
        b = tb.batch(next(counter))
        out = aug(b["image"], jax.random.PRNGKey(0))
      out.block_until_ready()

    results[f"cifar_{name}_img_per_s"] = _median_rate(run, steps * batch, repeats)

  tf = streaming._tf()  # pylint: disable=protected-access

  def tf_augment(x, y):
    x = tf.image.pad_to_bounding_box(x, 4, 4, 40, 40)
    x = tf.image.random_crop(x, (32, 32, 3))
    x = tf.image.random_flip_left_right(x)
    return (tf.cast(x, tf.float32) - prep.mean) / prep.std, y

  ds = (
    tf.data.Dataset.from_tensor_slices((split.images, split.labels))
    .repeat()
    .map(tf_augment, num_parallel_calls=tf.data.AUTOTUNE)
    .batch(batch)
    .prefetch(2)
  )
  it = ds.as_numpy_iterator()

  def run_tf():
    for _ in range(steps):
      next(it)

  results["cifar_host_tfdata_per_image_img_per_s"] = _median_rate(run_tf, steps * batch, repeats)

  # --- 2. ImageNet-style streaming --------------------------------------------------------
  cache = os.path.join(_JPEG_CACHE.value, "train", "all")
  if not os.path.isdir(cache):
    os.makedirs(cache)
    for i, f in enumerate(files[pick[:2000]]):
      Image.open(f).convert("RGB").resize((256, 256), Image.BICUBIC).save(
        os.path.join(cache, f"{i:05d}.jpg"), quality=90
      )
  jfiles, jlabels, _ = streaming.list_image_folder(_JPEG_CACHE.value, "train")
  sb = streaming.StreamingTrainBatches(
    jfiles, jlabels, 64, 0, mesh, mode="inception", resize=256, crop=224
  )
  n_stream = min(steps, sb.steps_per_epoch - 1)
  start = iter(range(0, 10**9, n_stream))

  def run_stream():
    s = next(start) % (sb.steps_per_epoch * 4)
    for _, b in sb.iterate(s, s + n_stream):
      pass
    b["image"].block_until_ready()

  results["imagenet_style_streaming_img_per_s"] = _median_rate(run_stream, n_stream * 64, repeats)

  # --- 3. data-wait share of a ResNet-20 step ----------------------------------------------
  c = base_config()
  c.model.name, c.model.num_classes, c.model.norm = "resnet20", 10, "batch"
  c.batch_size = batch
  backend = build.select_backend(c)
  model = build.build_model(c, jax.device_count(), backend.kernels)
  from classic_cnns import optim

  sched = optim.make_schedule(c, 100, 1000)
  abstract = jax.eval_shape(
    lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), train=False)
  )
  state = build.create_train_state(
    model, optim.make_optimizer(c, sched, abstract["params"]), (32, 32, 3), 0, mesh, backend
  )
  rep, data = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  step = jax.jit(
    train_steps.make_train_step(model, c, prep, sched, jnp.float32),
    donate_argnums=0,
    in_shardings=(rep, data),
    out_shardings=(rep, rep),
  )
  tb = pipeline.TrainBatches(split, batch, 0, mesh, True)
  fixed = tb.batch(0)
  counter = iter(range(10**9))
  holder = {"state": state}

  def run_fed(get):
    def run():
      s, m = holder["state"], None
      for _ in range(steps):
        s, m = step(s, get())
      jax.block_until_ready(m)
      holder["state"] = s

    return run

  fed = _median_rate(run_fed(lambda: tb.batch(next(counter))), steps * batch, repeats)
  bare = _median_rate(run_fed(lambda: fixed), steps * batch, repeats)
  results["resnet20_train_img_per_s_with_pipeline"] = fed
  results["resnet20_train_img_per_s_fixed_batch"] = bare
  results["resnet20_data_wait_share"] = max(0.0, 1 - fed / bare)

  results["load_average_after"] = os.getloadavg()
  for k, v in results.items():
    if k.endswith("_share"):
      print(f"{k}: {100 * v:.1f}%")
    else:
      print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
