"""python -m classic_cnns.main --config=configs/resnet_cifar.py:56 --workdir=/tmp/resnet56_cifar

CIFAR-10 ResNets and plain nets of He et al. 2016, "Deep Residual Learning for Image Recognition",
Sec. 4.2 (Table 6, Fig. 6). The argument after ':' picks the network (default 20):
  :20 :32 :44 :56 :110 :1202                  ResNet-(6n+2), option-A shortcuts (0.27M ... 19.4M)
  :plain20 :plain32 :plain44 :plain56 :plain110   the plain nets of Fig. 6 (same layers, no shortcuts)

Recipe (Sec. 4.2 unless stated):
  data        45k/5k train/val split of the 50k training images, final numbers on the 10k test
              images; augmentation "4 pixels are padded on each side, and a 32x32 crop is randomly
              sampled from the padded image or its horizontal flip"; testing on the original view.
  input       the per-pixel mean image of the training split is subtracted, no std division
              (config.data.normalize="pixel", divide_std=False), as the paper.
  model       BN after every conv (Sec. 3.4), He init, no dropout; option A (identity) shortcuts,
              so plain and residual nets have identical counts.
  optimizer   SGD momentum 0.9, batch 128, weight decay 1e-4 as an L2 term (0.5 * wd * |w|^2 in the
              loss, the Caffe/Torch convention). The paper does not say which parameters decay; we
              decay conv/FC kernels only (--config.optimizer.decay_mask=all for every parameter).
  schedule    lr 0.1, divided by 10 at 32k and 48k iterations, stop at 64k (~182 epochs of 45k).
              Warmup for 110 and deeper: the paper uses lr 0.01 "until the training error is below
              80% (about 400 iterations)", then 0.1. Ours is a LINEAR ramp from 0.01 to 0.1 over 400
              iterations (schedule.warmup=400 steps, warmup_init=0.1), not a constant 0.01 phase. The
              paper states the warmup for ResNet-110; we also apply it to plain110 and ResNet-1202.

Compile time: --config.model.scan_blocks=True runs each stage's repeated blocks as one scan (same
network; ResNet-110 waits 11 s instead of 45 s for its first step and trains 2x faster on CPU); it is
the default for :1202 only (classic_cnns/models/resnet.py, BENCHMARKS.md "First-step wait").

Data: the default downloads CIFAR-10 through TFDS (needs network and tensorflow-datasets). Offline,
with the JPEG training images of ../shared (a 50k train-only tree; JPEG artefacts cost some
accuracy, compare variants with each other):
  tar xzf ../shared/datasets/cifar10_jpeg_train.tar.gz -C /tmp
  python -m classic_cnns.main --config=configs/resnet_cifar.py:56 --workdir=/tmp/resnet56_jpeg \\
      --config.data.source=folder --config.data.path=/tmp/cifar10_jpeg
The folder has no test split, so data.val_size=5000 holds out the validation images and the final
evaluation is on those 5k validation images (there are no test images to report).
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

DEPTHS = (20, 32, 44, 56, 110, 1202)
PLAIN_DEPTHS = (20, 32, 44, 56, 110)  # the paper trains no plain-1202
ARGS = tuple(str(d) for d in DEPTHS) + tuple(f"plain{d}" for d in PLAIN_DEPTHS)


def get_config(arg: str | None = None):
  arg = common.choose(arg, "20", ARGS, "resnet_cifar.py")
  plain = arg.startswith("plain")
  depth = int(arg[len("plain") :] if plain else arg)

  c = base_config()
  c.model.name = f"plain{depth}" if plain else f"resnet{depth}"
  c.model.norm = "batch"  # Sec. 3.4: BN right after each conv, before the activation
  # Not from the paper: True runs each stage's repeated blocks as one nn.scan (same network and
  # function, stacked parameters), compiling in seconds instead of a minute or more for deep nets; on by
  # default only for ResNet-1202, whose 600 unrolled blocks would compile for many minutes. Also
  # worth it for :110 (BENCHMARKS.md "First-step wait": 3-4x shorter wait, 2x faster CPU step).
  c.model.scan_blocks = depth == 1202
  common.cifar10(c)  # Sec. 4.2: pad 4, random 32x32 crop, or its horizontal flip
  c.data.val_size = 5000  # Sec. 4.2: 45k/5k train/val split
  c.data.normalize = "pixel"  # Sec. 4.2: "the per-pixel mean subtracted"
  c.data.divide_std = False

  c.batch_size = 128  # Sec. 4.2: mini-batch 128
  c.eval_batch_size = 1000
  c.num_steps = 64_000  # Sec. 4.2: terminate at 64k iterations
  common.sgd(c, lr=0.1, weight_decay=1e-4)  # Sec. 4.2 (momentum 0.9 as Sec. 3.4)
  common.multistep(c, (32_000, 48_000), unit="step")  # Sec. 4.2: /10 at 32k and 48k iterations
  if depth >= 110:  # Sec. 4.2 (ResNet-110): warm up at 0.01 for ~400 iterations; here a linear ramp
    c.schedule.warmup = 400
    c.schedule.warmup_init = 0.1  # starts at 0.1 * lr = 0.01
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=2000, eval_every_steps=2000)
  return c
