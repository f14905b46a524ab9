"""Files that readers never see half-written, and where HDD caches what it downloads or
computes once (FID weights and reference statistics, compiled XLA programs).

In a multi-process run only process 0 writes files: every other process computes the same
results and writes them to a scratch place that is thrown away (orbax writes checkpoints
together, outside these functions)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile

CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "hdd")


def _writes_files() -> bool:
  from common import parallel  # JAX loads when something is written, not at start-up.
  return parallel.is_main_process()


def cache_path(*parts: str) -> str:
  """A path under ~/.cache/hdd, e.g. cache_path("fid", "default_1.pt")."""
  return os.path.join(CACHE_DIR, *parts)


def compilation_cache_dir() -> str:
  """The persistent XLA compilation cache: $HDD_COMPILATION_CACHE or ~/.cache/hdd/jax."""
  return os.environ.get("HDD_COMPILATION_CACHE", cache_path("jax"))


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w"):
  """Opens a temporary file beside `path` for writing and renames it over `path` only when
  the block ends without an error; on an error the temporary file is removed. The
  temporary name keeps the extension, so writers that look at it (np.savez) keep it too."""
  if not _writes_files():
    with tempfile.TemporaryDirectory() as scratch, open(
        os.path.join(scratch, os.path.basename(path)), mode) as f:
      yield f
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  stem, extension = os.path.splitext(path)
  tmp = f"{stem}.tmp-{os.getpid()}{extension}"
  try:
    with open(tmp, mode) as f:
      yield f
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_directory(path: str):
  """Yields a new, empty directory beside `path` to write a set of files into. When the
  block ends without an error it replaces `path` as a whole, so readers see either the
  old set or the new one, never a mix; on an error it is removed and `path` is untouched.
  (A crash between the two renames leaves <path>.old-* and no <path>: still no mix.)"""
  if not _writes_files():
    with tempfile.TemporaryDirectory() as scratch:
      yield scratch
    return
  parent, name = os.path.split(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f"{name}.tmp-", dir=parent)
  umask = os.umask(0)
  os.umask(umask)
  os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a results folder gets the usual mode.
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  old = None
  if os.path.exists(path):
    old = tempfile.mkdtemp(prefix=f"{name}.old-", dir=parent)
    os.replace(path, os.path.join(old, name))
  os.replace(tmp, path)
  if old:
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str, value) -> None:
  """Writes `value` as indented JSON, atomically."""
  with atomic_write(path) as f:
    json.dump(value, f, indent=2)
