"""Guards for a run's working directory: one run at a time, writable, with room to
checkpoint, and a clean stop on SIGTERM/SIGINT (finish the step, save, exit)."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import shutil
import signal
import tempfile

from common.errors import Stopped, UserError


class WorkdirError(UserError):
  pass


@contextlib.contextmanager
def exclusive(workdir: str):
  """Holds an advisory lock on WORKDIR/.lock (process k > 0 of a multi-process run:
  .lock-process<k>) for the duration of a run. A second run on the same workdir is
  refused at once; the lock dies with its process (kill -9 too)."""
  import jax
  name = ".lock" if jax.process_index() == 0 else f".lock-process{jax.process_index()}"
  try:
    os.makedirs(workdir, exist_ok=True)
    handle = open(os.path.join(workdir, name), "a+")
  except OSError as e:
    raise WorkdirError(f"cannot use --workdir={workdir}: {e.strerror}; choose a writable "
                       "directory") from None
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    handle.seek(0)
    owner = handle.read().strip() or "unknown"
    handle.close()
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise WorkdirError(f"another run (pid {owner}) is using --workdir={workdir}; wait for it "
                         "to finish or use another workdir") from None
    raise
  handle.seek(0)
  handle.truncate()
  handle.write(str(os.getpid()))
  handle.flush()
  try:
    yield
  finally:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def check_free_space(workdir: str, needed_bytes: int) -> None:
  """Fails early when the workdir's disk cannot hold the checkpoints a run will write."""
  free = shutil.disk_usage(workdir).free
  if free < needed_bytes:
    raise WorkdirError(f"--workdir={workdir} has {free / 2**20:.0f} MiB free, the checkpoints "
                       f"of this run need about {needed_bytes / 2**20:.0f} MiB; free some space "
                       "or use another workdir")


def check_writable(directory: str) -> None:
  """Fails early when checkpoints cannot be written to `directory` (read-only, immutable,
  not a directory), before a save would fail half-way in a background thread."""
  try:
    os.makedirs(directory, exist_ok=True)
    with tempfile.TemporaryFile(dir=directory):
      pass
  except OSError as e:
    raise WorkdirError(f"cannot write checkpoints to {directory}: {e.strerror}; make it "
                       "writable or use another workdir") from None


class StopSignal:
  """SIGTERM/SIGINT ask the whole run to stop at its next safe point: training saves a
  checkpoint at the next step boundary, then the run ends (`common.errors.Stopped`)
  instead of going on to the next stage or to sampling. A second signal exits at once.

  Installed once per run by `hdd.run`; the training loop and the samplers look at
  `requested` (the signal number, or None) through `current()`.
  """

  def __init__(self):
    self.requested = None
    self._previous = {}

  def __enter__(self):
    global _current
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    _current = self
    return self

  def _handle(self, signum, frame):
    if self.requested:
      os._exit(128 + signum)
    self.requested = signum
    logging.warning("Signal %d: stopping at the next safe point, after a checkpoint (send it "
                    "again to exit immediately).", signum)

  def raise_if_requested(self, where: str) -> None:
    if self.requested:
      raise Stopped(self.requested, where)

  def __exit__(self, *exc):
    global _current
    _current = None
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


class _NoSignal(StopSignal):
  """What `current()` gives outside a run (library use): nothing is ever requested."""

  def __enter__(self):
    return self


_current = None


def current() -> StopSignal:
  """The run's stop signal, or one that never fires when none is installed."""
  return _current or _NoSignal()
