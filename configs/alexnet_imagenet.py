"""python -m classic_cnns.main --config=configs/alexnet_imagenet.py:paper --workdir=/tmp/alexnet_imagenet

AlexNet on ImageNet (ILSVRC-2012), Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification
with Deep Convolutional Neural Networks". The argument after ':' picks the network (default paper):
  :paper        the paper's two-tower net as grouped convs (96-256-384-384-256, 227 input; 60,965,224)
  :nogroups     the same channels without groups (62,378,344)
  :torchvision  torchvision's single-tower AlexNet (64-192-384-256-256, 224 input; 61,100,840)

Recipe (Sec. 5 unless stated):
  optimizer   SGD, batch 128, momentum 0.9, weight decay 0.0005 (the update rule of Sec. 5, an L2
              term here; applied to conv/FC kernels -- decay_mask=all decays the biases too).
  schedule    lr 0.01 "divided by 10 when the validation error rate stopped improving", three times,
              "roughly 90 cycles" through the training set: here fixed drops at epochs 30, 60 and
              80 of 90 (ours, in place of the plateau rule).
  model       init N(0, 0.01), bias 1 in conv2/4/5 and the hidden FC layers (Sec. 5; the model's
              init_scheme="paper"; torchvision's variant keeps PyTorch's init); dropout 0.5 in the
              first two FC layers (Sec. 4.2); LRN and overlapping pooling (Sec. 3.3, 3.4).
  data        Sec. 2: shorter side rescaled to 256, per-pixel mean subtracted (here: per-channel
              mean/std, see below); Sec. 4.1: random 224x224 patches (227 in the conv geometry of
              the paper's net) and their horizontal flips -- the streaming pipeline's resize_crop --
              and PCA colour augmentation, alpha ~ N(0, 0.1) (data.augment.pca_lighting=0.1, with
              ImageNet's RGB eigenvectors from classic_cnns/data/metadata.py). Evaluation: the
              centre crop; the paper's average over the four corner and centre patches and their
              flips (Sec. 4.1): python -m classic_cnns.evaluate --config=configs/alexnet_imagenet.py:paper
              --workdir=... --protocol=ten_crop.
Deviation (named option), Sec. 2 per-pixel mean: streamed images cropped on the host have no fixed
frame for a mean image, so this config subtracts the per-channel mean and divides by the std
(data.normalize=channel). The paper's exact pipeline -- the central 256x256 square of the
256-resized image, its per-pixel mean subtracted, random crops of it in jit -- is
  --config.data.streaming.augment=canvas --config.data.augment.crop=resize
  --config.data.augment.resize=256 --config.data.augment.crop_size=227 (224 for :torchvision)
  --config.data.normalize=pixel --config.data.divide_std=False

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/alexnet_imagenet.py:paper --workdir=/tmp/alexnet_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: resize_crop: shorter side 256, random 227x227 crops (224 for :torchvision)
  + flips, Sec. 2 / 4.1.
The model builds and summarises on any machine: python -m classic_cnns.summary --model=alexnet_paper
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {"paper": "alexnet_paper", "nogroups": "alexnet_paper_nogroups", "torchvision": "alexnet"}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "paper", NETS, "alexnet_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  # Sec. 4.1: random patches of the 256 image + flips; deviation: per-channel mean/std instead of
  # the per-pixel mean (see the docstring)
  common.imagenet(c, "resize_crop", crop=227 if arg != "torchvision" else 224)
  c.data.augment.pca_lighting = 0.1  # Sec. 4.1: PCA colour augmentation, sigma 0.1

  c.batch_size = 128  # Sec. 5
  c.eval_batch_size = 500
  c.num_epochs = 90.0  # Sec. 5: "roughly 90 cycles"
  common.sgd(c, lr=0.01, weight_decay=5e-4)  # Sec. 5
  common.multistep(c, (30.0, 60.0, 80.0))  # Sec. 5: lr / 10 three times (on plateau there)
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
