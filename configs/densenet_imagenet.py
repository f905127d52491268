"""python -m classic_cnns.main --config=configs/densenet_imagenet.py:121 --workdir=/tmp/densenet121_imagenet

ImageNet DenseNets of Huang et al. 2017, "Densely Connected Convolutional Networks", Table 1
(DenseNet-BC: bottleneck layers, compression 0.5, growth rate k=32; DenseNet-161 k=48). The argument
after ':' picks the network (default 121):
  :121  7,978,856 params    :169  14,149,480    :201  20,013,928
  :161  28,681,000 (k=48)   :264  33,337,704
Table 3 single-crop top-1 error: DenseNet-121 25.02, -169 23.80, -201 22.58.

Recipe:
  optimizer   Sec. 4.2: SGD with Nesterov momentum 0.9 without dampening, batch 256, weight decay
              1e-4 (an L2 term on conv/FC kernels; the paper does not say which parameters decay --
              --config.optimizer.decay_mask=all decays every parameter, as the Torch code the
              authors build on, fb.resnet.torch).
  schedule    Sec. 4.2: 90 epochs, lr 0.1 lowered by 10 times at epochs 30 and 60.
  model       no dropout on ImageNet (Sec. 4.2 adds dropout 0.2 only for the CIFAR/SVHN runs without
              augmentation); BN-ReLU-conv composite layers and average-pooling transitions (Sec. 3).
  data        Sec. 4.1: "the same data augmentation scheme" as the ResNet Torch reimplementation
              (fb.resnet.torch): random-size crops (8-100% of the area, aspect 3/4-4/3) to 224 and
              horizontal flips (the streaming pipeline's inception crop), colour jitter with
              brightness/contrast/saturation 0.4 and AlexNet PCA lighting with std 0.1
              (data.augment.pca_lighting; ImageNet's RGB eigenvectors from
              classic_cnns/data/metadata.py), per-channel mean/std normalisation. Evaluation: a
              single 224 centre crop of the 256-resized image (Table 3 "single-crop"); the 10-crop
              column: python -m classic_cnns.evaluate --config=configs/densenet_imagenet.py:121
              --workdir=... --protocol=ten_crop.
Deviation (named option): colour jitter applies brightness, contrast, saturation in this fixed
order (classic_cnns/data/augment.py `color_jitter`); fb.resnet.torch draws a random order per image.
Memory: --config.model.memory_efficient=True recomputes the concatenations in the backward pass
(Pleiss et al. 2017; same results).

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised and
colour-augmented in jit; as configured from TFDS "imagenet2012" (a manual download, see
configs/common.py). From JPEG folders root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/densenet_imagenet.py:121 --workdir=/tmp/densenet121_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
The model builds and summarises on any machine: python -m classic_cnns.summary --model=densenet121
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {
  "121": "densenet121",
  "169": "densenet169",
  "201": "densenet201",
  "161": "densenet161",
  "264": "densenet264",
}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "121", NETS, "densenet_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  c.model.norm = "batch"
  c.model.dropout = 0.0  # Sec. 4.2: dropout only without data augmentation (CIFAR/SVHN)
  c.model.memory_efficient = (
    False  # Pleiss et al. 2017: recompute the concatenations (same outputs)
  )
  # Not from the paper: True runs each dense block as one lax.scan (same variables and function).
  c.model.scan_layers = False
  common.imagenet(c, "inception")  # fb.resnet.torch: random-size crops + flips, centre 224 of 256
  c.data.augment.brightness = 0.4  # fb.resnet.torch ColorJitter
  c.data.augment.contrast = 0.4
  c.data.augment.saturation = 0.4
  c.data.augment.pca_lighting = 0.1  # fb.resnet.torch Lighting (AlexNet Sec. 4.1)

  c.batch_size = 256  # Sec. 4.2
  c.eval_batch_size = 250
  c.num_epochs = 90.0  # Sec. 4.2
  common.sgd(c, lr=0.1, weight_decay=1e-4, nesterov=True)  # Sec. 4.2: Nesterov 0.9, no dampening
  common.multistep(c, (30.0, 60.0))  # Sec. 4.2: / 10 at epochs 30 and 60
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
