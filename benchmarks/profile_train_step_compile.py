"""Where XLA:CPU spends the trainer's train-step compile (the step of `benchmark --compile_only`): a
jax.profiler trace of .compile() summed by event name, then the compiled HLO's kernels (fusions, custom
calls, copies) of each computation counted by the first 4 parts of their op_name (numbers -> #).
Run: PYTHONPATH=. python benchmarks/profile_train_step_compile.py densenet264 224 8 scan_layers=True"""
import sys, time, glob, os, tempfile, collections, re
from classic_cnns import cli
from compile_trace import profiled_compile
import jax, jax.numpy as jnp, numpy as np
from classic_cnns import benchmark, train, optim, parallel
from classic_cnns import build
from classic_cnns import steps
from classic_cnns.config import base_config
from classic_cnns.data import augment as aug
from classic_cnns.models import layers, registry
name, side, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
opts = benchmark.parse_model_options(sys.argv[4:])
registry.list_models(); info = registry.model_info(name)
config = base_config(); config.model.name = name; config.model.num_classes = info.num_classes
for k, v in opts.items(): config.model[k] = v
config.batch_size = batch; config.eval_batch_size = batch
mesh = parallel.make_mesh(); model = build.build_model(config, 1)
input_shape = (side, side, 3)
schedule = optim.make_schedule(config, 100, 1000)
def init():
  variables = model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(0)}, jnp.zeros((1,) + input_shape), train=False)
  return steps.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=optim.make_optimizer(config, schedule, variables["params"]),
                                 batch_stats=variables.get("batch_stats", {}), rng=jax.random.PRNGKey(0))
state = layers.abstract_eval(init)
prep = aug.Preprocess(pad_to=0, flip=True, crop_padding=4, mean=(127.5,)*3, std=(64.0,)*3)
b = {"image": jax.ShapeDtypeStruct((batch, side, side, 3), jnp.uint8), "label": jax.ShapeDtypeStruct((batch,), jnp.int32)}
t0 = time.perf_counter()
lo = jax.jit(steps.make_train_step(model, config, prep, schedule, jnp.float32), donate_argnums=0).lower(state, b)
t1 = time.perf_counter(); print("lower", t1 - t0, flush=True)
co = profiled_compile(lo, 40)
txt = co.as_text()
kernels, per_computation, current = collections.Counter(), collections.Counter(), None
for line in txt.splitlines():
  if (m := re.match(r"^(ENTRY )?%?([\w.\-]+) ", line)) and line.rstrip().endswith("{"):
    current = m.group(2)
    continue
  kind = ("custom-call" if "custom-call(" in line else "copy" if " copy(" in line
          else "fusion" if " fusion(" in line and "calls=" in line else None)
  if kind:
    per_computation[current] += 1
    op = re.search(r'op_name="([^"]*)"', line)
    kernels[(kind, "/".join(re.sub(r"\d+", "#", op.group(1) if op else "?").split("/")[:4])[:120])] += 1
print("kernels per computation:", per_computation.most_common(5))
for (kind, name), n in kernels.most_common(25):
  print(f"{n:6d}  {kind:11s} {name}")
