"""Pretrained weights in and out (docs/pretrained.md):

    python -m classic_cnns.convert --from=torchvision --model=resnet50 --weights=r50.pth --workdir=DIR
    python -m classic_cnns.convert --from=timm --model=densenet121 --weights=model.safetensors --workdir=DIR
    python -m classic_cnns.convert --to=torchvision --workdir=DIR --out=r50.safetensors

Import (--from): reads a `.pth` (torch.load, weights_only=True) or `.safetensors` state dict of the
source's --model, converts it to our registered model (torchvision/timm resnet50/101/152 ->
resnet50_v1_5/101_v1_5/152_v1_5, their stride-in-3x3 layout; googlenet / inception_v3 -> the
variant with aux heads when the weights have them) and writes DIR as a finished run: evaluate it
with `python -m classic_cnns.evaluate --config=DIR/config.py --workdir=DIR ...`, predict with
`python -m classic_cnns.predict --workdir=DIR IMAGE`, fine-tune with `main --config.init_from=DIR`.
Export (--to): the newest checkpoint of DIR (a converted or trained run of a convertible model) as
a torchvision state dict, `.pth` or `.safetensors` by --out's extension.

Bad input (unknown model, a weight our model lacks, a missing weight, a shape mismatch, an
unreadable file, a workdir that already holds a run) is one line `error: ...` naming it, exit
status 2, and nothing is written.
"""

from __future__ import annotations

import os

from absl import flags

from classic_cnns import cli

_FLAGS: dict = {}


def _define_flags() -> dict:
  return {
    "from": flags.DEFINE_enum(
      "from", None, ["torchvision", "timm"], "Import weights of this source into --workdir."
    ),
    "to": flags.DEFINE_enum("to", None, ["torchvision"], "Export --workdir's weights to --out."),
    "model": flags.DEFINE_string(
      "model",
      None,
      "The source's model name (torchvision: alexnet, vgg11..19[_bn], resnet18..152, "
      "densenet121..201, googlenet, inception_v3; timm: resnet*, densenet*, inception_v3). "
      "torchvision/timm resnet50/101/152 become our resnet50_v1_5/101_v1_5/152_v1_5 (stride in "
      "the 3x3 conv), not the paper-layout resnet50.",
    ),
    "weights": flags.DEFINE_string("weights", None, "Import: the .pth or .safetensors file."),
    "workdir": flags.DEFINE_string("workdir", None, "Import: written; export: read."),
    "out": flags.DEFINE_string("out", None, "Export: the .pth or .safetensors file to write."),
    "preset": flags.DEFINE_string(
      "preset",
      None,
      "Import: the evaluation preset recorded in the workdir (config.data.eval_preset); default: "
      "the source's (torchvision_inception / timm_inception for googlenet and inception_v3).",
    ),
  }


def default_preset(source: str, model: str) -> str:
  """The evaluation view of the source's published weights for `model`."""
  if source == "torchvision":
    return "torchvision_inception" if model in ("googlenet", "inception_v3") else "torchvision"
  return "timm_inception" if model == "inception_v3" else "timm"


def import_weights(source: str, model: str, weights: str, workdir: str, preset: str | None) -> str:
  """Converts `weights` of the source's `model` into `workdir`; returns the line to print."""
  from classic_cnns import convert
  from classic_cnns.convert import runs
  from classic_cnns.data import augment

  convert.target_model(source, model)  # an unknown model: before reading the file
  preset = preset or default_preset(source, model)
  if preset not in augment.PRESETS:
    raise convert.ConvertError(f"--preset={preset!r} is not one of {', '.join(augment.PRESETS)}")
  state_dict = convert.load_state_dict(weights)
  ours = convert.target_model(source, model, state_dict)
  variables = convert.import_variables(ours, state_dict)
  runs.write_workdir(
    workdir, ours, variables, preset, f"{source}:{model}:{os.path.basename(weights)}"
  )
  return (
    f"{source} {model} -> {ours} in {workdir} (evaluation preset {preset}); evaluate with "
    f"python -m classic_cnns.evaluate --config={os.path.join(workdir, 'config.py')} "
    f"--workdir={workdir}"
  )


def export_weights(workdir: str, out: str) -> str:
  from classic_cnns import convert
  from classic_cnns.convert import runs

  if not out.endswith((".pth", ".pt", ".safetensors")):
    raise convert.ConvertError(f"--out={out}: give a .pth or .safetensors file")
  model, _ = runs.read_run_model(workdir)
  variables, meta = runs.read_variables(workdir)
  state_dict = convert.to_torch_state_dict(model, variables)
  convert.save_state_dict(state_dict, out)
  return f"{model} (step {meta.get('step', '?')}) of {workdir} -> {out}: {len(state_dict)} tensors"


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    cli.fail(f"unexpected arguments {argv[1:]}")
  from absl import logging

  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  f = {k: v.value for k, v in _FLAGS.items()}
  if bool(f["from"]) == bool(f["to"]):
    cli.fail("give one of --from=torchvision|timm (import) or --to=torchvision (export)")
  if not f["workdir"]:
    cli.fail("give --workdir")
  if f["from"]:
    missing = [k for k in ("model", "weights") if not f[k]]
    if missing:
      cli.fail(f"--from needs --{missing[0]}")
  elif not f["out"]:
    cli.fail("--to needs --out")
  cli.set_xla_flags("auto", echo=False)  # before JAX starts its backends
  with cli.user_errors():
    if f["from"]:
      line = import_weights(f["from"], f["model"], f["weights"], f["workdir"], f["preset"])
    else:
      line = export_weights(f["workdir"], f["out"])
  print(line, flush=True)


if __name__ == "__main__":
  _FLAGS.update(_define_flags())
  cli.run(main)
