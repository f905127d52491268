"""python -m classic_cnns.main --config=configs/cbam_imagenet.py --workdir=/tmp/cbam_resnet50_imagenet

CBAM-ResNet-50 on ImageNet (ILSVRC-2012), Woo, Park, Lee & Kweon 2018, "CBAM: Convolutional Block
Attention Module" (no argument). 28,089,624 params (Table 4: 28.09M; 3.864 vs 3.858 GFLOPs of
ResNet-50).
Table 4 top-1/top-5 error (unconfirmed: not checked against the paper text): CBAM-ResNet-50
22.66/6.31, SE-ResNet-50 23.14/6.70, ResNet-50 24.56/7.50, all trained by the authors with the
recipe below.

Model (Sec. 3, Fig. 3): on the residual branch of every bottleneck, after its last BN and before the
addition, channel attention (average- and max-pooled descriptors through one shared MLP, reduction
r=16, summed, sigmoid) then spatial attention (7x7 conv over the channel-wise [average, max] maps,
BN, sigmoid) -- the order and pooling of the best Sec. 4.1 variants (unconfirmed: channel avg+max
22.80 vs avg 23.14 / max 23.20; spatial avg+max k=7 22.66; channel -> spatial 22.66 vs spatial ->
channel 22.78 vs parallel 22.95 top-1). Bottlenecks down-sample in their first 1x1 conv
(model.stride_in="paper", the ResNet paper's layout). The MLP keeps its biases.

Recipe. Stated in Sec. 4.1 (unconfirmed: not checked against the paper text): the data
augmentation of the ResNet papers, "single-crop evaluation with the size of 224x224", lr "starts
from 0.1 and drops every 30 epochs", 90 epochs. Not stated in the paper; ours, the ResNet values
(He et al. 2016 Sec. 3.4): SGD momentum 0.9, batch 256, weight decay 1e-4 (an L2 term on conv/FC
kernels).
  schedule    lr 0.1, x0.1 every 30 epochs (schedule step; the factor is not stated, ours as ResNet),
              90 epochs.
  data        random-size crops (8-100% of the area, aspect 3/4-4/3) to 224 + flips, the streaming
              pipeline's inception crop, per-channel mean/std normalisation (the common PyTorch
              ImageNet recipe); evaluation on the centre 224 crop of the 256-resized image.
Deviation (named option): the ResNet paper's own augmentation (He et al. 2016 Sec. 3.4: shorter
side in [256, 480], random 224 crop, AlexNet colour augmentation) is
  --config.data.streaming.augment=scale_jitter --config.data.streaming.scale_min=256
  --config.data.streaming.scale_max=480 --config.data.augment.pca_lighting=0.1
(configs/resnet_imagenet.py uses it); which of the two Sec. 4.1 means is not settled here.

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/cbam_imagenet.py --workdir=/tmp/cbam_resnet50_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
The model builds and summarises on any machine: python -m classic_cnns.summary --model=cbam_resnet50
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

ARGS = ()  # no argument


def get_config(arg: str | None = None):
  common.no_argument(arg, "cbam_imagenet.py")
  c = base_config()
  c.model.name = "cbam_resnet50"
  c.model.norm = "batch"
  c.model.attn = "cbam"  # Fig. 3; the registered model already uses CBAM, this exposes r
  c.model.attn_reduction = 16  # Sec. 3: r = 16
  c.model.stride_in = "paper"  # the ResNet paper's bottleneck layout (3.864 GFLOPs)
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters), a shorter first-step wait.
  c.model.scan_blocks = False
  common.imagenet(c, "inception")  # random-size crops + flips; centre 224 of 256 for evaluation

  c.batch_size = 256  # ours (ResNet Sec. 3.4)
  c.eval_batch_size = 250
  c.num_epochs = 90.0  # Sec. 4.1 (unconfirmed)
  common.sgd(c, lr=0.1, weight_decay=1e-4)  # lr Sec. 4.1 (unconfirmed); the rest ResNet Sec. 3.4
  common.step_decay(c, 30.0, 0.1)  # Sec. 4.1 (unconfirmed): drops every 30 epochs
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=5000, eval_every_epochs=1.0)
  return c
