"""python -m classic_cnns.main --config=configs/senet_imagenet.py:50 --workdir=/tmp/se_resnet50_imagenet

SE-ResNets on ImageNet (ILSVRC-2012), Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks".
The argument after ':' picks the network (default 50):
  :50   SE-ResNet-50, reduction r=16, biased excitation FCs (28,088,024 params; Table 2: 28.1M,
        23.29/6.62 single-crop top-1/top-5 error vs 24.80/7.48 for the authors' ResNet-50)
  :18 :34   SE-ResNet-18 / -34 (derived counts; see classic_cnns/models/resnet.py)

Recipe (journal version, Sec. 5.1 "Image Classification"):
  optimizer   synchronous SGD, momentum 0.9, batch 1024, lr 0.6 "decreased by a factor of 10 every
              30 epochs", 100 epochs from scratch with He init. Weight decay is not given; 1e-4
              (ours, the ResNet value) as an L2 term on conv/FC kernels.
  model       SE block on the residual branch before the addition (Fig. 3), r = 16; the
              bottleneck's stride in its first 1x1 conv (the ResNet paper's layout, 3.86 GFLOPs).
  data        "random cropping using scale and aspect ratio" to 224 and random horizontal flips
              (the streaming pipeline's inception crop); "mean RGB-channel subtraction": the
              per-channel mean, no division by the std (data.divide_std=False); evaluation on the
              centre 224 crop of the 256-resized image (Table 2).
Reduction-ratio ablation (Table 10, Sec. 6.1): --config.model.attn_reduction=2|4|8|16|32.
Deviation (named option): Sec. 6 trains its ablations with the excitation FCs WITHOUT biases
(Table 10's counts, 45.7 / 35.7 / 30.7 / 28.1 / 26.9M); our SE FCs keep them (the config cannot
switch them off), and Table 10's other training settings are those of the ablation section, not
this recipe.

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/senet_imagenet.py:50 --workdir=/tmp/se_resnet50_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: inception: random-resized 224 crops + flips (Sec. 5.1).
The model builds and summarises on any machine: python -m classic_cnns.summary --model=se_resnet50
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {"50": "se_resnet50", "18": "se_resnet18", "34": "se_resnet34"}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "50", NETS, "senet_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  c.model.norm = "batch"
  c.model.attn = "se"  # Fig. 3; the registered models already use SE, this exposes r
  c.model.attn_reduction = 16  # Sec. 3.2 / Table 10: r = 16
  if arg == "50":
    c.model.stride_in = "paper"  # bottlenecks down-sample in their first 1x1 conv (ResNet Table 1)
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters): ResNet-152 waits 28 s instead of 80 s for its first step (2 CPU cores).
  c.model.scan_blocks = False
  common.imagenet(c, "inception")  # Sec. 5.1: random-size cropping + flips
  c.data.divide_std = False  # Sec. 5.1: mean RGB-channel subtraction only

  c.batch_size = 1024  # Sec. 5.1
  c.eval_batch_size = 500
  c.num_epochs = 100.0
  common.sgd(c, lr=0.6, weight_decay=1e-4)  # Sec. 5.1; weight decay ours (the paper gives none)
  common.step_decay(c, 30.0, 0.1)  # lr / 10 every 30 epochs
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=2000, eval_every_epochs=1.0)
  return c
