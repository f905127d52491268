"""Shared command-line plumbing: one line on stderr and a non-zero exit for every known error.

Every entry point runs through `run(main)` and wraps its work in `with user_errors():`. A known error
ends the program with a single line `error: ...` on stderr -- no traceback, no usage dump -- and

  exit status 2  (EXIT_USAGE) the command as given cannot work: a bad flag or config value, a config
                 file that does not load (`file:line: message`), data that cannot be loaded or does
                 not fit the config (missing, truncated or corrupt files, bad labels, empty splits),
                 a workdir holding another run or not writable, no (readable) checkpoint to
                 restore, a corrupt file in the workdir;
  exit status 1  (EXIT_RUNTIME) the command is right but failed while it ran: the workdir is in use
                 by another process (retry when it has ended), data unreadable while it is read
                 (a streamed image that does not decode), a disk full or another I/O error,
                 a checkpoint that cannot be written, training that diverged.

An error class may carry its own `exit_status` (class or instance attribute); otherwise the table in
`exit_status()` decides. `--debug` (or CLASSIC_CNNS_DEBUG=1 in the environment) shows the traceback
instead of the one line. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import traceback

from absl import app, flags

EXIT_RUNTIME = 1
EXIT_USAGE = 2
HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def set_xla_flags(kernels: str, echo: bool = True) -> str:
  """Called by each CLI's main() before JAX starts its backends: sets the XLA flags the backend of
  config.kernels wants (`backends.default_xla_flags`) when the user set no XLA_FLAGS (and
  CLASSIC_CNNS_DEFAULT_XLA_FLAGS is not 0), prints the XLA_FLAGS in effect (unless `echo` is
  False: a command whose stdout is its result), and returns them."""
  from classic_cnns import backends

  wanted = backends.default_xla_flags(kernels)
  if (
    wanted
    and "XLA_FLAGS" not in os.environ
    and os.environ.get("CLASSIC_CNNS_DEFAULT_XLA_FLAGS", "1") == "1"
  ):
    os.environ["XLA_FLAGS"] = wanted
  flags_now = os.environ.get("XLA_FLAGS", "")
  if flags_now and echo:
    print(f"XLA_FLAGS={flags_now}", flush=True)
  return flags_now


def fail(message: str, status: int = EXIT_USAGE) -> None:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def debugging(debug: bool | None = None) -> bool:
  """True when tracebacks are wanted: `debug`, else --debug on the command line or CLASSIC_CNNS_DEBUG=1."""
  if debug is not None:
    return bool(debug)
  if os.environ.get("CLASSIC_CNNS_DEBUG", "").strip().lower() not in ("", "0", "false", "no"):
    return True
  try:
    return "debug" in flags.FLAGS and flags.FLAGS.is_parsed() and bool(flags.FLAGS["debug"].value)
  except Exception:  # pylint: disable=broad-except
    return False


def _error_table() -> list[tuple[type, int]]:
  """(class, exit status) of the project's error classes, most specific first. Classes of modules
  not imported yet cannot have been raised and are not imported here."""
  from classic_cnns.errors import ConfigError
  from classic_cnns.data.common import DatasetError

  table: list[tuple[type, int]] = []
  for module, name, status in (
    ("classic_cnns.workdir", "WorkdirBusyError", EXIT_RUNTIME),
    ("classic_cnns.data.streaming", "DataReadError", EXIT_RUNTIME),
    ("classic_cnns.steps", "TrainingDivergedError", EXIT_RUNTIME),
    # no checkpoint to restore, none readable (CheckpointWriteError: 1)
    ("classic_cnns.checkpoint", "CheckpointError", EXIT_USAGE),
  ):
    cls = getattr(sys.modules.get(module), name, None)
    if isinstance(cls, type):
      table.append((cls, status))
  return table + [
    (ConfigError, EXIT_USAGE),
    (DatasetError, EXIT_USAGE),
    (PermissionError, EXIT_USAGE),
    (OSError, EXIT_RUNTIME),
  ]


def user_error_types() -> tuple[type[BaseException], ...]:
  return tuple(cls for cls, _ in _error_table())


def exit_status(e: BaseException) -> int | None:
  """The exit status of a known error (its `exit_status` attribute, else the class table); None for
  anything else (a bug: it keeps its traceback)."""
  own = getattr(e, "exit_status", None)
  if isinstance(own, int) and not isinstance(own, bool):  # any class may declare itself known
    return own
  for cls, status in _error_table():
    if isinstance(e, cls):
      own = getattr(e, "exit_status", None)
      return own if isinstance(own, int) and not isinstance(own, bool) else status
  return None


def one_line(e: BaseException) -> str:
  """The message of a known error as one line."""
  if isinstance(e, OSError) and not str(e).startswith(("error", "cannot")) and e.strerror:
    what = e.strerror[0].lower() + e.strerror[1:]
    where = f": {e.filename}" if e.filename else ""
    hint = (
      "; free some space and rerun the command to resume"
      if e.errno in (errno.ENOSPC, errno.EDQUOT)
      else ""
    )
    return f"{what}{where}{hint}"
  lines = [l.strip() for l in str(e).strip().splitlines() if l.strip()]
  return lines[0] if lines else type(e).__name__


@contextlib.contextmanager
def user_errors(debug: bool | None = None):
  """Turns the project's known errors into one line on stderr and exit status 2 (usage) or 1
  (runtime), see the module docstring; `debug` (default: --debug / CLASSIC_CNNS_DEBUG=1) re-raises
  them with their traceback instead."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    status = exit_status(e)
    if status is None or debugging(debug):
      raise
    fail(one_line(e), status)


def config_file_error(e: BaseException, path: str | None) -> str | None:
  """`file:line: message` when `e` (or an exception it came from) arose while loading the config file
  `path`: a syntax error, or an exception raised by code in the file; else None."""
  if not path:
    return None
  target = os.path.abspath(path)
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, SyntaxError) and e.filename and os.path.abspath(e.filename) == target:
      return f"{path}:{e.lineno}: {e.msg}"
    frames = [
      f for f in traceback.extract_tb(e.__traceback__) if os.path.abspath(f.filename) == target
    ]
    if frames:
      msg = " ".join(str(e).split())[:300]
      if isinstance(e, (KeyError, AttributeError)) and e.args:
        return f"{path}:{frames[-1].lineno}: {_missing_field(e)}"
      return (
        f"{path}:{frames[-1].lineno}: {type(e).__name__}: {msg}"
        if msg
        else f"{path}:{frames[-1].lineno}: {type(e).__name__}"
      )
    if isinstance(e, AttributeError) and "get_config" in str(e):
      return f"{path}: defines no get_config()"
    e = e.__cause__ or e.__context__
  return None


def _missing_field(e: BaseException) -> str:
  """ml_collections' KeyError / AttributeError for a missing field, as `no config field 'x'` plus
  its suggestion."""
  import re

  arg = e.args[0]
  while isinstance(arg, BaseException) and arg.args:
    arg = arg.args[0]
  text = str(arg)
  name = re.match(r"""^['"]*([^'"\n]+)""", text)
  hint = re.search(r"Did you mean \"([^\"]+)\"", text)
  return f"no config field {name.group(1) if name else text!r}" + (
    f" (did you mean {hint.group(1)!r}?)" if hint else ""
  )


def config_path(argv: list[str], name: str = "config") -> str | None:
  """The value of --NAME=PATH (or --NAME PATH) in argv."""
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _one_line_flag_error(e: Exception) -> str:
  lines = str(e).strip().splitlines()
  text = lines[0] if lines else type(e).__name__
  root = e
  while (root.__cause__ or root.__context__) is not None:  # innermost: e.g. get_config's ValueError
    root = root.__cause__ or root.__context__
  detail = str(root).strip().splitlines()[-1] if root is not e and str(root).strip() else ""
  if detail and detail not in text:
    text = f"{text.rstrip(': ')}: {detail}"
  return text[:400]


def _unknown_key_message(argv: list[str], key: str) -> str:
  key = key.strip("\"' ")
  for arg in argv:
    name = arg.split("=", 1)[0]
    if name.startswith("--config.") and key in name.split("."):
      return f"unknown config key {name[2:]!r} (not in the config file's schema; see classic_cnns/config.py)"
  return f"unknown config key {key!r}"


def run(main) -> None:
  """app.run with flag-parsing and config-file errors reduced to one line (exit status 2), and a
  `--debug` flag (tracebacks instead of one-line errors)."""
  define_once(
    flags.DEFINE_bool,
    "debug",
    False,
    "Show the traceback of an error instead of one line (also CLASSIC_CNNS_DEBUG=1).",
    module_name=_module_name(sys._getframe(1)),  # listed by the command's --help
  )

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except SystemExit as e:  # absl ends --help with status 1; it is not an error
      if e.code == 1 and any(a in HELP_FLAGS for a in argv[1:]):
        sys.exit(0)
      raise
    except Exception as e:  # pylint: disable=broad-except
      if "--debug" in argv or debugging():
        raise
      path = config_path(argv)
      where = config_file_error(e, path)
      if where:
        fail(f"cannot load --config={path}: {where}")
      if isinstance(
        e, (KeyError, AttributeError)
      ):  # ml_collections: a key not in the locked config
        fail(_unknown_key_message(argv, str(e.args[0]) if e.args else ""))
      if isinstance(e, (flags.Error, ValueError, TypeError, OSError)):
        cause = e.__cause__ or e.__context__
        if isinstance(cause, (KeyError, AttributeError)):
          fail(_unknown_key_message(argv, str(cause.args[0]) if cause.args else ""))
        fail(f"bad command line: {_one_line_flag_error(e)}")
      raise

  app.run(main, flags_parser=parse)


def load_config(holder, argv: list[str] | None = None):
  """The config of a `config_flags.DEFINE_config_file` flag; a file that does not load (missing, a
  syntax error, an exception in its code) is one line and exit status 2. config_flags defers a
  file's load error to the first access, so this accesses it."""
  path = flags.FLAGS[holder.name].serialize().split("=", 1)[-1]
  if path and not os.path.isfile(path.split(":", 1)[0]):
    fail(f"cannot load --config={path}: no such file")
  try:
    config = holder.value
    config.model  # pylint: disable=pointless-statement
    return config
  except Exception as e:  # pylint: disable=broad-except
    if debugging():
      raise
    where = config_file_error(e, path)
    if where is None and not isinstance(
      e, (OSError, ImportError, SyntaxError, AttributeError, KeyError)
    ):
      raise
    fail(f"cannot load --config={path}: {where or ' '.join(str(e).split())[:300]}")


def load_beside(path: str, filename: str):
  """The module in the file `filename` beside the file `path` (a config file's `__file__`): how a
  config file in configs/ loads configs/common.py, whatever the working directory and however the
  config file was loaded (config_flags reads `--config=configs/x.py` by its path, outside any
  package). Loaded afresh each time; not added to sys.modules."""
  import importlib.util

  target = os.path.join(os.path.dirname(os.path.abspath(path)), filename)
  name = "_beside_" + os.path.splitext(os.path.basename(target))[0]
  spec = importlib.util.spec_from_file_location(name, target)
  if spec is None or spec.loader is None:
    raise ImportError(f"cannot load {target}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _module_name(frame) -> str:
  """absl's name of the module running `frame`: its __name__, or sys.argv[0] for __main__ (the
  module whose flags `--help` lists)."""
  name = frame.f_globals.get("__name__", "")
  return sys.argv[0] if name == "__main__" else name


def define_once(define, name: str, *args, module_name: str | None = None, **kwargs):
  """`define(name, ...)` unless another entry-point module (imported in the same process, e.g. by
  the test runner) already defined the flag `name`; then that flag is shared. Either way the flag
  belongs to the calling module (or `module_name`), so that the command's `--help` lists it."""
  module_name = module_name or _module_name(sys._getframe(1))
  if name in flags.FLAGS:
    flags.FLAGS.register_key_flag_for_module(module_name, flags.FLAGS[name])
    return flags.FlagHolder(flags.FLAGS, flags.FLAGS[name])
  return define(name, *args, module_name=module_name, **kwargs)
