import numpy as np
import pytest

pytest.importorskip("tensorflow")

from classic_cnns import parallel
from classic_cnns.data import streaming
from classic_cnns.data.sources import DatasetError


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
  from PIL import Image

  root = tmp_path_factory.mktemp("jpegs")
  rng = np.random.default_rng(0)
  for split, n in (("train", 12), ("val", 5)):
    for cls in ("a", "b"):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        size = (40 + i, 50 - i)
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(d / f"{i}.jpg")
  return root


@pytest.mark.parametrize("mode", streaming.MODES)
def test_streaming_batches_deterministic_and_resumable(jpeg_folder, mode):
  files, labels, classes = streaming.list_image_folder(str(jpeg_folder), "train")
  assert classes == ["a", "b"] and len(files) == 24
  mesh = parallel.make_mesh()
  make = lambda: streaming.StreamingTrainBatches(
    files, labels, 4, seed=1, mesh=mesh, mode=mode, resize=36, crop=32, scale_range=(32, 44)
  )
  a = [np.asarray(b["image"]) for _, b in make().iterate(0, 8)]
  b = [np.asarray(b["image"]) for _, b in make().iterate(0, 8)]
  side = 36 if mode == "canvas" else 32
  assert a[0].shape == (4, side, side, 3) and a[0].dtype == np.uint8
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  resumed = [np.asarray(b["image"]) for _, b in make().iterate(5, 8)]
  for x, y in zip(a[5:], resumed):
    np.testing.assert_array_equal(x, y)
  labels_epoch0 = np.concatenate([np.asarray(b["label"]) for _, b in make().iterate(0, 6)])
  assert sorted(labels_epoch0) == sorted(labels)


def test_streaming_eval_covers_every_image_once(jpeg_folder):
  files, labels, _ = streaming.list_image_folder(str(jpeg_folder), "val")
  batches = list(
    streaming.streaming_eval_batches(files, labels, 4, parallel.make_mesh(), resize=36, crop=32)
  )
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert mask.sum() == 10 and len(mask) == 12 and batches[0]["image"].shape == (4, 32, 32, 3)


def test_missing_split(jpeg_folder):
  with pytest.raises(DatasetError, match="not found"):
    streaming.list_image_folder(str(jpeg_folder), "test")


def test_trainer_streams_a_jpeg_folder(jpeg_folder, tmp_path):
  from classic_cnns import train
  from classic_cnns.config import base_config, validate_config

  c = base_config()
  c.model.name, c.model.num_classes = "lenet5", 2
  c.data.source, c.data.path = "folder", str(jpeg_folder)
  c.data.streaming.enabled, c.data.streaming.resize, c.data.streaming.crop = True, 36, 32
  c.batch_size, c.num_steps, c.log_every_steps, c.eval_batch_size = 4, 8, 4, 4
  validate_config(c, 1)
  r = train.train_and_evaluate(c, str(tmp_path))
  assert r.final_step == 8 and r.test["count"] == 10  # every val image once


def test_canvas_is_the_central_square_and_scale_jitter_varies_the_scale():
  tf = streaming._tf()  # pylint: disable=protected-access
  img = np.arange(40 * 60 * 3, dtype=np.int64).reshape(40, 60, 3) % 251
  canvas = streaming.train_transform(
    tf, tf.constant(img.astype(np.uint8)), tf.constant([1, 2], tf.int64), "canvas", 40, 32
  ).numpy()
  np.testing.assert_array_equal(
    canvas, img[:, 10:50].astype(np.uint8)
  )  # no resize at 40: exact centre square
  views = {
    streaming.train_transform(
      tf,
      tf.constant(img.astype(np.uint8)),
      tf.constant([1, k], tf.int64),
      "scale_jitter",
      0,
      32,
      (32, 64),
    )
    .numpy()
    .tobytes()
    for k in range(6)
  }
  assert len(views) > 1


def _train_config(root, **overrides):
  from classic_cnns.config import base_config, validate_config

  c = base_config()
  c.model.name, c.model.num_classes, c.model.act = "lenet5", 2, "relu"
  c.data.source, c.data.path = "folder", str(root)
  c.batch_size, c.num_steps, c.log_every_steps, c.eval_batch_size = 4, 8, 4, 4
  c.update_from_flattened_dict(overrides)
  validate_config(c, 1)
  return c


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory):
  """36x36 PNGs (lossless, one size), so a streamed canvas of 36 is exactly the in-memory image."""
  from PIL import Image

  root = tmp_path_factory.mktemp("pngs")
  rng = np.random.default_rng(1)
  for split, n in (("train", 10), ("val", 5)):
    for k, cls in enumerate(("a", "b")):
      d = root / split / cls
      d.mkdir(parents=True)
      for i in range(n):
        x = rng.integers(0, 128, (36, 36, 3)) + 120 * k  # the classes differ in brightness
        Image.fromarray(x.astype(np.uint8)).save(d / f"{i}.png")
  return root


def test_canvas_mode_gives_every_in_jit_op_and_protocol_the_in_memory_numbers(png_folder, tmp_path):
  """AlexNet-style canvas streaming (random 32 crops of the 36 canvas, flip, per-pixel mean in jit)
  evaluates a checkpoint exactly as the in-memory folder source does, for every protocol."""
  from classic_cnns import evaluate, train

  common = {
    "data.augment.crop": "resize",
    "data.augment.resize": 36,
    "data.augment.crop_size": 32,
    "data.augment.flip": True,
    "data.normalize": "pixel",
  }
  in_memory = _train_config(png_folder, **common)
  streamed = _train_config(
    png_folder,
    **common,
    **{
      "data.streaming.enabled": True,
      "data.streaming.augment": "canvas",
      "data.streaming.resize": 36,
    },
  )
  r = train.train_and_evaluate(streamed, str(tmp_path))
  assert r.final_step == 8 and r.test["count"] == 10
  for protocol, kw in (
    ("single", {}),
    ("center_crop", {}),
    ("ten_crop", {"resize": 36, "crop": 32}),
  ):
    a = evaluate.run_protocol(streamed, str(tmp_path), protocol, **kw)
    b = evaluate.run_protocol(in_memory, str(tmp_path), protocol, **kw)
    assert a["count"] == b["count"] == 10, protocol
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["top1"] == b["top1"], protocol


def test_host_crop_streams_support_the_multi_view_protocols(jpeg_folder, tmp_path):
  from classic_cnns import evaluate, train
  from classic_cnns.config import ConfigError

  c = _train_config(
    jpeg_folder,
    **{
      "data.streaming.enabled": True,
      "data.streaming.augment": "scale_jitter",
      "data.streaming.resize": 36,
      "data.streaming.crop": 32,
      "data.streaming.scale_min": 32,
      "data.streaming.scale_max": 40,
    },
  )
  train.train_and_evaluate(c, str(tmp_path))
  single = evaluate.run_protocol(c, str(tmp_path), "single")
  centre = evaluate.run_protocol(
    c, str(tmp_path), "center_crop"
  )  # canvas 36 -> centre 32 = single's view
  assert single["count"] == centre["count"] == 10 and (centre["resize"], centre["crop"]) == (36, 32)
  assert centre["loss"] == pytest.approx(single["loss"], rel=1e-5)
  ten = evaluate.run_protocol(c, str(tmp_path), "ten_crop", resize=40, crop=32)
  assert ten["count"] == 10 and 0 <= ten["top1_error"] <= 1
  with pytest.raises(ConfigError, match="protocol=full needs whole images"):
    evaluate.run_protocol(c, str(tmp_path), "full")
  # GoogLeNet's 144 crops of the model's 32 input: scales 256..352 x 32/224, the canvas the largest
  multi = evaluate.run_protocol(c, str(tmp_path), "multi_crop_144")
  assert (multi["crop"], multi["scales"], multi["count"]) == (32, [37, 41, 46, 50], 10)


def test_streamed_statistics_and_the_host_crop_restrictions(png_folder):
  from classic_cnns.config import ConfigError
  from classic_cnns.data import augment, sources

  c = _train_config(
    png_folder,
    **{
      "data.streaming.enabled": True,
      "data.streaming.augment": "canvas",
      "data.streaming.resize": 36,
      "data.normalize": "pixel",
    },
  )
  ds = sources.load_dataset(c.data, 0)
  prep = augment.preprocess_config(c.data, ds)
  in_memory = sources.load_dataset(_train_config(png_folder).data, 0)
  np.testing.assert_allclose(
    prep.pixel_mean.array, augment.pixel_mean(in_memory.train.images), rtol=1e-6
  )
  c.data.streaming.augment = "resize_crop"
  with pytest.raises(ConfigError, match="streaming.augment=canvas"):
    augment.preprocess_config(c.data, sources.load_dataset(c.data, 0))
