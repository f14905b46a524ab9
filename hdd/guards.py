"""Guards for a run's working directory: one run at a time (an advisory lock), writable, with
room to checkpoint, each checked before the run writes anything."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import tempfile

from common.errors import UserError


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
  except OSError as e:
    raise WorkdirError(f"cannot use --workdir={workdir}: {e.strerror}; choose a writable "
                       "directory") from None
  fd = _open_lock_file(workdir, os.path.join(workdir, name))
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    if e.errno in (errno.EAGAIN, errno.EACCES):
      raise WorkdirError(f"another run (pid {owner}) is using --workdir={workdir}; wait for it "
                         "to finish or use another workdir") from None
    raise
  os.ftruncate(fd, 0)
  os.pwrite(fd, str(os.getpid()).encode(), 0)
  try:
    yield
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _open_lock_file(workdir: str, path: str) -> int:
  """A descriptor of the lock file `path`, created if missing. Never through a link: the
  run writes its pid there, which must not overwrite a file that .lock points at."""
  refused = (f"cannot use --workdir={workdir}: {path} is a symbolic link or not a plain file "
             "of its own; remove it (a run makes a new one) or use another workdir")
  try:  # (O_NONBLOCK: a FIFO named .lock must not hang the run.)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                 0o644)
  except OSError as e:
    if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # A link, directory, socket.
      raise WorkdirError(refused) from None
    raise WorkdirError(f"cannot use --workdir={workdir}: {e.strerror}; choose a writable "
                       "directory") from None
  status = os.fstat(fd)
  if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:   # > 1: a hard link.
    os.close(fd)
    raise WorkdirError(refused)
  return fd


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
