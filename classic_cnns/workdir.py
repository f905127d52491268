"""A run's workdir: who may use it at the same time, and which configs continue the run it holds.

Locking. `WORKDIR/.lock` is locked with flock(2):

  * a training run (`train.train_and_evaluate`) holds it exclusively and writes its pid into it;
  * the commands that only read a workdir (`classic_cnns.evaluate`, `classic_cnns.predict`) hold it
    shared: they run beside each other, but not beside a training run.

A command that finds the workdir busy stops at once with `WorkdirBusyError`, one line naming the
holder's pid (exit status 1 from the command-line tools: the command is right, retry it when the
holder has ended). The kernel releases a lock when its holder exits, however it ends (kill -9
included), so a lock is never stale; the file stays and needs no cleaning. Locks are re-entrant
within a process: code holding the exclusive lock (an experiment runner wrapping its own writes and
`train_and_evaluate` in `with workdir.lock(path):`) may call anything that locks the same workdir.
On a multi-host run only process 0 locks (it is the one that writes).

Continuing a run. A workdir with checkpoints is continued only by a config that defines the same run:
`check_compatible` compares the new config with the workdir's config.json field by field and refuses
(ConfigError, one line naming the first differing field) any difference except in `MAY_CHANGE`
(logging, evaluation and checkpoint frequency, kernels, caches: not what is trained) and a longer
`num_steps` / `num_epochs` (the run continues to the new end).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import os
import socket
import threading
from typing import Any, Iterator

from classic_cnns.errors import ConfigError

LOCK_FILE = ".lock"

# Config fields that may differ between the runs of one workdir (they change how a run is logged,
# evaluated, checkpointed or compiled, not what it computes).
MAY_CHANGE = frozenset(
  {
    "log_every_steps",
    "eval_every_epochs",
    "eval_every_steps",
    "eval_batch_size",
    "checkpoint_every_steps",
    "keep_checkpoints",
    "kernels",
    "cpu_convs",
    "compilation_cache_dir",
    "skip_nonfinite_steps",
    "data.on_device",
    "data.download",
    "data.data_dir",
    "data.streaming.threads",
  }
)
# The run's length: a larger value continues a run, a smaller one is refused.
MAY_GROW = ("num_steps", "num_epochs")


_UNSET = object()


class WorkdirBusyError(RuntimeError):
  """Another process holds the workdir's lock; the message is one line naming it."""

  exit_status = 1


# ----------------------------------------------------------------------------- locking
_held: dict[str, dict[str, Any]] = {}  # realpath -> {"fd", "modes": [...]}, this process's locks
_held_guard = threading.Lock()


def _holders(path: str, fd: int) -> list[tuple[int, str]]:
  """(pid, "WRITE" | "READ") of the other processes holding a flock on the file `fd` is open on,
  from /proc/locks (Linux); [] where that cannot be read."""
  try:
    st = os.fstat(fd)
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    with open("/proc/locks") as f:
      lines = f.read().splitlines()
  except OSError:
    return []
  out = []
  for line in lines:
    parts = line.split()
    if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK" or parts[5] != inode:
      continue
    pid = int(parts[4]) if parts[4].isdigit() else 0
    if pid and pid != os.getpid():
      out.append((pid, parts[3]))
  return out


def _recorded_pid(fd: int) -> str:
  """What the last exclusive holder wrote: "pid" or "pid on host"."""
  try:
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
  except OSError:
    return ""
  if not text or not text[0].isdigit():
    return ""
  host = text[1] if len(text) > 1 else ""
  return text[0] + (f" on host {host}" if host and host != socket.gethostname() else "")


def _busy_message(workdir: str, fd: int, shared: bool) -> str:
  holders = _holders(os.path.join(workdir, LOCK_FILE), fd)
  writers = [p for p, kind in holders if kind == "WRITE"]
  readers = [p for p, kind in holders if kind != "WRITE"]
  if writers or not readers:  # a training run (or a holder /proc/locks does not show)
    pid = str(writers[0]) if writers else (_recorded_pid(fd) or "unknown")
    if shared:
      return (
        f"workdir {workdir} is in use by a training run (pid {pid}), which holds it exclusively; "
        f"evaluate or predict when it has ended, or on a copy of the workdir"
      )
    return (
      f"workdir {workdir} is in use by another training run (pid {pid}); wait for it to end or "
      f"use another --workdir"
    )
  pids = ", ".join(str(p) for p in sorted(set(readers)))
  return (
    f"workdir {workdir} is being read by pid {pids} (evaluate or predict); train in it when "
    f"they have ended, or use another --workdir"
  )


def _open_lock_file(workdir: str, shared: bool) -> int | None:
  """An fd on WORKDIR/.lock, created if need be; None for a shared lock where the workdir or the
  file does not exist and cannot be created (a read-only copy: nothing can train in it either)."""
  path = os.path.join(workdir, LOCK_FILE)
  try:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  except OSError as e:
    if not shared:
      raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  try:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
  except OSError:
    return None


def _acquire(workdir: str, shared: bool) -> int | None:
  """flock on WORKDIR/.lock (non-blocking); WorkdirBusyError when another process holds it."""
  op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
  for _ in range(20):  # the file can be replaced between open and flock (a failed run removing it)
    fd = _open_lock_file(workdir, shared)
    if fd is None:
      return None
    try:
      fcntl.flock(fd, op)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        os.close(fd)
        if shared:  # a file system without flock: read without a lock
          return None
        raise ConfigError(f"cannot lock workdir {workdir}: {e.strerror or e}") from None
      message = _busy_message(workdir, fd, shared)
      os.close(fd)
      raise WorkdirBusyError(message) from None
    try:
      same = os.stat(os.path.join(workdir, LOCK_FILE)).st_ino == os.fstat(fd).st_ino
    except OSError:
      same = False
    if same:
      return fd
    os.close(fd)
  raise WorkdirBusyError(
    f"workdir {workdir}: cannot take its lock (its {LOCK_FILE} keeps being replaced)"
  )


def _write_pid(fd: int) -> None:
  try:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
  except OSError:
    pass  # the lock holds without it; only the busy message loses the pid


@contextlib.contextmanager
def lock(workdir: str, shared: bool = False) -> Iterator[None]:
  """Holds `workdir`'s lock for the body: exclusive (a training run; creates the workdir) or
  `shared` (read-only commands; a missing workdir is not created and is not locked).

  Raises WorkdirBusyError (one line naming the holder's pid) when another process holds a lock
  that excludes this one, ConfigError when the workdir cannot be created. Re-entrant within a
  process. An exclusive lock that created the workdir removes it again when the body raises and
  left nothing in it but the lock file, so a refused run leaves no trace."""
  workdir = os.path.normpath(workdir)
  key = os.path.realpath(workdir)
  with _held_guard:
    entry = _held.get(key)
    if entry is not None:
      if not shared and "exclusive" not in entry["modes"]:  # shared -> exclusive inside one process
        try:
          fcntl.flock(entry["fd"], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
          raise WorkdirBusyError(_busy_message(workdir, entry["fd"], False)) from None
      entry["modes"].append("shared" if shared else "exclusive")
  if entry is not None:
    try:
      yield
    finally:
      with _held_guard:
        entry["modes"].pop()
        if "exclusive" not in entry["modes"]:
          fcntl.flock(entry["fd"], fcntl.LOCK_SH)
    return

  created: list[str] = []
  if shared:
    if not os.path.isdir(workdir):
      yield
      return
  else:
    parent = workdir
    while parent and not os.path.exists(parent):
      created.append(parent)
      parent = os.path.dirname(parent)
    try:
      os.makedirs(workdir, exist_ok=True)
    except OSError as e:
      raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
  try:
    fd = _acquire(workdir, shared)
  except BaseException:
    _remove_created(workdir, created, holding=None)
    raise
  if fd is None:
    yield
    return
  if not shared:
    _write_pid(fd)
  with _held_guard:
    _held[key] = {"fd": fd, "modes": ["shared" if shared else "exclusive"]}
  try:
    yield
  except BaseException:
    _remove_created(workdir, created, holding=fd)
    raise
  finally:
    with _held_guard:
      _held.pop(key, None)
    os.close(fd)  # releases the lock


def _remove_created(workdir: str, created: list[str], holding: int | None) -> None:
  """Removes the directories `lock` created for a run that then failed, if they hold nothing but
  the lock file."""
  if not created:
    return
  try:
    if sorted(os.listdir(workdir)) not in ([], [LOCK_FILE]):
      return
    if holding is not None or os.path.exists(os.path.join(workdir, LOCK_FILE)):
      os.unlink(os.path.join(workdir, LOCK_FILE))
    for d in created:  # deepest first
      os.rmdir(d)
  except OSError:
    pass


def holds_lock(workdir: str) -> bool:
  """True while this process holds `workdir`'s lock (either kind)."""
  return os.path.realpath(os.path.normpath(workdir)) in _held


def training_lock(fn):
  """Decorator of `fn(config, workdir, ...)`: holds `workdir`'s exclusive lock while fn runs (on
  process 0 of a multi-host run; the others write nothing)."""

  @functools.wraps(fn)
  def wrapper(config, workdir, *args, **kwargs):
    import jax

    if jax.process_index() != 0:
      return fn(config, workdir, *args, **kwargs)
    with lock(workdir):
      return fn(config, workdir, *args, **kwargs)

  return wrapper


# ----------------------------------------------------------------------------- continuing a run
def has_checkpoints(workdir: str) -> bool:
  d = os.path.join(workdir, "checkpoints")
  return os.path.isdir(d) and any(name.isdigit() for name in os.listdir(d))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def _normal(v: Any) -> Any:
  """JSON's view of a value (tuples -> lists), so a config compares with a config.json."""
  return json.loads(json.dumps(v)) if isinstance(v, (tuple, list)) else v


def config_fields(config) -> dict[str, Any]:
  """The config's leaves by dotted name, as the trainer writes them to config.json."""
  return _flat(json.loads(config.to_json_best_effort()))


def read_run_config(workdir: str) -> dict[str, Any] | None:
  """The dotted fields of WORKDIR/config.json; None when there is none. ConfigError (one line) when
  it cannot be read."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      saved = json.load(f)
    if not isinstance(saved, dict):
      raise ValueError("not a JSON object")
  except (OSError, ValueError) as e:
    raise ConfigError(
      f"cannot read {path} ({' '.join(str(e).split())[:150]}); the run in the workdir "
      f"cannot be checked: move the workdir away or use another --workdir"
    ) from None
  return _flat(saved)


def _show(v: Any) -> str:
  if v is _UNSET:
    return "(unset)"
  return repr(v) if isinstance(v, str) else json.dumps(v) if isinstance(v, list) else str(v)


def differences(
  before: dict[str, Any], now: dict[str, Any], prefixes: tuple[str, ...] = ("",)
) -> list[str]:
  """The dotted fields of `now` that differ from `before` and would make another run: those under
  `prefixes`, not in MAY_CHANGE, and num_steps / num_epochs only when they shrink. A schema field
  one side lacks (a run of an older version) is not compared. config.model holds the model's own
  keyword arguments: one the run set and this config lacks differs unless it was None or False, one
  this config adds differs when it is True (a switch such as scan_blocks turned on)."""
  out = []
  for key in sorted(before.keys() | now.keys()):
    if not key.startswith(prefixes) or key in MAY_CHANGE or key in MAY_GROW:
      continue
    if key in before and key in now:
      if _normal(before[key]) != _normal(now[key]):
        out.append(key)
    elif key.startswith("model.") and (
      now.get(key) is True or before.get(key, None) not in (None, False)
    ):
      out.append(key)  # a model option the run set and this config does not, or a switch turned on
  if "" in prefixes:
    out += _length_differences(before, now)
  return sorted(out, key=lambda k: (not k.startswith("model.name"), not k.startswith("model."), k))


def _length_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
  if "num_steps" not in before or "num_epochs" not in before:
    return []
  by_steps_before, by_steps_now = before["num_steps"] > 0, now["num_steps"] > 0
  if by_steps_before != by_steps_now:
    return ["num_steps"]
  key = "num_steps" if by_steps_now else "num_epochs"
  return [key] if now[key] < before[key] else []


def check_compatible(workdir: str, config, prefixes: tuple[str, ...] = ("",)) -> None:
  """ConfigError (one line naming the first differing field) unless `config` continues the run whose
  config.json is in `workdir` (no config.json: nothing to compare). `prefixes` restricts the
  comparison, e.g. ("model.",) for commands that only restore the model."""
  before = read_run_config(workdir)
  if before is None:
    return
  now = config_fields(config)
  diff = differences(before, now, prefixes)
  if not diff:
    return
  key = diff[0]
  before, now = {key: before.get(key, _UNSET), **before}, {key: now.get(key, _UNSET), **now}
  more = (
    f" (and {len(diff) - 1} more field{'s' if len(diff) > 2 else ''}: {', '.join(diff[1:4])})"
    if len(diff) > 1
    else ""
  )
  if key == "model.name":
    raise ConfigError(
      f"workdir {workdir} holds a run of model {before[key]!r}, not {now[key]!r}; "
      f"use another --workdir"
    )
  if key in MAY_GROW:
    unit = "num_steps" if before.get("num_steps", 0) > 0 else "num_epochs"
    raise ConfigError(
      f"workdir {workdir} holds a run of {unit}={_show(before[unit])}; it continues only "
      f"to a {unit} at least as large (this config: num_steps={_show(now['num_steps'])}, "
      f"num_epochs={_show(now['num_epochs'])}); use another --workdir for a shorter run"
    )
  same = (
    f"--config.{key}={_show(before[key])}"
    if before[key] is not _UNSET
    else f"a config without {key}"
  )
  raise ConfigError(
    f"workdir {workdir} holds a run with {key}={_show(before[key])}, this config has "
    f"{key}={_show(now[key])}{more}; a run continues only with the same {key}: use "
    f"{same} or another --workdir"
  )


def check_classes(workdir: str, class_names: list[str]) -> None:
  """ConfigError unless WORKDIR/classes.json (when there is one) lists `class_names`: the data behind
  an unchanged config changed (another file at the same path, a folder with other classes)."""
  path = os.path.join(workdir, "classes.json")
  if not os.path.exists(path):
    return
  try:
    with open(path) as f:
      before = [str(c) for c in json.load(f)]
  except (OSError, ValueError, TypeError) as e:
    raise ConfigError(
      f"cannot read {path} ({' '.join(str(e).split())[:150]}); move the workdir away or "
      f"use another --workdir"
    ) from None
  now = [str(c) for c in class_names]
  if before != now:

    def brief(names):
      return ", ".join(names[:5]) + (f", ... ({len(names)} classes)" if len(names) > 5 else "")

    raise ConfigError(
      f"workdir {workdir} holds a run on the classes [{brief(before)}] but the data now has "
      f"[{brief(now)}]; the dataset changed: use another --workdir"
    )


def check_workdir_model(workdir: str, config: Any) -> None:
  """Raises ConfigError if the run in `workdir` (its config.json, if any) is of another model or
  model option (e.g. the ResNet scan_blocks parameter layout) than `config`: its checkpoints would
  not fit, or would compute another function."""
  check_compatible(workdir, config, prefixes=("model.",))


def prepare_workdir(workdir: str, config: Any) -> None:
  """Checks that `workdir` can take this run, changing nothing in it: a workdir with checkpoints is
  continued only by a config of the same run (`workdir.check_compatible`: same model, data,
  preprocessing, seed, batch, optimizer, schedule, ...; a longer run allowed), one whose run has
  not saved a checkpoint yet only by the same model; it must be writable. Creates it if missing."""
  if has_checkpoints(workdir):
    check_compatible(workdir, config)
  elif os.path.isdir(os.path.join(workdir, "checkpoints")):
    check_workdir_model(workdir, config)
  try:
    os.makedirs(workdir, exist_ok=True)
    probe = os.path.join(workdir, f".write_test_{os.getpid()}")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"workdir {workdir} is not writable: {e.strerror or e}") from None
