"""python -m classic_cnns.main --config=configs/groupnorm_imagenet.py:gn --workdir=/tmp/resnet50_gn_imagenet

ResNet-50 with Group Normalization vs Batch Normalization on ImageNet, Wu & He 2018, "Group
Normalization", Sec. 5.1 (Tables 1-3, Fig. 1). The argument after ':' picks the norm (default gn):
  :gn   GroupNorm, G=32 groups (--config.model.norm_groups=G for Table 3: 64/32/16/8/4/2/1)
  :bn   BatchNorm, statistics per GPU
  :ln   LayerNorm     :in   InstanceNorm   (Table 1)
All four have the same parameter count (25,557,032).

Recipe (Sec. 5.1):
  model       the norm replaces every BN of ResNet-50; gamma = 0 for the last norm of each residual
              block (model.zero_init_last_norm, after Goyal et al. 2017), gamma = 1 elsewhere.
  BN stats    "BN is performed per GPU" (:bn sets bn.stats="per_device"): 8 GPUs x 32 images, so on 8
              devices each BN sees 32 images. On fewer devices keep the paper's 32 images per
              statistic with --config.bn.stats=ghost --config.bn.ghost_batch_size=32; the batch-size
              study (Fig. 1/Table 2: 32/16/8/4/2 images per GPU) sets ghost_batch_size=N with
              --config.batch_size=8N and lr 0.1 * N / 32.
  optimizer   SGD momentum 0.9, batch 256 (32 per GPU), lr 0.1 (0.1 * N / 32 for N images per
              GPU), weight decay 1e-4 "applied to all weight layers, including gamma and beta"
              (optimizer.decay_mask="all", an L2 term).
  schedule    100 epochs, lr divided by 10 at epochs 30, 60 and 90.
  data        224x224 random-size crops and flips (Szegedy et al. / fb.resnet.torch: the streaming
              pipeline's inception crop); per-channel mean/std normalisation; evaluation on the
              centre 224 crop of the 256-resized validation image.
The bottleneck stride is where the registered resnet50 has it: the ResNet paper's layout
(stride in the first 1x1 conv; the GN paper does not say; resnet50_v1_5 is torchvision's).

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/groupnorm_imagenet.py:gn --workdir=/tmp/resnet50_gn_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: inception: random-resized 224 crops + flips.
The model builds and summarises on any machine: python -m classic_cnns.summary --model=resnet50
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NORMS = {"gn": "group", "bn": "batch", "ln": "layer", "in": "instance"}
ARGS = tuple(NORMS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "gn", NORMS, "groupnorm_imagenet.py")
  c = base_config()
  c.model.name = "resnet50"
  c.model.norm = NORMS[arg]
  c.model.norm_groups = 32  # Sec. 5.1 / Table 3: G = 32
  c.model.zero_init_last_norm = True  # Sec. 5.1: gamma = 0 in each block's last norm
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters): ResNet-152 waits 28 s instead of 80 s for its first step (2 CPU cores).
  c.model.scan_blocks = False
  if c.model.norm == "batch":  # Sec. 5.1: BN statistics per GPU (GN/LN/IN have no batch statistics)
    c.bn.stats = "per_device"
  common.imagenet(c, "inception")  # random-size cropping + flips

  c.batch_size = 256  # 8 GPUs x 32 images
  c.eval_batch_size = 250
  c.num_epochs = 100.0  # Sec. 5.1
  common.sgd(c, lr=0.1, weight_decay=1e-4)  # lr 0.1 * N / 32 with N = 32 images per GPU
  c.optimizer.decay_mask = "all"  # Sec. 5.1: including gamma and beta
  common.multistep(c, (30.0, 60.0, 90.0))  # Sec. 5.1: / 10 at 30, 60, 90 epochs
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
