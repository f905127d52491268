"""classic_cnns: the classic image-classification CNNs in JAX/Flax, paper-exact."""

__version__ = "0.1.0"
