"""python -m classic_cnns.main --config=configs/googlenet_imagenet.py:paper --workdir=/tmp/googlenet_imagenet

GoogLeNet (Inception v1) on ImageNet (ILSVRC-2014 classification), Szegedy et al. 2015, "Going
Deeper with Convolutions". The argument after ':' (default paper):
  :paper   the paper's network with both auxiliary classifiers (13,378,280 params in training;
           6,998,552 at inference, the aux heads are dropped)
  :noaux   the same without auxiliary classifiers

Recipe:
  model       Sec. 5: auxiliary classifiers after 4a and 4d, their losses added with weight 0.3
              (loss.aux_weight) in training only; dropout 0.4 before the main classifier, 0.7 in
              the aux heads; LRN as Table 1 / Fig. 3.
  optimizer   Sec. 6: asynchronous SGD with momentum 0.9, "fixed learning rate schedule
              (decreasing the learning rate by 4% every 8 epochs)". The paper gives no initial lr,
              batch size, weight decay or length; we take them from the BVLC Caffe reproduction of
              GoogLeNet (bvlc_googlenet solver: lr 0.01, batch 32, weight decay 2e-4 on weights
              only, x0.96 every 320k iterations = 8 epochs, at most 10M iterations = 250 epochs).
              Polyak averaging of the final model (Sec. 6) is not implemented.
  data        Sec. 6: patches of 8%-100% of the image area with aspect ratio in [3/4, 4/3] and
              flips (the streaming pipeline's inception crop). Per-channel mean/std
              normalisation. Evaluation: one centre crop (the paper's 144-crop scheme is not
              available).
Deviations (named options), Sec. 6: the photometric distortions of Howard (2013) are off (the
paper gives no amounts; --config.data.augment.brightness/contrast/saturation=0.4 turns on colour
jitter of that kind); the random choice of interpolation method per crop is not available (every
resize is bilinear, antialiased).

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/googlenet_imagenet.py:paper --workdir=/tmp/googlenet_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: inception: random-resized 224 crops, area 8-100%, aspect 3/4-4/3, + flips,
  Sec. 6.
The model builds and summarises on any machine: python -m classic_cnns.summary --model=googlenet_aux
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

NETS = {"paper": "googlenet_aux", "noaux": "googlenet"}
ARGS = tuple(NETS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "paper", NETS, "googlenet_imagenet.py")
  c = base_config()
  c.model.name = NETS[arg]
  c.loss.aux_weight = 0.3  # Sec. 5
  common.imagenet(c, "inception")  # Sec. 6: 8-100% area, aspect 3/4-4/3, + flips

  c.batch_size = 32  # BVLC reproduction (the paper gives none)
  c.eval_batch_size = 250
  c.num_epochs = 250.0  # BVLC: max 10M iterations of 32
  common.sgd(c, lr=0.01, weight_decay=2e-4)  # momentum Sec. 6; lr and weight decay BVLC
  common.step_decay(c, 8.0, 0.96)  # Sec. 6: -4% every 8 epochs
  common.cadence(c, log_every_steps=200, checkpoint_every_steps=10000, eval_every_epochs=2.0)
  return c
