"""python -m classic_cnns.main --config=configs/resnet_imagenet.py:50 --workdir=/tmp/resnet50_imagenet

ImageNet ResNets of He et al. 2016, "Deep Residual Learning for Image Recognition", Table 1 and
Sec. 3.4. The argument after ':' picks the network (default 50):
  :18 :34 :50 :101 :152     option-B shortcuts (projections where the shape changes)
  :plain18 :plain34         the plain nets of Table 2 / Fig. 4
  :34A :34C                 ResNet-34 with shortcut option A (zero-padding) or C (all projections), Table 3

Recipe (Sec. 3.4 unless stated):
  model       BN right after each conv and before the activation, no dropout, He init; the
              down-sampling stride of a bottleneck in its first 1x1 conv as the paper
              (model.stride_in="paper", 3.86 GMACs for ResNet-50; --config.model.stride_in=v1.5
              gives torchvision's layout, 4.09 GMACs; same parameters).
  optimizer   SGD, batch 256, momentum 0.9, weight decay 1e-4 (an L2 term on conv/FC kernels;
              the paper does not say which parameters decay).
  schedule    lr 0.1 "divided by 10 when the error plateaus", "up to 60x10^4 iterations" (120
              epochs of 1.28M images): here fixed drops at epochs 30, 60 and 90 of 120 (ours, in
              place of the plateau rule).
  data        shorter side resized at random in [256, 480], 224x224 crops and their flips,
              per-pixel mean subtracted, standard colour augmentation; test: 10-crop or
              fully-convolutional multi-scale. Here random-resized crops + flips (see below),
              per-channel mean/std normalisation, centre-crop evaluation.

Data: ImageNet (ILSVRC-2012) as JPEG folders, streamed from disk and decoded/cropped on the host
(classic_cnns/data/streaming.py), root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/resnet_imagenet.py:50 --workdir=/tmp/resnet50_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet --config.data.streaming.enabled=True
data.streaming below: inception: random-resized 224 crops + flips -- the paper's scale
  augmentation (shorter side in [256, 480]) is not in the streaming pipeline; random-resized
  crops are what fb.resnet.torch and torchvision train ResNets with.
Without those overrides the config reads TFDS "imagenet2012", which TFDS cannot download (put the
ILSVRC2012 tar files in its manual_dir, ~/tensorflow_datasets/downloads/manual/) and which our TFDS
loader would hold in memory as one array of equal-size images: fine for MNIST/CIFAR, not practical
at ImageNet size (pipeline for ImageNet-size data: see issue 4) -- use the folder path above. The
model builds and summarises on any machine: python -m classic_cnns.summary --model=resnet50
"""
from classic_cnns.config import base_config

NETS = {"18": "resnet18", "34": "resnet34", "50": "resnet50", "101": "resnet101", "152": "resnet152",
        "plain18": "plain18", "plain34": "plain34", "34A": "resnet34_a", "34C": "resnet34_c"}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = (arg or "50").strip()
  if arg not in NETS:
    raise ValueError(f"configs/resnet_imagenet.py:{arg}: choose one of {', '.join(NETS)}")
  c = base_config()
  c.model.name = NETS[arg]
  c.model.num_classes = 1000
  c.model.norm = "batch"  # Sec. 3.4
  c.model.stride_in = "paper"  # Table 1: bottlenecks down-sample in the first 1x1 conv
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters): ResNet-152 waits 28 s instead of 80 s for its first step (2 CPU cores).
  c.model.scan_blocks = False

  c.data.source = "tfds"
  c.data.name = "imagenet2012"  # manual download (TFDS manual_dir); see the docstring
  c.data.normalize = "channel"  # deviation: the paper subtracts the per-pixel mean
  c.data.augment.flip = True  # Sec. 3.4: horizontal flips
  # With --config.data.source=folder --config.data.streaming.enabled=True (see the docstring):
  c.data.streaming.augment = "inception"  # deviation: the paper's [256, 480] scale jitter
  c.data.streaming.resize = 256
  c.data.streaming.crop = 224

  c.batch_size = 256  # Sec. 3.4
  c.eval_batch_size = 250
  c.num_epochs = 120.0  # Sec. 3.4: up to 600k iterations of 256

  c.optimizer.name = "sgd"
  c.optimizer.lr = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_mode = "l2"

  c.schedule.name = "multistep"  # Sec. 3.4: lr / 10 on plateau; fixed epochs here
  c.schedule.unit = "epoch"
  c.schedule.boundaries = (30.0, 60.0, 90.0)
  c.schedule.decay_factor = 0.1

  c.log_every_steps = 100
  c.eval_every_epochs = 1.0
  c.checkpoint_every_steps = 5000
  return c
