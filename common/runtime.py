"""What every entry point (main.py, the web app, the experiments) sets up first: quiet
logs, tf.data kept off accelerators, and the persistent XLA compilation cache."""
from __future__ import annotations

import logging
import os
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def in_project(path: str) -> bool:
  """Whether a source file is this project's own (not an installed library's)."""
  path = os.path.abspath(path)
  return path.startswith(ROOT + os.sep) and f"{os.sep}site-packages{os.sep}" not in path


class ProjectRecords(logging.Filter):
  """Passes this project's log records, and warnings and errors from anywhere."""

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or in_project(record.pathname)


class ShortFormatter(logging.Formatter):
  """'10:44:01 message', and 'WARNING:' before the message of anything more serious."""

  def __init__(self):
    super().__init__(datefmt="%H:%M:%S")

  def format(self, record: logging.LogRecord) -> str:
    level = "" if record.levelno < logging.WARNING else f"{record.levelname}: "
    return f"{self.formatTime(record, self.datefmt)} {level}{record.getMessage()}"


def quiet_library_logs() -> None:
  """INFO records of orbax, CLU, JAX and TensorFlow dropped (their warnings stay), and this
  project's records with a short time stamp. Instant: a program that may refuse its flags
  calls it first (JAX logs at INFO as it starts) and `quiet_logs` before the real work."""
  from absl import logging as absl_logging
  handler = absl_logging.get_absl_handler().python_handler
  if not any(isinstance(f, ProjectRecords) for f in handler.filters):
    handler.addFilter(ProjectRecords())
  handler.setFormatter(ShortFormatter())


def quiet_logs() -> None:
  """Keeps the terminal to what matters: `quiet_library_logs`, and TensorFlow loaded
  without its C++ start-up notices (seconds). Call it before anything imports TensorFlow."""
  from common import stderr
  quiet_library_logs()
  stderr.import_tensorflow_quietly()


def configure_runtime(compilation_cache: Optional[str] = None) -> None:
  """tf.data kept off accelerators, and a persistent XLA compilation cache (default
  `files.compilation_cache_dir()`, '' for none) so that resumed runs and sampling skip
  recompiling."""
  import jax
  import tensorflow as tf

  from common import files
  tf.config.set_visible_devices([], "GPU")  # tf.data must never take accelerator memory.
  if compilation_cache is None:
    compilation_cache = files.compilation_cache_dir()
  if compilation_cache:
    jax.config.update("jax_compilation_cache_dir", compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
