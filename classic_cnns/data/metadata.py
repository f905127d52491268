"""What is known about the standard datasets without reading them: image size, classes, split
sizes, per-channel mean/std (in [0, 255] units, over the training split) and class names.

The trainer uses it for defaults (`augment.preprocess_config`): with `config.data.stats="auto"` a
TFDS dataset listed here is normalised with these statistics instead of a scan of its training
split, and AlexNet's PCA lighting on ImageNet-like data uses the published RGB eigen-decomposition.

Sources of the numbers: the datasets' papers/pages for sizes and classes; the channel statistics
are the widely quoted 4-decimal values in [0, 1] times 255 (torchvision's for ImageNet, which also
serve Imagenette, an ImageNet subset); MNIST's are computed over its 60,000 training digits (the
test suite rechecks them against ../shared/datasets/mnist.npz when present). The ImageNet PCA is the
one AlexNet-style lighting (Sec. 4.1) uses in fb.resnet.torch: eigenvalues of the RGB covariance of
pixel values in [0, 1]; the eigenvectors are the columns of `pca_eigvec`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  name: str  # TFDS name
  image_shape: tuple[int, int, int] | None  # (H, W, C); None: the images vary in size
  num_classes: int
  num_train: int
  num_test: int
  test_split: str  # the TFDS split used for testing
  mean: tuple[float, ...]  # per channel, [0, 255] units
  std: tuple[float, ...]
  class_names: tuple[str, ...] | None = None  # human-readable, in label order; None: too many
  eval_resize: int = 0  # ImageNet-style evaluation: shorter side -> eval_resize, centre eval_crop
  eval_crop: int = 0
  pca_eigval: tuple[float, ...] = ()  # RGB covariance eigenvalues, pixel values in [0, 1]
  pca_eigvec: tuple[tuple[float, ...], ...] = ()  # rows = R, G, B; columns = eigenvectors
  note: str = ""


def _u8(*fractions: float) -> tuple[float, ...]:
  """Statistics quoted for pixel values in [0, 1] -> [0, 255] units."""
  return tuple(round(f * 255, 4) for f in fractions)


_IMAGENET_MEAN = _u8(0.485, 0.456, 0.406)
_IMAGENET_STD = _u8(0.229, 0.224, 0.225)
_IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
_IMAGENET_PCA_EIGVEC = (
  (-0.5675, 0.7192, 0.4009),
  (-0.5808, -0.0045, -0.8140),
  (-0.5836, -0.6948, 0.4203),
)

_DIGITS = tuple(str(i) for i in range(10))
_CIFAR100 = tuple(
  "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly "
  "camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile "
  "cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp "
  "lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree "
  "orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy porcupine possum "
  "rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper snail snake spider "
  "squirrel streetcar sunflower sweet_pepper table tank telephone television tiger tractor train "
  "trout tulip turtle wardrobe whale willow_tree wolf woman worm".split()
)

IMAGENET_MANUAL_NOTE = (
  "imagenet2012 cannot be downloaded by TFDS: get ILSVRC2012_img_train.tar and "
  "ILSVRC2012_img_val.tar from image-net.org (registration), put them in TFDS's manual_dir "
  "(default <data_dir>/downloads/manual/, e.g. ~/tensorflow_datasets/downloads/manual/), then run "
  "with --config.data.source=tfds --config.data.name=imagenet2012 --config.data.streaming.enabled=True "
  "[--config.data.data_dir=DIR]; or extract it as an image folder root/train/<class>/*.JPEG and stream "
  "it (--config.data.source=folder --config.data.path=ROOT --config.data.streaming.enabled=True)"
)

DATASETS: dict[str, DatasetInfo] = {
  d.name: d
  for d in (
    DatasetInfo(
      "mnist", (28, 28, 1), 10, 60_000, 10_000, "test", (33.318,), (78.567,), _DIGITS
    ),  # computed
    DatasetInfo(
      "fashion_mnist",
      (28, 28, 1),
      10,
      60_000,
      10_000,
      "test",
      _u8(0.2860),
      _u8(0.3530),
      (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
      ),
    ),
    DatasetInfo(
      "cifar10",
      (32, 32, 3),
      10,
      50_000,
      10_000,
      "test",
      _u8(0.4914, 0.4822, 0.4465),
      _u8(0.2470, 0.2435, 0.2616),
      ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
    DatasetInfo(
      "cifar100",
      (32, 32, 3),
      100,
      50_000,
      10_000,
      "test",
      _u8(0.5071, 0.4865, 0.4409),
      _u8(0.2673, 0.2564, 0.2762),
      _CIFAR100,
    ),
    DatasetInfo(
      "svhn_cropped",
      (32, 32, 3),
      10,
      73_257,
      26_032,
      "test",
      _u8(0.4377, 0.4438, 0.4728),
      _u8(0.1980, 0.2010, 0.1970),
      _DIGITS,
      note="label i is digit i; the 531,131-image 'extra' split is not used by default",
    ),
    DatasetInfo(
      "imagenette",
      None,
      10,
      9_469,
      3_925,
      "validation",
      _IMAGENET_MEAN,
      _IMAGENET_STD,
      (
        "tench",
        "English springer",
        "cassette player",
        "chain saw",
        "church",
        "French horn",
        "garbage truck",
        "gas pump",
        "golf ball",
        "parachute",
      ),
      eval_resize=256,
      eval_crop=224,
      pca_eigval=_IMAGENET_PCA_EIGVAL,
      pca_eigvec=_IMAGENET_PCA_EIGVEC,
      note="a 10-class ImageNet subset (fast.ai); ImageNet statistics; images vary in size",
    ),
    DatasetInfo(
      "imagenet2012",
      None,
      1000,
      1_281_167,
      50_000,
      "validation",
      _IMAGENET_MEAN,
      _IMAGENET_STD,
      None,
      eval_resize=256,
      eval_crop=224,
      pca_eigval=_IMAGENET_PCA_EIGVAL,
      pca_eigvec=_IMAGENET_PCA_EIGVEC,
      note=IMAGENET_MANUAL_NOTE,
    ),
  )
}


def get(name: str) -> DatasetInfo | None:
  """Metadata of TFDS dataset `name` ("cifar10", "imagenette/320px-v2", ...), None if unknown."""
  return DATASETS.get(name.split("/")[0].split(":")[0])


def channel_stats(
  name: str, channels: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
  """(mean, std) per channel in [0, 255] units for a known dataset (and channel count), else None."""
  info = get(name)
  if info is None or (channels is not None and len(info.mean) != channels):
    return None
  return info.mean, info.std


def class_names(name: str, fallback: list[str] | None = None) -> list[str] | None:
  """Human-readable class names of a known dataset, else `fallback` (e.g. the TFDS label names)."""
  info = get(name)
  return list(info.class_names) if info is not None and info.class_names else fallback
