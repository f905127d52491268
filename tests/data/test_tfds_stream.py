import numpy as np
import pytest

pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from classic_cnns import parallel
from classic_cnns.data import common, sources, tfds_stream
from classic_cnns.data.sources import DatasetError

SHAPE = (32, 32, 3)


def images(batches, key="image"):
  return [np.asarray(b[key]) for _, b in batches]


# --- tfds.testing.mock_data: imagenet2012's real features (variable-size JPEGs, 1000 classes) ---
# mock_data ignores split slicing, shard shuffling and the prepared split sizes (it serves
# `num_examples` random examples for any split), so it checks shapes, dtypes, determinism and
# bookkeeping; the real TFDS reading paths are checked on a tiny prepared dataset below.


def test_mock_imagenet2012_shapes_determinism_and_resume():
  mesh = parallel.make_mesh()
  with tfds.testing.mock_data(num_examples=10):
    ds = tfds_stream.load_streaming_tfds("imagenet2012", None, True, 0, 0, SHAPE)
    assert ds.num_classes == 1000 and len(ds.class_names) == 1000 and ds.val is None
    assert (ds.train.split, len(ds.train), ds.test.split, len(ds.test)) == (
      "train",
      10,
      "validation",
      10,
    )
    assert ds.image_shape == SHAPE
    make = lambda: tfds_stream.TfdsTrainBatches(ds.train, 4, seed=1, mesh=mesh, resize=36, crop=32)
    assert make().steps_per_epoch == 2
    full = list(make().iterate(0, 5))  # 2.5 epochs
    assert [s for s, _ in full] == list(range(5))
    assert full[0][1]["image"].shape == (4, 32, 32, 3) and full[0][1]["image"].dtype == np.uint8
    assert full[0][1]["label"].shape == (4,) and full[0][1]["label"].dtype == np.int32
    for x, y in zip(images(full), images(make().iterate(0, 5))):
      np.testing.assert_array_equal(x, y)
    for x, y in zip(images(full)[3:], images(make().iterate(3, 5))):  # resume mid-epoch 1
      np.testing.assert_array_equal(x, y)
    other = images(
      tfds_stream.TfdsTrainBatches(ds.train, 4, seed=2, mesh=mesh, crop=32).iterate(0, 1)
    )
    assert not np.array_equal(other[0], images(full)[0])
    for mode, side in (("resize_crop", 32), ("scale_jitter", 32), ("canvas", 36)):
      t = tfds_stream.TfdsTrainBatches(
        ds.train, 4, 1, mesh, mode=mode, resize=36, crop=32, scale_range=(34, 40)
      )
      assert next(iter(t.iterate(0, 1)))[1]["image"].shape == (4, side, side, 3)
    with pytest.raises(ValueError, match="unknown streaming augmentation"):
      tfds_stream.TfdsTrainBatches(ds.train, 4, 1, mesh, mode="nope")
    batches = list(tfds_stream.tfds_eval_batches(ds.test, 4, mesh, resize=36, crop=32))
    local = list(tfds_stream.tfds_eval_batches(ds.test, 4, None, resize=36, crop=36))
  assert isinstance(local[0]["image"], np.ndarray) and local[0]["image"].shape == (4, 36, 36, 3)
  assert sum(b["mask"].sum() for b in local) == 10
  mask = np.concatenate([np.asarray(b["mask"]) for b in batches])
  assert len(batches) == 3 and mask.sum() == 10 and len(mask) == 12 and list(mask[10:]) == [0, 0]
  assert batches[0]["image"].shape == (4, 32, 32, 3) and batches[0]["label"].dtype == np.int32
  assert not np.asarray(batches[-1]["image"])[2:].any()  # padding rows are zeros


def test_mock_imagenet2012_val_hold_out():
  with tfds.testing.mock_data(num_examples=10):
    ds = tfds_stream.load_streaming_tfds("imagenet2012", None, True, 3, 0, SHAPE)
    again = tfds_stream.load_streaming_tfds("imagenet2012", None, True, 3, 0, SHAPE)
    with pytest.raises(DatasetError, match="leaves no training"):
      tfds_stream.load_streaming_tfds("imagenet2012", None, True, 10, 0, SHAPE)
  assert (len(ds.train), len(ds.val), len(ds.test)) == (7, 3, 10)
  assert (ds.train.split, ds.val.split) == (again.train.split, again.val.split)


def test_imagenette_mock_needs_network_check(monkeypatch):
  monkeypatch.setattr(common, "download_host_reachable", lambda timeout=5.0: True)
  with tfds.testing.mock_data(num_examples=6):
    ds = tfds_stream.load_streaming_tfds("imagenette", None, True, 2, 0, SHAPE)
  assert ds.num_classes == 10 and (len(ds.train), len(ds.val), ds.test.split) == (
    4,
    2,
    "validation",
  )


# --- not prepared / offline: one-line errors ---


def test_imagenet2012_not_prepared_gives_manual_download_hint(tmp_path):
  for download, why in (
    (False, "config.data.download is False"),
    (True, "manual download missing"),
  ):
    with pytest.raises(DatasetError) as e:
      tfds_stream.load_streaming_tfds("imagenet2012", str(tmp_path), download, 0, 0, SHAPE)
    msg = str(e.value)
    assert "\n" not in msg and why in msg and "use local data instead" in msg
    assert "ILSVRC2012_img_train.tar" in msg and "downloads/manual" in msg


def test_offline_and_unknown_errors(tmp_path, monkeypatch):
  monkeypatch.setattr(common, "download_host_reachable", lambda timeout=5.0: False)
  with pytest.raises(DatasetError, match="no network connection"):
    tfds_stream.load_streaming_tfds("imagenette", str(tmp_path), True, 0, 0, SHAPE)
  with pytest.raises(DatasetError, match="unknown TFDS dataset"):
    tfds_stream.load_streaming_tfds("no_such_dataset_xyz", str(tmp_path), True, 0, 0, SHAPE)


# --- a tiny prepared TFDS dataset (4 shards): real slicing, shard shuffling, even_splits ---
# Image i of a split is a solid colour of value 5 * i (any size), so every crop tells which it is.

N_TRAIN, N_VAL = 30, 11


class TinyVarImages(tfds.core.GeneratorBasedBuilder):
  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(
      builder=self,
      features=tfds.features.FeaturesDict(
        {
          "image": tfds.features.Image(shape=(None, None, 3)),
          "label": tfds.features.ClassLabel(num_classes=3),
        }
      ),
    )

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(N_TRAIN), "validation": self._generate_examples(N_VAL)}

  def _generate_examples(self, n):
    for i in range(n):
      img = np.full((20 + i % 7, 30 - i % 5, 3), 5 * i, np.uint8)
      yield i, {"image": img, "label": i % 3}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("tfds"))
  TinyVarImages(data_dir=d).download_and_prepare(
    download_config=tfds.download.DownloadConfig(num_shards=4, try_download_gcs=False)
  )
  return d


def ids(x: np.ndarray) -> np.ndarray:
  """Which example each image of a batch [B, H, W, C] shows."""
  return np.round(np.asarray(x, np.float64).mean(axis=(1, 2, 3)) / 5).astype(int)


def test_tiny_hold_out_and_eval_cover_every_example_once(tiny_dir):
  ds = tfds_stream.load_streaming_tfds("tiny_var_images", tiny_dir, False, 7, 3, (16, 16, 3))
  assert (len(ds.train), len(ds.val), len(ds.test), ds.test.split) == (23, 7, 11, "validation")
  mesh = parallel.make_mesh()
  seen = []
  for split in (ds.train, ds.val):
    batches = list(tfds_stream.tfds_eval_batches(split, 4, mesh, resize=18, crop=16))
    assert len(batches) == -(-len(split) // 4)
    mask = np.concatenate([np.asarray(b["mask"]) for b in batches]).astype(bool)
    assert mask.sum() == len(split)
    seen.append(np.concatenate([ids(b["image"]) for b in batches])[mask])
    labels = np.concatenate([np.asarray(b["label"]) for b in batches])[mask]
    np.testing.assert_array_equal(labels, seen[-1] % 3)
  assert sorted(np.concatenate(seen)) == list(range(N_TRAIN))  # disjoint, together all of train


@pytest.mark.parametrize("processes", [2, 3])
def test_tiny_eval_split_over_processes(tiny_dir, processes):
  split = tfds_stream.TfdsSplit("tiny_var_images", tiny_dir, "validation", N_VAL, (16, 16, 3))
  got, counts = [], set()
  for p in range(processes):
    batches = list(
      tfds_stream._eval_local_dataset(
        split, 2, p, processes, resize=18, crop=16, channels=3, threads=1
      ).as_numpy_iterator()
    )
    counts.add(len(batches))
    for img, _, m in batches:
      got += list(ids(img)[m.astype(bool)])
  assert len(counts) == 1 and sorted(got) == list(range(N_VAL))  # same batch count everywhere


def test_tiny_train_epochs_deterministic_resumable_and_disjoint_over_processes(tiny_dir):
  mesh = parallel.make_mesh()
  split = tfds_stream.TfdsSplit("tiny_var_images", tiny_dir, "train", N_TRAIN, (16, 16, 3))
  make = lambda: tfds_stream.TfdsTrainBatches(
    split, 4, seed=5, mesh=mesh, crop=16, shuffle_buffer=8
  )
  full = images(make().iterate(0, 14))  # 7 steps per epoch, 2 epochs
  for x, y in zip(full, images(make().iterate(0, 14))):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(full[4:], images(make().iterate(4, 14))):
    np.testing.assert_array_equal(x, y)
  epoch0, epoch1 = (np.concatenate([ids(x) for x in full[i : i + 7]]) for i in (0, 7))
  assert len(set(epoch0)) == 28 and len(set(epoch1)) == 28 and list(epoch0) != list(epoch1)
  t = make()
  parts = [
    np.concatenate([ids(x) for x, _ in t._epoch_dataset(0, 0, 7, p, 2).as_numpy_iterator()])
    for p in range(2)
  ]
  assert len(parts[0]) == len(parts[1]) == 14 and not set(parts[0]) & set(parts[1])
  held = tfds_stream.load_streaming_tfds("tiny_var_images", tiny_dir, False, 7, 3, (16, 16, 3))
  assert "+" in held.train.split  # train[:a]+train[b:] around the held-out block
  t = tfds_stream.TfdsTrainBatches(held.train, 4, seed=5, mesh=mesh, crop=16)
  val_ids = set(range(N_TRAIN)) - set(
    np.concatenate(
      [
        ids(b["image"])
        for _, b in tfds_stream.TfdsTrainBatches(held.train, 23, 0, mesh, crop=16).iterate(0, 1)
      ]
    )
  )
  assert len(val_ids) == 7
  parts = [
    set(
      np.concatenate(
        [ids(x) for x, _ in t._epoch_dataset(1, 0, t.steps_per_epoch, p, 2).as_numpy_iterator()]
      )
    )
    for p in range(2)
  ]
  assert (
    len(parts[0]) == len(parts[1]) == 10
    and not parts[0] & parts[1]
    and not (parts[0] | parts[1]) & val_ids
  )


# --- the trainer and the evaluation protocols on a streamed TFDS split ---
# (On the tiny prepared dataset: tfds.testing.mock_data also mocks file writes, which breaks Orbax.)
def test_trainer_and_protocols_on_a_streamed_tfds_split(tiny_dir, tmp_path):
  """config.data.source=tfds + streaming: train (resize_crop on the host; PCA lighting, mean/std
  fitted on a sample of the stream, in jit), class names written to the workdir, 10-crop evaluation."""
  import json
  import os
  from classic_cnns import evaluate, train
  from classic_cnns.config import base_config, validate_config

  c = base_config()
  c.model.name, c.model.num_classes, c.model.act = "lenet5", 3, "relu"
  c.data.source, c.data.name, c.data.data_dir, c.data.download = (
    "tfds",
    "tiny_var_images",
    tiny_dir,
    False,
  )
  c.data.streaming.enabled, c.data.streaming.augment = True, "resize_crop"
  c.data.streaming.resize, c.data.streaming.crop = 36, 32
  c.data.augment.pca_lighting, c.data.augment.flip = 0.1, True
  c.batch_size, c.num_steps, c.log_every_steps, c.eval_batch_size = 4, 4, 2, 4
  validate_config(c, 1)
  r = train.train_and_evaluate(c, str(tmp_path))
  ten = evaluate.run_protocol(c, str(tmp_path), "ten_crop", resize=40, crop=32)
  assert (
    r.final_step == 4
    and r.test["count"] == N_VAL
    and ten["count"] == N_VAL
    and ten["split"] == "test"
  )
  with open(os.path.join(tmp_path, "classes.json")) as f:
    names = json.load(f)
  names = names["class_names"] if isinstance(names, dict) else names
  assert len(names) == 3


def test_variable_size_tfds_dataset_in_memory_is_one_clear_error():
  with pytest.raises(DatasetError, match="streaming.enabled=True"):
    sources.load_tfds("imagenet2012")


def test_tiny_split_protocol_batches_are_the_tfds_pipelines(tiny_dir):
  """TfdsSplit.train_batches / eval_batches (what the trainer iterates) are TfdsTrainBatches and
  tfds_eval_batches with the options of config.data.streaming."""
  from classic_cnns.config import base_config

  c = base_config()
  c.batch_size, c.seed = 4, 5
  s = c.data.streaming
  s.enabled, s.augment, s.resize, s.crop, s.threads = True, "resize_crop", 18, 16, 1
  split = tfds_stream.TfdsSplit("tiny_var_images", tiny_dir, "train", N_TRAIN, (16, 16, 3))
  mesh = parallel.make_mesh()
  direct = tfds_stream.TfdsTrainBatches(
    split, 4, 5, mesh, mode="resize_crop", resize=18, crop=16, threads=1
  )
  got = images(split.train_batches(c, mesh).iterate(0, 9))
  for x, y in zip(got, images(direct.iterate(0, 9)), strict=True):
    np.testing.assert_array_equal(x, y)
  for x, y in zip(got[8:], images(split.train_batches(c, mesh).iterate(8, 9)), strict=True):
    np.testing.assert_array_equal(x, y)
  val = tfds_stream.TfdsSplit("tiny_var_images", tiny_dir, "validation", N_VAL, (16, 16, 3))
  ref = tfds_stream.tfds_eval_batches(val, 4, mesh, resize=18, crop=16, threads=1)
  for a, b in zip(val.eval_batches(4, c, mesh), ref, strict=True):
    for k in ("image", "label", "mask"):
      np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
