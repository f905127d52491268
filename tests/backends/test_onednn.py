"""oneDNN convolutions (classic_cnns/backends/cpu/onednn.py): values and gradients equal XLA's, the
CPU kernels' conv policies route exactly the convolutions oneDNN supports, crash-prone passes run on
XLA, and an unusable oneDNN is one clear line.

Skipped where oneDNN cannot be built (no g++ / libdnnl-dev), except under CLASSIC_CNNS_REQUIRE_ONEDNN=1
(.ci/run installs it and sets that), where its absence fails."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from classic_cnns.backends import cpu
from classic_cnns.backends.cpu import onednn, ops
from classic_cnns.models import layers

OK, WHY = onednn.available()
if not OK and os.environ.get("CLASSIC_CNNS_REQUIRE_ONEDNN") == "1":
  raise RuntimeError(f"CLASSIC_CNNS_REQUIRE_ONEDNN=1 but oneDNN is unavailable: {WHY}")
needs_onednn = pytest.mark.skipif(not OK, reason=f"oneDNN unavailable: {WHY}")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NHWC = ("NHWC", "HWIO", "NHWC")


def _lax(x, w, strides, padding):
  return jax.lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC)


# (input NHWC, kernel HWIO, strides, padding): the zoo's kinds -- 3x3 same, strided, 1x1, the 7x7/2
# stems, Inception's 1x7 / 7x1 and VALID reductions, asymmetric explicit padding, odd sizes.
CASES = [
  ((4, 8, 8, 16), (3, 3, 16, 16), (1, 1), "SAME"),
  ((3, 9, 9, 8), (3, 3, 8, 12), (2, 2), "SAME"),
  ((3, 9, 9, 8), (3, 3, 8, 12), (2, 2), "VALID"),
  ((2, 7, 7, 24), (1, 1, 24, 40), (1, 1), "VALID"),
  ((2, 16, 16, 8), (1, 1, 8, 16), (2, 2), "VALID"),
  ((2, 19, 19, 3), (7, 7, 3, 8), (2, 2), ((3, 3), (3, 3))),
  ((2, 10, 10, 6), (1, 7, 6, 5), (1, 1), ((0, 0), (3, 3))),
  ((2, 10, 10, 6), (7, 1, 6, 5), (1, 1), ((3, 3), (0, 0))),
  ((2, 11, 13, 5), (5, 3, 5, 7), (1, 2), ((2, 1), (0, 2))),
  ((1, 28, 28, 1), (5, 5, 1, 6), (1, 1), "VALID"),
]


@needs_onednn
@pytest.mark.parametrize("x_shape,w_shape,strides,padding", CASES)
def test_values_and_gradients_equal_xla(x_shape, w_shape, strides, padding):
  kx, kw, kd = jax.random.split(jax.random.PRNGKey(0), 3)
  x = jax.random.normal(kx, x_shape)
  w = jax.random.normal(kw, w_shape) / np.sqrt(np.prod(w_shape[:3]))
  y_ref, vjp_ref = jax.vjp(lambda x, w: _lax(x, w, strides, padding), x, w)
  y, vjp = jax.vjp(lambda x, w: onednn.conv2d(x, w, strides, padding), x, w)
  assert y.shape == y_ref.shape
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  dy = jax.random.normal(kd, y.shape)
  for got, want in zip(vjp(dy), vjp_ref(dy)):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@needs_onednn
def test_jitted_twice_and_inside_scan():
  """Primitives are cached per geometry: a second call, and a call per scan iteration, agree."""
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 6, 4))
  ws = jax.random.normal(jax.random.PRNGKey(2), (3, 3, 3, 4, 4)) * 0.2

  def loop(conv):
    def body(h, w):
      return jnp.tanh(conv(h, w, (1, 1), "SAME")), None

    return lambda x, ws: jnp.sum(jax.lax.scan(body, x, ws)[0] ** 2)

  ref = jax.jit(jax.value_and_grad(loop(_lax), (0, 1)))(x, ws)
  f = jax.jit(jax.value_and_grad(loop(onednn.conv2d), (0, 1)))
  for _ in range(2):
    got = f(x, ws)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, ref)


@needs_onednn
def test_one_geometry_on_parallel_branches_runs_concurrently_and_stays_exact():
  """Eight convolutions of one geometry on one input (as parallel Inception branches): XLA runs them
  at once, so one cached oneDNN primitive executes on several threads together. With oneDNN's own
  scratchpad that returned wrong values and gradients in most calls (relative error up to 0.9 on
  this geometry); each execution now has its thread's scratchpad (onednn_conv.cc)."""
  keys = jax.random.split(jax.random.PRNGKey(0), 9)
  x = jax.random.normal(keys[0], (16, 4, 4, 8))
  ws = [jax.random.normal(k, (1, 1, 8, 8)) * 0.1 for k in keys[1:]]

  def loss(conv):
    return lambda x, ws: sum((conv(x, w) ** 2).sum() * (i + 1) for i, w in enumerate(ws))

  ours = jax.jit(jax.value_and_grad(loss(lambda x, w: onednn.conv2d(x, w, (1, 1), "SAME")), (0, 1)))
  want = jax.jit(jax.value_and_grad(loss(lambda x, w: _lax(x, w, (1, 1), "SAME")), (0, 1)))(x, ws)
  for _ in range(40):
    got = ours(x, ws)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.abs(b).max()))


@needs_onednn
def test_vmap_and_per_example_gradients():
  xs = jax.random.normal(jax.random.PRNGKey(3), (3, 2, 6, 6, 4))
  w = jax.random.normal(jax.random.PRNGKey(4), (3, 3, 4, 5)) * 0.3
  grad = lambda conv: jax.vmap(
    jax.grad(lambda w, x: jnp.sum(conv(x, w, (1, 1), "SAME") ** 2)), (None, 0)
  )
  np.testing.assert_allclose(grad(onednn.conv2d)(w, xs), grad(_lax)(w, xs), rtol=1e-4, atol=1e-4)


def _custom_calls(fn, *args) -> int:
  return jax.jit(fn).lower(*args).as_text().count("ClassicCnnsConv")


@needs_onednn
def test_conv_policies_route_supported_convs_only():
  """make_conv: oneDNN for float32 2-D ungrouped undilated NHWC convs with a result; XLA otherwise,
  with the same values; the portable kernels never call oneDNN."""
  onednn_kernels = cpu.make_kernels("onednn")
  x = jnp.ones((2, 8, 8, 4))
  for kwargs, expected in (({}, 1), ({"feature_group_count": 2}, 0), ({"kernel_dilation": 2}, 0)):
    portable, ours = (
      layers.PORTABLE.Conv(8, (3, 3), **kwargs),
      onednn_kernels.Conv(8, (3, 3), **kwargs),
    )
    v = portable.init(jax.random.PRNGKey(0), x)
    assert _custom_calls(portable.apply, v, x) == 0
    assert _custom_calls(ours.apply, v, x) == expected
    np.testing.assert_allclose(
      jax.jit(ours.apply)(v, x), jax.jit(portable.apply)(v, x), rtol=1e-5, atol=1e-5
    )
  assert _custom_calls(cpu.make_kernels("xla").Conv(8, (3, 3)).apply, v, x) == 0  # policy xla: none
  conv1d = onednn_kernels.Conv(8, (3,))  # 1-D: XLA's
  x3 = jnp.ones((2, 8, 4))
  v = conv1d.init(jax.random.PRNGKey(0), x3)
  assert _custom_calls(conv1d.apply, v, x3) == 0 and conv1d.apply(v, x3).shape == (2, 8, 8)
  empty = onednn_kernels.Conv(
    8, (5, 5), padding="VALID"
  )  # 5x5 VALID on 1x1 (Inception-v3's aux head on small inputs)
  x1 = jnp.ones((2, 1, 1, 4))
  v = empty.init(jax.random.PRNGKey(0), x1)
  assert _custom_calls(empty.apply, v, x1) == 0 and empty.apply(v, x1).shape == (2, 0, 0, 8)
  bf16 = onednn_kernels.Conv(8, (3, 3), dtype=jnp.bfloat16)
  v = bf16.init(jax.random.PRNGKey(0), x)
  assert _custom_calls(bf16.apply, v, x) == 0  # bfloat16 stays on XLA


@needs_onednn
def test_loop_conv_uses_onednn_when_selected():
  """Kernels.loop_conv: oneDNN under every policy but xla (whose loop conv has its own VJP)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 5, 3))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
  for policy, calls in (("onednn", 1), ("mixed", 1), ("xla", 0)):
    conv = cpu.make_kernels(policy).loop_conv
    f = lambda x, w: conv(x, w, (1, 1), ((1, 1), (1, 1)))
    assert _custom_calls(f, x, w) == calls, policy
    np.testing.assert_allclose(jax.jit(f)(x, w), _lax(x, w, (1, 1), "SAME"), rtol=1e-5, atol=1e-5)


def test_unknown_policy_is_a_value_error():
  with pytest.raises(ValueError, match="unknown CPU conv policy 'cudnn'"):
    ops.make_conv("cudnn")


def test_no_compiler_gives_one_clear_reason(tmp_path):
  """Without a compiler (or oneDNN), available() says why; requiring it raises with that reason."""
  code = (
    "from classic_cnns.backends.cpu import onednn; ok, why = onednn.available(); print(ok); print(why)\n"
    "try:\n  onednn.require()\nexcept onednn.OneDnnUnavailable as e:\n  print('raised', e)\n"
  )
  env = {
    **os.environ,
    "CXX": str(tmp_path / "no-such-compiler"),
    "CLASSIC_CNNS_CACHE": str(tmp_path / "cache"),
  }
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
  )
  lines = out.stdout.splitlines()
  assert lines[0] == "False", out.stderr
  assert "no-such-compiler" in lines[1] or "compiler" in lines[1]
  assert lines[2].startswith("raised ")


@needs_onednn
@pytest.mark.parametrize("avx512", [True, False])
def test_mixed_backend_puts_wide_convs_on_xla_without_avx512(monkeypatch, avx512):
  """ "mixed" (the CPU default policy): oneDNN for every conv with an AVX-512 CPU; without it, convs with a
  kernel > 1x1 and >= MIXED_XLA_MIN_CHANNELS input and output channels are XLA's (no oneDNN custom
  call), 1x1 and narrower ones oneDNN's."""
  monkeypatch.setattr(onednn, "cpu_has_avx512", lambda: avx512)
  wide = ops.MIXED_XLA_MIN_CHANNELS
  conv = ops.make_conv("mixed")
  w_narrow, w_wide, w_wide_1x1 = (
    jnp.ones((3, 3, 64, wide)),
    jnp.ones((3, 3, wide, wide)),
    jnp.ones((1, 1, wide, wide)),
  )
  w_narrow_out = jnp.ones((3, 3, wide, 32))

  def lowered(w):
    x = jnp.ones((2, 6, 6, w.shape[2]))
    f = lambda x, w: jnp.sum(
      conv(
        x,
        w,
        (1, 1),
        "SAME",
        dimension_numbers=(jax.lax.conv_dimension_numbers(x.shape, w.shape, NHWC)),
      )
    )
    return jax.jit(jax.grad(f, argnums=(0, 1))).lower(x, w).as_text()

  assert "custom_call" in lowered(w_narrow)
  assert "custom_call" in lowered(w_wide_1x1)
  assert "custom_call" in lowered(w_narrow_out)
  assert ("custom_call" in lowered(w_wide)) == avx512


def test_unusable_cache_directory_is_a_reason_not_a_crash(tmp_path):
  blocker = tmp_path / "a-file"
  blocker.write_text("not a directory")
  code = "from classic_cnns.backends.cpu import onednn; ok, why = onednn.available(); print(ok); print(why)"
  env = {**os.environ, "CLASSIC_CNNS_CACHE": str(blocker / "cache")}
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
  )
  assert out.returncode == 0, out.stderr
  ok, why = out.stdout.splitlines()[:2]
  assert ok == "False" and "cannot build the kernel library" in why


def test_cli_kernels_cpu_that_cannot_work_is_one_line(tmp_path):
  """--config.kernels=cpu where oneDNN cannot build (no compiler; a fresh cache, so no library built
  before): one `error:` line, exit 2, before any step."""
  env = {**os.environ, "CXX": "/nonexistent", "CLASSIC_CNNS_CACHE": str(tmp_path / "cache")}
  out = subprocess.run(
    [
      sys.executable,
      "-m",
      "classic_cnns.main",
      f"--config={REPO}/configs/lenet5_mnist.py",
      f"--workdir={tmp_path / 'run'}",
      "--config.kernels=cpu",
      "--config.num_steps=1",
    ],
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    cwd=REPO,
  )
  assert out.returncode == 2, out.stderr[-2000:]
  errors = [l for l in out.stderr.splitlines() if l.startswith("error:")]
  assert len(errors) == 1 and "oneDNN" in errors[0] and "/nonexistent" in errors[0], out.stderr[
    -2000:
  ]
  assert "Traceback" not in out.stderr


# Repeated fwd + both gradients of each conv geometry through onednn.conv2d, against XLA's, in a
# subprocess (argv: JSON [geometries, calls, absolute atol, atol relative to max |XLA's|]), so that a
# crash in oneDNN is a failed test, not a lost worker. Geometry: (batch, side, in, out, kernel, stride, pad).
_CONV_CALLS = r'''
import json, sys
import jax, jax.numpy as jnp, numpy as np
from classic_cnns.backends.cpu import onednn
geometries, calls, atol, atol_rel = json.loads(sys.argv[1])
for n, side, c, o, k, s, p in geometries:
  x = jax.random.normal(jax.random.PRNGKey(side), (n, side, side, c))
  w = jax.random.normal(jax.random.PRNGKey(k), (k, k, c, o)) * 0.1
  pad = ((p, p),) * 2
  loss = lambda conv: jax.jit(jax.value_and_grad(lambda x, w: (conv(x, w) ** 2).sum(), argnums=(0, 1)))
  f = loss(lambda x, w: onednn.conv2d(x, w, (s, s), pad))
  for i in range(calls):  # the crashes came on repeated calls
    got = jax.block_until_ready(f(x * (i + 1), w))
  want = loss(lambda x, w: onednn._xla_conv(x, w, (s, s), pad))(x * calls, w)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=atol + atol_rel * float(np.abs(b).max()))
print("ok")
'''


def _conv_calls_survive(geometries, calls, atol=0.0, atol_rel=0.0):
  r = subprocess.run(
    [sys.executable, "-c", _CONV_CALLS, json.dumps([geometries, calls, atol, atol_rel])],
    capture_output=True,
    text=True,
    cwd=REPO,
  )
  assert r.returncode == 0 and r.stdout.strip().endswith("ok"), (r.returncode, r.stderr[-2000:])


@needs_onednn
def test_kernel_larger_than_input_does_not_crash():
  """oneDNN 2.6 (jit:avx2) segfaults on repeated calls of e.g. a 5x5 conv's weight gradient on a 4x4
  map (VGG-13 5x5 on small inputs, AMD EPYC): `conv2d` pads such maps explicitly."""
  # kernels larger than the map, both strides, both kernel sizes the zoo has
  _conv_calls_survive(
    [(32, side, 8, 8, k, s, k // 2) for side, k, s in ((4, 5, 1), (4, 5, 2), (2, 7, 1), (6, 7, 2))],
    calls=4,
    atol_rel=1e-5,
  )  # float32 rounding of values up to ~1e3


@needs_onednn
def test_unsafe_passes():
  same = lambda k: ((k // 2, k // 2), (k // 2, k // 2))
  assert onednn.unsafe_passes((8, 4, 4, 16), (5, 5, 16, 16), (1, 1), same(5)) == set(
    onednn.PASSES
  )  # kernel > map
  assert onednn.unsafe_passes((8, 32, 32, 16), (3, 3, 16, 16), (1, 1), same(3)) == set()
  large = onednn.unsafe_passes((8, 112, 112, 3), (11, 11, 3, 64), (4, 4), same(11))
  assert large == (set() if onednn.cpu_has_avx512() else set(onednn.PASSES))
  stem = onednn.unsafe_passes((8, 112, 112, 3), (7, 7, 3, 64), (2, 2), same(7))
  gemm = {
    p
    for p in onednn.PASSES
    if "gemm" in onednn.implementation(p, (8, 112, 112, 3), (7, 7, 3, 64), (2, 2), same(7))
  }
  assert stem == (set() if onednn.cpu_has_avx512() else gemm)


@needs_onednn
def test_large_kernels_do_not_crash():
  """Debian 12's oneDNN 2.6 (AVX2, AMD EPYC) crashes on convs with a kernel side above 7 (about
  half of the processes; `--model=alexnet --input=112` crashes the benchmark) and on its gemm-based
  passes: without AVX-512 those run on XLA (onednn.unsafe_passes)."""
  # AlexNet's 11x11/4 stem at 112, a 9x9 and an 11x11 on 16 channels (each crashes oneDNN in about
  # half of the processes), a 7x7/2 stem (its input gradient, oneDNN's gemm implementation here,
  # fails in every process).
  _conv_calls_survive(
    [
      (16, 112, 3, 64, 11, 4, 2),
      (16, 112, 3, 64, 9, 4, 4),
      (16, 112, 16, 32, 11, 4, 2),
      (16, 112, 3, 64, 7, 2, 3),
    ],
    calls=3,
    atol_rel=1e-4,
  )
