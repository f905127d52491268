"""python -m classic_cnns.main --config=configs/lenet5_mnist.py --workdir=/tmp/lenet5_mnist

LeNet-5 (LeCun et al. 1998) on MNIST. Default: the modern `lenet5` (sigmoid, 61,706 params) on the
MNIST sample embedded in the package (10k train / 2k test; no download), so it runs anywhere.

Variants:
  --config.model.name=lenet5_lecun --config.model.act=scaled_tanh   the 1998 network (sparse C3, RBF output)
  --config.model.act=relu                    activation ablation (AlexNet Fig. 1 style)
  --config.data.source=npz --config.data.path=../shared/datasets/mnist.npz   full MNIST (60k/10k)
  --config.data.source=tfds --config.data.name=mnist                          TFDS (needs a download)

Recipe: 32x32 input (28x28 digits zero-padded, Sec. II.B); inputs normalised to zero mean / unit
variance (the paper maps background to -0.1 and ink to 1.175, Sec. II.B). The paper trained with
stochastic diagonal Levenberg-Marquardt, a per-parameter step size, for 20 epochs (Sec. III.A and
Appendix C). We use Adam (also per-parameter steps) with a cosine schedule: with sigmoid units,
SGD+momentum at lr 0.1 reached only 93% on the sample in 20 epochs, at lr 0.5 it did not train.
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")


def get_config():
  c = base_config()
  c.model.name = "lenet5"
  c.model.num_classes = 10
  c.model.act = "sigmoid"  # sigmoid | tanh | relu | scaled_tanh (lenet5_lecun: scaled_tanh)
  c.data.source = "embedded"
  c.data.pad_to = 32
  c.batch_size = 64
  c.num_epochs = 15.0
  c.optimizer.name = "adam"
  c.optimizer.lr = 0.01
  c.schedule.name = "cosine"
  common.cadence(c, log_every_steps=100, checkpoint_every_steps=500, eval_every_epochs=3.0)
  return c
