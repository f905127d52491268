"""Max-pool gradient on XLA:CPU: JAX's own (select-and-scatter) vs `layers.max_pool`'s.

    PYTHONPATH=. python benchmarks/microbench_max_pool_grad.py

ResNet-18's stem pool at 112x112 input, batch 32 (3x3, stride 2, padding 1 on 32x56x56x64 after
ReLU), forward + backward jitted together (jax.vjp), best of 3 x 10 calls, ms; values checked equal."""
from classic_cnns import cli  # noqa: F401  (the CLI's default XLA_FLAGS)
import flax.linen as nn
import jax
import numpy as np

from classic_cnns.models import layers
from onednn_conv_profile import best_ms  # same timing protocol (best of 3 rounds); benchmarks/ is on sys.path

WINDOW, STRIDES, PADDING = (3, 3), (2, 2), ((1, 1), (1, 1))


def main() -> None:
  x = jax.nn.relu(jax.random.normal(jax.random.PRNGKey(0), (32, 56, 56, 64)))
  dy = jax.random.normal(jax.random.PRNGKey(1), (32, 28, 28, 64))
  grad = lambda pool: jax.jit(lambda x, dy: jax.vjp(lambda x: pool(x, WINDOW, STRIDES, PADDING), x)[1](dy)[0])
  jax_grad, ours = grad(nn.max_pool), grad(layers.max_pool)
  np.testing.assert_allclose(ours(x, dy), jax_grad(x, dy), rtol=1e-6, atol=1e-6)
  forward = jax.jit(lambda x: nn.max_pool(x, WINDOW, STRIDES, PADDING))
  print(f"forward alone {best_ms(forward, x, repeats=10):.1f} ms; forward + backward: JAX's select-and-scatter "
        f"{best_ms(jax_grad, x, dy, repeats=10):.1f} ms, layers.max_pool {best_ms(ours, x, dy, repeats=10):.1f} ms")


if __name__ == "__main__":
  main()
