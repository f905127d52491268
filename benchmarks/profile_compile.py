"""Where XLA:CPU spends a train-step compile: a jax.profiler trace of lower().compile() of the loss gradient
(model.apply in train mode), events summed by name (numbers replaced by #).
Run: PYTHONPATH=. python benchmarks/profile_compile.py densenet_bc_100_12 32 16"""
import sys, time, glob, os, tempfile, collections, re
from classic_cnns import cli
from compile_trace import profiled_compile
import jax, jax.numpy as jnp
from classic_cnns.models import registry
name, side, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
x = jax.random.normal(jax.random.PRNGKey(1), (batch, side, side, 3)); labels = jnp.arange(batch) % 10
model = registry.create_model(name)
v = jax.jit(lambda: model.init({"params": jax.random.PRNGKey(0)}, x[:1], train=False))()
def loss(p, bs):
  logits, upd = model.apply({"params": p, "batch_stats": bs}, x, train=True, mutable=["batch_stats"])
  return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch), labels % logits.shape[-1]]), upd
f = jax.jit(jax.value_and_grad(loss, has_aux=True))
lo = f.lower(v["params"], v["batch_stats"])
co = profiled_compile(lo, 45)
