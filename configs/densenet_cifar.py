"""python -m classic_cnns.main --config=configs/densenet_cifar.py:bc100_12 --workdir=/tmp/densenet_bc100_12

CIFAR-10 DenseNets of Huang et al. 2017, "Densely Connected Convolutional Networks", Table 2.
The argument after ':' is `<net>[,noaug]` (default bc100_12):
  :40_12  :100_12  :100_24                    DenseNet (L, k), no bottleneck, no compression
  :bc100_12  :bc250_24  :bc190_40             DenseNet-BC (bottleneck + compression 0.5)
  :bc100_12,noaug                             the "C10" column: no augmentation, dropout 0.2
Without `noaug` it is the "C10+" column (standard augmentation, no dropout).

Recipe:
  data        Sec. 4.1: "standard data augmentation scheme (mirroring/shifting)" for C10+: random
              horizontal flip and a random crop after zero-padding 4 pixels (the authors' Torch
              code, from fb.resnet.torch); channel mean/std normalisation; "for the final run we use
              all 50,000 training images and report the final test error at the end of training"
              (val_size=0; use --config.data.val_size=5000 to hold out the paper's 5k validation set).
  model       Sec. 4.2: dropout 0.2 after each conv except the first, only without augmentation.
  optimizer   Sec. 4.2: SGD, Nesterov momentum 0.9 (without dampening), batch 64, weight decay 1e-4
              (an L2 term; conv/FC kernels only -- the paper does not say; decay_mask=all for every
              parameter).
  schedule    Sec. 4.2: 300 epochs, lr 0.1 divided by 10 at 50% and 75% of training (epochs 150, 225).

Data: TFDS "cifar10" by default (needs network). Offline, the train-only JPEG tree of ../shared
(see configs/resnet_cifar.py): `tar xzf ../shared/datasets/cifar10_jpeg_train.tar.gz -C /tmp`, then
  --config.data.source=folder --config.data.path=/tmp/cifar10_jpeg --config.data.val_size=5000
(that tree has no test split: a validation split must be held out, and the final numbers are on it).
Memory: the O(L^2) concatenations of the deep nets are large; --config.model.memory_efficient=True
recomputes them in the backward pass (same results).
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {
  "40_12": "densenet40_k12",
  "100_12": "densenet100_k12",
  "100_24": "densenet100_k24",
  "bc100_12": "densenet_bc_100_12",
  "bc250_24": "densenet_bc_250_24",
  "bc190_40": "densenet_bc_190_40",
}
ARGS = tuple(NETS) + tuple(f"{n},noaug" for n in NETS)


def get_config(arg: str | None = None):
  parts = [p.strip() for p in (arg or "bc100_12").split(",") if p.strip()]
  net, opts = parts[0], set(parts[1:])
  if net not in NETS or not opts <= {"noaug"}:
    raise ValueError(
      f"configs/densenet_cifar.py:{arg}: use <net>[,noaug] with <net> one of {', '.join(NETS)}"
    )
  augment = "noaug" not in opts

  c = base_config()
  c.model.name = NETS[net]
  c.model.norm = "batch"
  c.model.dropout = 0.0 if augment else 0.2  # Sec. 4.2: dropout 0.2 only without augmentation
  c.model.memory_efficient = (
    False  # Pleiss et al. 2017: recompute the concatenations (same outputs)
  )
  # Not from the paper: True runs each dense block as one lax.scan (same variables and function;
  # the 1x1 convs run over the block's full width): DenseNet-BC-250 waits 118 s instead of 298 s for
  # its first step on 2 CPU cores but trains slower (BENCHMARKS.md "First-step wait").
  c.model.scan_layers = False
  common.cifar10(c, augment)  # Sec. 4.1 "mirroring/shifting" (pad 4 + random crop + flip)
  c.data.val_size = 0  # Sec. 4.1: the final run trains on all 50k images
  c.data.normalize = "channel"  # Sec. 4.1: channel means and standard deviations

  c.batch_size = 64  # Sec. 4.2
  c.eval_batch_size = 500
  c.num_epochs = 300.0  # Sec. 4.2
  common.sgd(c, lr=0.1, weight_decay=1e-4, nesterov=True)  # Sec. 4.2: Nesterov 0.9, no dampening
  common.multistep(c, (150.0, 225.0))  # Sec. 4.2: /10 at 50% and 75% of the epochs
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=2000, eval_every_epochs=5.0)
  return c
