"""Keeping C++ start-up notices of TensorFlow off the terminal. They are written straight
to file descriptor 2 by absl's C++ logging, which TF_CPP_MIN_LOG_LEVEL no longer reaches,
so the import runs with descriptor 2 captured, and every other line is passed on."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

# A C++ log record starts "I0000 00:00:1796122236.232014 5572 port.cc:153] ..." (I, W, E
# or F); an INFO one may run on over further lines. absl also writes "WARNING: All log
# messages before absl::InitializeLog() is called are written to STDERR" before the first.
RECORD = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ \S+\] ")
NOTICE = re.compile(r"^(I\d{4} [\d:.]+ +\d+ \S+\] |WARNING: All log messages before "
                    r"absl::InitializeLog\(\) is called)")


def without_info_records(text: str) -> str:
  """`text` less the C++ INFO records (with their continuation lines) and absl's notice.
  A Python traceback or error ends a record's continuation: it is always kept."""
  kept, dropping = [], False
  for line in text.splitlines(True):
    if NOTICE.match(line):
      dropping = True
    elif RECORD.match(line) or not dropping or line.startswith("Traceback") or "Error" in line:
      dropping = False
      kept.append(line)
  return "".join(kept)


def import_tensorflow_quietly() -> None:
  """Loads TensorFlow (what clu, tfds and the pipeline import) without its start-up
  notices; call it before anything else imports TensorFlow."""
  with without_notices():
    import tensorflow  # noqa: F401


@contextlib.contextmanager
def without_notices():
  """Runs the block with file descriptor 2 captured; writes back the lines that are not
  INFO notices (warnings and errors of C++ code stay visible)."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      sys.stderr.write(without_info_records(captured.read().decode(errors="replace")))
      sys.stderr.flush()
