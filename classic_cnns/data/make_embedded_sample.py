"""Rebuilds the embedded MNIST sample `classic_cnns/data/mnist_sample.npz` from full MNIST.

    python -m classic_cnns.data.make_embedded_sample --mnist=../shared/datasets/mnist.npz

Draws 10,000 training and 2,000 test images without replacement with numpy seed 0, keeping
MNIST's own train/test separation, sorted by original index. MNIST (Y. LeCun, C. Cortes) is
distributed under CC BY-SA 3.0; the sample is a derivative and carries the same licence (see
classic_cnns/data/MNIST_SAMPLE_LICENSE.md).
"""

from __future__ import annotations

import argparse
import os

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "mnist_sample.npz")


def make_sample(
  mnist_path: str, out_path: str = OUT, n_train: int = 10_000, n_test: int = 2_000, seed: int = 0
) -> None:
  with np.load(mnist_path) as f:
    data = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  rng = np.random.RandomState(seed)
  tr = np.sort(rng.choice(len(data["x_train"]), n_train, replace=False))
  te = np.sort(rng.choice(len(data["x_test"]), n_test, replace=False))
  np.savez_compressed(
    out_path,
    x_train=data["x_train"][tr],
    y_train=data["y_train"][tr].astype(np.uint8),
    x_test=data["x_test"][te],
    y_test=data["y_test"][te].astype(np.uint8),
    train_index=tr.astype(np.int32),
    test_index=te.astype(np.int32),
  )


if __name__ == "__main__":
  p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--mnist", default="../shared/datasets/mnist.npz")
  p.add_argument("--out", default=OUT)
  a = p.parse_args()
  make_sample(a.mnist, a.out)
  print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.2f} MB)")
