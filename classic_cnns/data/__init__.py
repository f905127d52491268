"""Data: sources (embedded sample, npz, TFDS, image folder), in-jit augmentation, batching."""
