"""Shared by the compile-profile scripts: compile a lowered computation under jax.profiler and print
the trace's events summed by (thread, name), numbers in names replaced by #."""
import collections, glob, os, re, tempfile, time

import jax


def profiled_compile(lowered, top: int = 45):
  logdir = tempfile.mkdtemp()
  t0 = time.perf_counter()
  with jax.profiler.trace(logdir):
    compiled = lowered.compile()
  print("compile", time.perf_counter() - t0, flush=True)
  from jax.profiler import ProfileData
  data = ProfileData.from_file(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)[0])
  per, cnt = collections.Counter(), collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      for ev in line.events:
        k = re.sub(r"[\d]+", "#", ev.name)[:90]
        per[(line.name[:30], k)] += ev.duration_ns
        cnt[(line.name[:30], k)] += 1
  for (ln, k), ns in per.most_common(top):
    print(f"{ns/1e9:8.2f} s  x{cnt[(ln,k)]:6d}  {ln:30s} {k}")
  return compiled
