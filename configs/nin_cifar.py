"""python -m classic_cnns.main --config=configs/nin_cifar.py:gap --workdir=/tmp/nin_cifar_gap

Network in Network on CIFAR-10 (Lin, Chen & Yan 2014, Sec. 4.2; the global-average-pooling vs
fully-connected comparison of Sec. 4.6). The argument after ':' is `<head>[,aug]` (default gap):
  :gap          global average pooling over the class maps (the paper's network, 966,986 params)
  :fc           the last mlpconv's class maps flattened into one FC layer (973,396 params)
  :fc_dropout   the same with dropout 0.5 before the FC layer
  :gap,aug      with translation + horizontal-flip augmentation (Table 1: 8.81% vs 10.41% error)
Sec. 4.6 compares the heads without augmentation (mlpconv + GAP 10.41, FC 11.59, FC+dropout
10.88; the last two are not confirmed against the paper text).

Recipe:
  model       Sec. 4.2: three mlpconv layers, dropout 0.5 on the outputs of all but the last one
              (sizes from the authors' Caffe model; see classic_cnns/models/nin.py).
  data        50k training images, 10k test images. The paper preprocesses with global contrast
              normalisation and ZCA whitening (as Maxout); so do we (data.gcn=55, data.zca=True,
              fitted on the training split at load time, ~20 s). ",aug": translation by a random crop after zero-padding 4 pixels (the amount
              is ours; the paper gives none) and horizontal flips.
  optimizer   Sec. 4.1: mini-batches of 128, SGD with momentum; the lr is divided by 10 when the
              training accuracy stops improving, twice (final lr = 1% of the initial one). The paper
              gives no numbers; ours: momentum 0.9, lr 0.05 (without BN a plain 0.1 risks divergence at
              He init), weight decay 1e-4 on kernels, 200 epochs with the two drops at epochs 100
              and 150 instead of on plateau.
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

HEADS = {"gap": ("gap", 0.0), "fc": ("fc", 0.0), "fc_dropout": ("fc", 0.5)}
ARGS = tuple(HEADS) + tuple(f"{h},aug" for h in HEADS)


def get_config(arg: str | None = None):
  parts = [p.strip() for p in (arg or "gap").split(",") if p.strip()]
  head, opts = parts[0], set(parts[1:])
  if head not in HEADS or not opts <= {"aug"}:
    raise ValueError(
      f"configs/nin_cifar.py:{arg}: use <head>[,aug] with <head> one of {', '.join(HEADS)}"
    )

  c = base_config()
  c.model.name = "nin_cifar"
  c.model.head, c.model.head_dropout = HEADS[head]  # Sec. 4.6: GAP vs FC vs FC + dropout
  common.cifar10(c, augment="aug" in opts)
  # Sec. 4.2: global contrast normalisation + ZCA whitening, as in maxout networks (scale 55).
  c.data.normalize = "none"
  c.data.gcn = 55.0
  c.data.zca = True

  c.batch_size = 128  # Sec. 4.1
  c.eval_batch_size = 1000
  c.num_epochs = 200.0  # ours (the paper trains until the training accuracy plateaus)
  common.sgd(c, lr=0.05, weight_decay=1e-4)  # ours; the paper gives no values
  common.multistep(c, (100.0, 150.0))  # Sec. 4.1: lr / 10, twice
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=2000, eval_every_epochs=5.0)
  return c
