"""python -m classic_cnns.main --config=configs/vgg_imagenet.py:D --workdir=/tmp/vgg16_imagenet

VGG on ImageNet (ILSVRC-2012), Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", Table 1 configurations. The argument after ':' (default D):
  :A (VGG-11)  :A-LRN  :B (VGG-13)  :C (VGG-16 with 1x1 convs)  :D (VGG-16)  :E (VGG-19)

Recipe (Sec. 3.1 unless stated):
  optimizer   mini-batch gradient descent with momentum 0.9, batch 256, weight decay 5e-4 (the
              L2 penalty multiplier; on conv/FC kernels here).
  schedule    lr 0.01, "decreased by a factor of 10 when the validation set accuracy stopped
              improving", three times; training stopped after 370K iterations (74 epochs). Here
              fixed drops at epochs 30, 50 and 65 of 74 (ours, in place of the plateau rule).
  model       dropout 0.5 after the first two FC layers. The paper trains A from random init
              and initialises the first four convs and the FC layers of deeper nets from A;
              we use He init for convs (the paper notes afterwards that random init without
              pre-training works, with Glorot init) -- see classic_cnns/models/vgg.py.
  data        224x224 crops from images rescaled to a training scale S (S=256 or 384 fixed, or
              multi-scale S in [256, 512], Sec. 3.1 "Training image size"), random horizontal
              flips and "random RGB colour shift (Krizhevsky et al., 2012)"; mean RGB subtracted
              (Sec. 2.1; per-channel mean/std here). Here S=256 (the streaming pipeline's
              resize_crop) + flips, AlexNet's PCA colour shift with std 0.1
              (data.augment.pca_lighting), centre-crop evaluation; dense multi-scale evaluation
              (Sec. 3.2): python -m classic_cnns.evaluate --config=configs/vgg_imagenet.py:D
              --workdir=... --protocol=dense --scales=256,384,512 (the model's `dense` mode).
              Multi-scale training S in [256, 512]: --config.data.streaming.augment=scale_jitter
              (scale_min=256, scale_max=512).

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/vgg_imagenet.py:D --workdir=/tmp/vgg16_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: resize_crop: shorter side S=256, random 224x224 crops + flips, Sec. 3.1
  (single-scale S=256).
The model builds and summarises on any machine: python -m classic_cnns.summary --model=vgg16
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {"A": "vgg11", "A-LRN": "vgg11_lrn", "B": "vgg13", "C": "vgg16c", "D": "vgg16", "E": "vgg19"}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "D", NETS, "vgg_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  c.model.dropout = 0.5  # Sec. 3.1: dropout 0.5 on the first two FC layers
  # Sec. 3.1: S = 256, random 224 crops + flips; Sec. 2.1 subtracts the mean RGB value, we also
  # divide by the std
  common.imagenet(c, "resize_crop")
  c.data.augment.pca_lighting = 0.1  # Sec. 3.1: random RGB colour shift (AlexNet Sec. 4.1)

  c.batch_size = 256  # Sec. 3.1
  c.eval_batch_size = 250
  c.num_epochs = 74.0  # Sec. 3.1: 370K iterations
  common.sgd(c, lr=0.01, weight_decay=5e-4)  # Sec. 3.1
  common.multistep(c, (30.0, 50.0, 65.0))  # Sec. 3.1: lr / 10 three times (on plateau there)
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
