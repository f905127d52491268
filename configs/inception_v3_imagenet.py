"""python -m classic_cnns.main --config=configs/inception_v3_imagenet.py --workdir=/tmp/inception_v3_imagenet

Inception-v3 on ImageNet (ILSVRC-2012), Szegedy et al. 2016, "Rethinking the Inception
Architecture for Computer Vision": the final model of Table 3 (factorised 7x7, BN-auxiliary
head, RMSProp, label smoothing), 299x299 input, 27,161,264 params with the aux head
(torchvision layout; 23,834,568 at inference).

Recipe:
  optimizer   Sec. 8: "our best models were achieved using RMSProp with decay of 0.9 and
              epsilon = 1.0" (optimizer.b2 is the decay; eps inside the square root, as
              TensorFlow), lr 0.045 "decayed every two epochs using an exponential rate of 0.94",
              "gradient clipping with threshold 2.0" (global norm here), 100 epochs. No momentum
              term (the paper names none). The paper trained 50 replicas with batch 32 each,
              asynchronously; here one synchronous batch of 32 (scale lr with the batch).
              Weight decay: not in the paper; 4e-5 from TF-slim's Inception-v3 training.
  evaluation  Sec. 8: "model evaluations are performed using a running average of the parameters
              computed over time": config.ema_decay = 0.9999 per step (the decay is not in the
              paper; TF-slim's value), checkpointed; evaluate and predict use the average.
  loss        Sec. 7: label smoothing 0.1; the aux head's loss weight is not given, 0.3 as
              GoogLeNet (TF-slim uses 0.4).
  model       Sec. 4 / Table 3 ("BN-auxiliary"): batch-normalised auxiliary classifier; dropout
              0.5 before the final FC as torchvision (classic_cnns/models/inception.py).
  data        299x299 random-resized crops and flips (the streaming pipeline's inception crop);
              single-crop evaluation at 299 (Table 3).

Data: ImageNet (ILSVRC-2012), streamed: decoded and cropped on the host, normalised in jit; as
configured from TFDS "imagenet2012" (a manual download, see configs/common.py). From JPEG folders
root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG:
  python -m classic_cnns.main --config=configs/inception_v3_imagenet.py --workdir=/tmp/inception_v3_imagenet \\
      --config.data.source=folder --config.data.path=/data/imagenet
data.streaming below: inception: random-resized 299 crops + flips; evaluation resizes the
  shorter side to 342 and takes the centre 299 (the usual 0.875 crop; the paper does not say).
The model builds and summarises on any machine: python -m classic_cnns.summary --model=inception_v3
"""

from classic_cnns.cli import load_beside
from classic_cnns.config import base_config

common = load_beside(__file__, "common.py")

ARGS = ()  # no argument


def get_config(arg: str | None = None):
  common.no_argument(arg, "inception_v3_imagenet.py")
  c = base_config()
  c.model.name = "inception_v3"
  c.model.norm = "batch"
  c.loss.label_smoothing = 0.1  # Sec. 7
  c.ema_decay = 0.9999  # Sec. 8: evaluate a running average of the parameters (decay: ours)
  c.loss.aux_weight = 0.3
  common.imagenet(c, "inception", crop=299, resize=342)  # eval: shorter side 342, centre 299

  c.batch_size = 32  # Sec. 8: 32 per replica
  c.eval_batch_size = 250
  c.num_epochs = 100.0  # Sec. 8
  c.optimizer.name = "rmsprop"  # Sec. 8
  c.optimizer.lr = 0.045
  c.optimizer.b2 = 0.9  # RMSProp decay
  c.optimizer.eps = 1.0
  c.optimizer.grad_clip_norm = 2.0  # Sec. 8
  c.optimizer.weight_decay = 4e-5  # TF-slim; the paper gives none
  c.optimizer.weight_decay_mode = "l2"
  common.step_decay(c, 2.0, 0.94)  # Sec. 8: x0.94 every two epochs
  common.cadence(c, log_every_steps=200, checkpoint_every_steps=10000, eval_every_epochs=2.0)
  return c
