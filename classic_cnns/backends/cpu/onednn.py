"""oneDNN convolutions for XLA:CPU, called through the XLA FFI (`onednn_conv.cc` beside this file).

Why: XLA:CPU's own convolutions (Eigen) are 2-7x slower than oneDNN's JIT/brgemm kernels on the
small-channel convolutions of the classic CNNs, and its weight gradient first transposes every
activation to channel-major; PyTorch's CPU build calls oneDNN (BENCHMARKS.md, CPU section).
This module builds the kernel library on first use with the system's C++ compiler against the
system's oneDNN (Debian/Ubuntu: `apt-get install g++ libdnnl-dev`), caches the shared object under
`~/.cache/classic_cnns` (`CLASSIC_CNNS_CACHE`), registers three FFI targets, and exposes
`conv2d`: an NHWC x HWIO float32 convolution with a `custom_vjp` whose backward pass is oneDNN's
backward-data and backward-weights convolutions. The values equal `lax.conv_general_dilated` to
float32 rounding (tests/backends/test_onednn.py).

`available()` says whether the library can be used here and, if not, why. Where the oneDNN headers
are not in the compiler's default paths, `CLASSIC_CNNS_ONEDNN_ROOT` names the prefix holding
`include/oneapi/dnnl/dnnl.hpp` and `lib/libdnnl.so`.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from classic_cnns import machine

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onednn_conv.cc")
_TARGETS = {
  "forward": "ClassicCnnsConvForward",
  "backward_data": "ClassicCnnsConvBackwardData",
  "backward_weights": "ClassicCnnsConvBackwardWeights",
}
_lock = threading.Lock()
_state: dict[str, object] = {}  # "ok": bool, "reason": str, "library": path


class OneDnnUnavailable(RuntimeError):
  """The oneDNN kernel library cannot be built or loaded here; the message says why (one line)."""


def _compile_command(output: str) -> list[str]:
  wanted = os.environ.get("CXX")
  compiler = shutil.which(wanted) if wanted else (shutil.which("g++") or shutil.which("c++"))
  if not compiler:
    raise OneDnnUnavailable(
      f"C++ compiler {wanted!r} not found (CXX)"
      if wanted
      else "no C++ compiler found (install g++ or set CXX)"
    )
  command = [compiler, "-O3", "-std=c++17", "-shared", "-fPIC", "-w", f"-I{jax.ffi.include_dir()}"]
  root = os.environ.get("CLASSIC_CNNS_ONEDNN_ROOT")
  if root:
    command += [
      f"-I{os.path.join(root, 'include')}",
      f"-L{os.path.join(root, 'lib')}",
      f"-Wl,-rpath,{os.path.join(root, 'lib')}",
    ]
  return command + [SOURCE, "-o", output, "-ldnnl"]


def _build() -> str:
  """Compiles the kernel library once per (source, jaxlib, compile command); returns its path."""
  probe = _compile_command("OUT")
  with open(SOURCE, "rb") as f:
    digest = hashlib.sha256(
      f.read() + " ".join(probe).encode() + jax.__version__.encode()
    ).hexdigest()[:16]
  path = os.path.join(machine.cache_dir(), f"onednn_conv-{digest}.so")
  if os.path.exists(path):
    return path
  fd, tmp = tempfile.mkstemp(
    suffix=".so", dir=os.path.dirname(path)
  )  # concurrent builds: last rename wins
  os.close(fd)
  try:
    result = subprocess.run(_compile_command(tmp), capture_output=True, text=True)
    if result.returncode != 0:
      errors = (
        [l for l in result.stderr.splitlines() if "error" in l]
        or result.stderr.splitlines()
        or ["?"]
      )
      if any("dnnl.hpp" in l for l in errors):
        raise OneDnnUnavailable(
          "oneDNN headers not found (apt-get install libdnnl-dev, or set CLASSIC_CNNS_ONEDNN_ROOT)"
        )
      if any("-ldnnl" in l for l in errors):
        raise OneDnnUnavailable(
          "libdnnl.so not found (apt-get install libdnnl-dev, or set CLASSIC_CNNS_ONEDNN_ROOT)"
        )
      raise OneDnnUnavailable(
        f"building {os.path.basename(SOURCE)} failed: {errors[0].strip()[:200]}"
      )
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def _load() -> None:
  path = _build()
  try:
    library = ctypes.cdll.LoadLibrary(path)
  except OSError as e:
    raise OneDnnUnavailable(f"cannot load {path}: {e}") from None
  for target in _TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, target)), platform="cpu")
  query = library.ClassicCnnsConvImplementation
  query.restype = ctypes.c_int
  query.argtypes = (ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_char_p, ctypes.c_int)
  _state["library"], _state["query"] = path, query


@functools.lru_cache(maxsize=None)
def implementation(pass_: str, x_shape, w_shape, strides, padding) -> str:
  """The oneDNN implementation `pass_` (of PASSES) of this NHWC x HWIO geometry runs here, e.g.
  "jit:avx2", "brgconv:avx512_core", "x64:gemm:jit" (as DNNL_VERBOSE names it); nothing is run."""
  require()
  (pt, pb), (pl, pr) = padding
  oh, ow = _output_hw(x_shape, w_shape, strides, padding)
  fields = (
    x_shape[0],
    x_shape[1],
    x_shape[2],
    x_shape[3],
    w_shape[0],
    w_shape[1],
    w_shape[3],
    oh,
    ow,
    strides[0],
    strides[1],
    pt,
    pb,
    pl,
    pr,
  )
  out = ctypes.create_string_buffer(256)
  status = _state["query"](
    PASSES.index(pass_), (ctypes.c_int64 * 15)(*map(int, fields)), out, len(out)
  )
  if status != 0:
    raise ValueError(
      f"oneDNN has no {pass_} convolution for {x_shape} x {w_shape}: {out.value.decode()}"
    )
  return out.value.decode()


def available() -> tuple[bool, str]:
  """(True, "") when the kernels are built and registered (done once per process), else (False, why)."""
  with _lock:
    if "ok" not in _state:
      try:
        _load()
        _state.update(ok=True, reason="")
      except OneDnnUnavailable as e:
        _state.update(ok=False, reason=str(e))
      except OSError as e:  # e.g. an unwritable cache directory
        _state.update(
          ok=False, reason=f"cannot build the kernel library: {' '.join(str(e).split())[:200]}"
        )
    return bool(_state["ok"]), str(_state["reason"])


@functools.lru_cache(maxsize=None)
def cpu_has_avx512() -> bool:
  """Whether this CPU has AVX-512 ("avx512f" in /proc/cpuinfo): oneDNN then runs its avx512 kernels.
  Without it (e.g. the AMD EPYC hosts of BENCHMARKS.md), Debian's oneDNN 2.6 runs `jit:avx2` and
  loses convolutions with many channels to XLA (the "mixed" conv policy, ops.py)."""
  try:
    with open("/proc/cpuinfo") as f:
      return any(line.startswith("flags") and " avx512f" in line for line in f)
  except OSError:
    return False


def require() -> None:
  ok, reason = available()
  if not ok:
    raise OneDnnUnavailable(reason)


def supports(
  lhs,
  rhs,
  window_strides: Sequence[int],
  padding,
  lhs_dilation=None,
  rhs_dilation=None,
  feature_group_count: int = 1,
  batch_group_count: int = 1,
) -> bool:
  """Whether `conv2d` computes this `lax.conv_general_dilated` call (NHWC/HWIO as nn.Conv gives it):
  float32, 2-D, ungrouped, undilated, non-negative padding, a non-empty result."""
  if lhs.ndim != 4 or rhs.ndim != 4 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return False
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return False
  if feature_group_count != 1 or batch_group_count != 1 or len(window_strides) != 2:
    return False
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  if any(int(p) < 0 for pair in padding for p in pair):
    return False
  return (
    min(_output_hw(lhs.shape, rhs.shape, window_strides, padding)) > 0
    and lhs.size > 0
    and rhs.size > 0
  )  # an empty result is XLA's (nothing to compute)


# The largest kernel side oneDNN's AVX2 kernels are trusted with here (see unsafe_passes).
AVX2_MAX_KERNEL = 7


def kernel_exceeds_map(x_shape, w_shape) -> bool:
  """Whether the HWIO kernel is taller or wider than the NHWC input map (e.g. ResNet-18's last 3x3
  convs on 2x2 maps at 64 px): oneDNN 2.6 crashes on such geometries with implicit padding, so
  `conv2d` pads the map explicitly first."""
  return w_shape[0] > x_shape[1] or w_shape[1] > x_shape[2]


def unsafe_passes(x_shape, w_shape, strides, padding) -> frozenset[str]:
  """Passes of this NHWC x HWIO geometry that must not run on oneDNN here: they crash Debian 12's
  oneDNN 2.6 (segfaults or "could not execute a primitive", intermittent, on an AMD EPYC without
  AVX-512; tests/backends/test_onednn.py) and run on XLA instead.
  - A kernel larger than the input map (the weight gradient of a 5x5 conv on 4x4, a 7x7/2 conv on
    2x2; with implicit padding also on AVX-512): every pass. `conv2d` never gives oneDNN such a
    geometry: it pads the map explicitly (`kernel_exceeds_map`), so this rule is a last guard.
  - Without AVX-512, a kernel side above 7 (AlexNet's 11x11/4 stem; 8x8 and 9x9 too): every pass.
    Its jit:avx2 weight gradient crashes `python -m classic_cnns.benchmark --model=alexnet
    --input=112`; with that pass on XLA its gemm-based passes still crash within three steps.
  - Without AVX-512, any pass oneDNN would run on its gemm-based implementation ("x64:gemm:jit"):
    e.g. the input gradient of a 7x7/2 conv on 3 channels (a ResNet stem, differentiated with respect
    to the image) fails in every process."""
  if kernel_exceeds_map(x_shape, w_shape):
    return frozenset(PASSES)
  if cpu_has_avx512():
    return frozenset()
  if max(w_shape[0], w_shape[1]) > AVX2_MAX_KERNEL:
    return frozenset(PASSES)
  geometry = (tuple(x_shape), tuple(w_shape), tuple(strides), tuple(map(tuple, padding)))
  return frozenset(p for p in PASSES if "gemm" in implementation(p, *geometry))


def _output_hw(x_shape, w_shape, strides, padding) -> tuple[int, int]:
  """(OH, OW) of an NHWC x HWIO convolution with explicit ((top, bottom), (left, right)) padding."""
  return tuple(
    (x_shape[1 + i] + padding[i][0] + padding[i][1] - w_shape[i]) // strides[i] + 1 for i in (0, 1)
  )


def _attrs(strides: tuple[int, int], padding: tuple[tuple[int, int], tuple[int, int]]) -> dict:
  (pt, pb), (pl, pr) = padding
  return dict(
    sh=np.int64(strides[0]),
    sw=np.int64(strides[1]),
    pt=np.int64(pt),
    pb=np.int64(pb),
    pl=np.int64(pl),
    pr=np.int64(pr),
  )


def _call(pass_: str, shape, a, b, strides, padding):
  # vmap (e.g. per-example gradients): one call per mapped element.
  return jax.ffi.ffi_call(
    _TARGETS[pass_], jax.ShapeDtypeStruct(shape, jnp.float32), vmap_method="sequential"
  )(a, b, **_attrs(strides, padding))


PASSES = ("forward", "backward_data", "backward_weights")


def _xla_conv(x, w, strides, padding):
  return jax.lax.conv_general_dilated(
    x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
  )


def _pass(name: str, on_xla: frozenset, a, b, strides, padding, shape):
  """One pass on oneDNN or (when `name` is in `on_xla`) on XLA: forward (x, w), backward_data (dy, w),
  backward_weights (x, dy); `shape` = the result's shape."""
  if name not in on_xla:
    return _call(name, shape, a, b, strides, padding)
  if name == "forward":
    return _xla_conv(a, b, strides, padding)
  if name == "backward_data":  # the input gradient of the forward conv, transposed by JAX
    dy, w = a, b
    return jax.vjp(lambda x: _xla_conv(x, w, strides, padding), jnp.zeros(shape, dy.dtype))[1](dy)[
      0
    ]
  x, dy = a, b
  return jax.vjp(lambda w: _xla_conv(x, w, strides, padding), jnp.zeros(shape, x.dtype))[1](dy)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, on_xla):
  out_hw = _output_hw(x.shape, w.shape, strides, padding)
  return _pass("forward", on_xla, x, w, strides, padding, (x.shape[0], *out_hw, w.shape[3]))


def _conv_fwd(x, w, strides, padding, on_xla):
  return _conv(x, w, strides, padding, on_xla), (x, w)


def _conv_bwd(strides, padding, on_xla, residuals, dy):
  x, w = residuals
  dx = _pass("backward_data", on_xla, dy, w, strides, padding, x.shape)
  dw = _pass("backward_weights", on_xla, x, dy, strides, padding, w.shape)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv2d(
  x: jax.Array, w: jax.Array, strides: Sequence[int], padding, on_xla: Iterable[str] = ()
) -> jax.Array:
  """NHWC x HWIO float32 convolution on oneDNN; `padding` is "SAME", "VALID" or ((top, bottom),
  (left, right)). Differentiable (backward-data and backward-weights on oneDNN). The passes named in
  `on_xla` (of PASSES) run on XLA instead (what `autotune` measured faster)."""
  require()
  on_xla = frozenset(on_xla)
  if not on_xla <= set(PASSES):
    raise ValueError(f"on_xla must name passes of {PASSES}, not {sorted(on_xla)}")
  strides = (int(strides[0]), int(strides[1]))
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:3], w.shape[:2], strides, padding)
  padding = tuple((int(lo), int(hi)) for lo, hi in padding)
  if min(_output_hw(x.shape, w.shape, strides, padding)) <= 0:
    raise ValueError(f"convolution of {x.shape} with kernel {w.shape} has no output")
  if kernel_exceeds_map(x.shape, w.shape):
    # oneDNN sees the zero-padded map (no smaller than the kernel, as any conv with an output) and no
    # padding: a geometry of its ordinary kind. The pad's own gradient crops the input gradient.
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    padding = ((0, 0), (0, 0))
  on_xla |= unsafe_passes(x.shape, w.shape, strides, padding)
  return _conv(x, w, strides, padding, on_xla)
