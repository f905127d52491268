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
  data        "The image is resized with its shorter side randomly sampled in [256, 480] for scale
              augmentation", a random 224x224 crop of it or its horizontal flip (the streaming
              pipeline's scale_jitter: scale_min=256, scale_max=480, crop=224), "the standard color
              augmentation" of AlexNet (PCA lighting, std 0.1: data.augment.pca_lighting, with
              ImageNet's RGB eigenvectors from classic_cnns/data/metadata.py). Evaluation here: the
              centre 224 crop of the 256-resized image; the paper's "standard 10-crop testing" of
              its comparisons: python -m classic_cnns.evaluate --config=configs/resnet_imagenet.py:50
              --workdir=... --protocol=ten_crop. Not available: its best results' fully-
              convolutional scores averaged over shorter sides {224, 256, 384, 480, 640}
              (classic_cnns/evaluate.py --protocol=dense needs a model with a `dense` mode, which
              the ResNets do not have).
Deviation (named option), Sec. 3.4 "per-pixel mean subtracted": streamed images cropped on the
host have no fixed frame for a mean image, so this config subtracts the per-channel mean and
divides by the per-channel std (data.normalize=channel). The paper's per-pixel mean needs the host
to hand over fixed canvases and the scale jitter to run in jit:
  --config.data.streaming.augment=canvas --config.data.streaming.resize=480
  --config.data.augment.crop=scale_jitter --config.data.augment.scale_min=256
  --config.data.augment.scale_max=480 --config.data.augment.crop_size=224
  --config.data.normalize=pixel --config.data.divide_std=False
which crops only within the central 480x480 square of each image and moves 4.6x the bytes of a
224 crop per image to the device.

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/resnet_imagenet.py:50 --workdir=/tmp/resnet50_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: scale_jitter: shorter side S ~ U[256, 480], random 224 crops + flips, Sec. 3.4.
The model builds and summarises on any machine: python -m classic_cnns.summary --model=resnet50
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {
  "18": "resnet18",
  "34": "resnet34",
  "50": "resnet50",
  "101": "resnet101",
  "152": "resnet152",
  "plain18": "plain18",
  "plain34": "plain34",
  "34A": "resnet34_a",
  "34C": "resnet34_c",
}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "50", NETS, "resnet_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  c.model.norm = "batch"  # Sec. 3.4
  c.model.stride_in = "paper"  # Table 1: bottlenecks down-sample in the first 1x1 conv
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters): ResNet-152 waits 28 s instead of 80 s for its first step (2 CPU cores).
  c.model.scan_blocks = False
  # Sec. 3.4: shorter side in [256, 480], random 224 crop + flips; evaluation: centre 224 crop of
  # the 256-resized image. Deviation: per-channel mean/std, not the per-pixel mean (docstring).
  common.imagenet(c, "scale_jitter")
  c.data.streaming.scale_min = 256
  c.data.streaming.scale_max = 480
  c.data.augment.pca_lighting = 0.1  # Sec. 3.4: "the standard color augmentation" of AlexNet

  c.batch_size = 256  # Sec. 3.4
  c.eval_batch_size = 250
  c.num_epochs = 120.0  # Sec. 3.4: up to 600k iterations of 256
  common.sgd(c, lr=0.1, weight_decay=1e-4)  # Sec. 3.4
  common.multistep(c, (30.0, 60.0, 90.0))  # Sec. 3.4: lr / 10 on plateau; fixed epochs here
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
