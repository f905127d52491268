"""oneDNN vs XLA per pass for DenseNet-121 conv shapes at 112x112, batch 16 (ms per call, best of
interleaved rounds, kernels/autotune.measure). Run: PYTHONPATH=. python benchmarks/conv_shapes_densenet121.py"""
from classic_cnns import cli
from classic_cnns.kernels import autotune, onednn
onednn.require()
P1 = ((0, 0), (0, 0)); P3 = ((1, 1), (1, 1))
shapes = [((16, 28, 28, 256), (1, 1, 256, 128), P1), ((16, 14, 14, 512), (1, 1, 512, 128), P1),
          ((16, 7, 7, 1024), (1, 1, 1024, 128), P1), ((16, 14, 14, 256), (1, 1, 256, 128), P1),
          ((16, 28, 28, 128), (3, 3, 128, 32), P3), ((16, 14, 14, 128), (3, 3, 128, 32), P3),
          ((16, 7, 7, 128), (3, 3, 128, 32), P3), ((16, 28, 28, 512), (1, 1, 512, 256), P1)]
print("conv | fwd oneDNN/XLA ms | dx | dw")
for x, w, p in shapes:
  t = autotune.measure(x, w, (1, 1), p)
  print(x, w, " | ".join(f"{1e3*t[k]['onednn']:.2f}/{1e3*t[k]['xla']:.2f}" for k in ("forward", "backward_data", "backward_weights")), flush=True)
