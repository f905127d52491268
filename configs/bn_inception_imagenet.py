"""python -m classic_cnns.main --config=configs/bn_inception_imagenet.py:x30 --workdir=/tmp/bn_inception_imagenet

BN-Inception (Inception v2) on ImageNet (ILSVRC-2012), Ioffe & Szegedy 2015, "Batch Normalization:
Accelerating Deep Network Training by Reducing Internal Covariate Shift", Sec. 4.2 and the
appendix (Fig. 5). The argument after ':' picks the training variant of Sec. 4.2.2 (default x30):
  :baseline   BN-Baseline: "same as Inception with Batch Normalization before each nonlinearity",
              initial lr 0.0015 (Inception's), without the changes of Sec. 4.2.1
  :x5         BN-x5: BN + the Sec. 4.2.1 changes, initial lr 0.0075 (5x)
  :x30        BN-x30: as BN-x5 with initial lr 0.045 (30x); best single-crop accuracy 74.8%
              (Fig. 3), i.e. the 25.2% top-1 error of the single BN-Inception network (Fig. 4)
Fig. 3 (steps of batch 32 to reach Inception's 72.2%): Inception 31.0M, BN-Baseline 13.3M,
BN-x5 2.1M, BN-x30 2.7M.

Model: classic_cnns/models/inception.py `inception_v2`: GoogLeNet with BN before every ReLU and each
5x5 conv replaced by two 3x3 convs (Sec. 4.2, Fig. 5); convs without bias (BN's shift replaces it,
Sec. 3.2); 11,285,224 params as Fig. 5 lists the layers (the paper's text says 13.6M, Sec. 4.2;
Fig. 5 does not add up to it, see the model file).

Recipe (Sec. 4.2 unless stated):
  optimizer   SGD with momentum, batch 32. The momentum value is not given; 0.9 (ours, GoogLeNet
              Sec. 6). The paper trains on a distributed system (asynchronous replicas, as Dean et
              al. 2012); here one synchronous batch of 32 (scale lr with the batch).
  lr          initial 0.0015 / 0.0075 / 0.045 (Sec. 4.2.2). Inception's exponential decay is
              GoogLeNet's "4% every 8 epochs" (GoogLeNet Sec. 6): schedule step, x0.96 every 8
              epochs for :baseline; Sec. 4.2.1 "Accelerate the learning rate decay": 6 times faster
              for :x5 / :x30, x0.96 every 8/6 = 1.33 epochs.
  weight decay  Inception's L2 weight is not given in either paper: 2e-4 (ours, the BVLC GoogLeNet
              reproduction, as configs/googlenet_imagenet.py) for :baseline; Sec. 4.2.1 "Reduce the
              L2 weight regularization" by a factor of 5: 4e-5 for :x5 / :x30. An L2 term on conv/FC
              kernels (the paper does not say which parameters; --config.optimizer.decay_mask=all).
  dropout     :baseline keeps Inception's dropout before the classifier, 0.4 (GoogLeNet Sec. 5);
              Sec. 4.2.1 "Remove Dropout": 0 for :x5 / :x30.
  length      not given (Fig. 2 plots accuracy against steps). Ours: :baseline 400 epochs (16M steps
              of 32, past the 13.3M steps BN-Baseline needs for 72.2%, Fig. 3); :x5 / :x30 100 epochs
              (4M steps; the lr has then decayed to 5% of its initial value).
  data        the paper does not describe its crops; ours: Inception's (GoogLeNet Sec. 6: 8-100% of
              the area, aspect 3/4-4/3, the streaming pipeline's inception crop) + flips, and
              per-channel mean/std normalisation. Evaluation on a single centre 224 crop of the
              256-resized image ("a single crop per image", Sec. 4.2). Sec. 4.2.1 "Shuffle training
              examples more thoroughly": every epoch visits the whole training set in a fresh
              random order.
  photometric distortions  Inception's are not quantified in either paper; as colour jitter (ours):
              brightness/contrast/saturation 0.4 for :baseline (fb.resnet.torch's strengths); Sec.
              4.2.1 "Reduce the photometric distortions": 0.2 for :x5 / :x30.
Deviations (named options):
  LRN         Inception's local response normalisation is not in `inception_v2`, so :baseline has
              none (Sec. 4.2.1 removes it for :x5 / :x30, as here).
  Sigmoid     BN-x5-Sigmoid (Sec. 4.2.2, Fig. 3: 69.8%) is not available: `inception_v2` has no
              activation option.

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/bn_inception_imagenet.py:x30 --workdir=/tmp/bn_inception_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
The model builds and summarises on any machine: python -m classic_cnns.summary --model=inception_v2
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

# variant -> (initial lr, Sec. 4.2.1 changes applied)
VARIANTS = {"baseline": (0.0015, False), "x5": (0.0075, True), "x30": (0.045, True)}
ARGS = tuple(VARIANTS)

INCEPTION_WEIGHT_DECAY = 2e-4  # ours: the paper gives no value (BVLC GoogLeNet reproduction)
INCEPTION_LR_DECAY_EPOCHS = 8.0  # GoogLeNet Sec. 6: x0.96 every 8 epochs


def get_config(arg: str | None = None):
  arg = common.choose(arg, "x30", VARIANTS, "bn_inception_imagenet.py")
  lr, accelerated = VARIANTS[arg]

  c = base_config()
  c.model.name = "inception_v2"
  c.model.norm = "batch"  # Sec. 4.2: BN before each nonlinearity
  c.model.dropout = 0.0 if accelerated else 0.4  # Sec. 4.2.1 "Remove Dropout"; GoogLeNet Sec. 5
  common.imagenet(c, "inception")  # GoogLeNet Sec. 6 crops + flips; centre 224 of 256 for eval
  jitter = 0.2 if accelerated else 0.4  # Sec. 4.2.1 "Reduce the photometric distortions" (ours)
  c.data.augment.brightness = c.data.augment.contrast = c.data.augment.saturation = jitter

  c.batch_size = 32  # Sec. 4.2
  c.eval_batch_size = 250
  c.num_epochs = 100.0 if accelerated else 400.0  # ours (the paper gives no length)
  # Sec. 4.2: SGD with momentum (0.9 ours, GoogLeNet Sec. 6); Sec. 4.2.1: L2 weight / 5
  common.sgd(
    c, lr=lr, weight_decay=INCEPTION_WEIGHT_DECAY / 5 if accelerated else INCEPTION_WEIGHT_DECAY
  )
  # exponential decay, 4% per step (GoogLeNet Sec. 6); Sec. 4.2.1: 6 times faster
  common.step_decay(
    c, INCEPTION_LR_DECAY_EPOCHS / 6 if accelerated else INCEPTION_LR_DECAY_EPOCHS, 0.96
  )
  common.cadence(
    c,
    log_every_steps=200,
    checkpoint_every_steps=10000,
    eval_every_epochs=2.0 if accelerated else 8.0,
  )
  return c
