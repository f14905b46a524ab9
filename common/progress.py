"""One line of progress for any step of a run that takes more than a few seconds
(reference statistics, classifier training, sampling): what it is, how far, and the time
left at its mean pace. On a terminal the line is rewritten in place; in a log file it is
printed at every quarter. Process 0 only."""
from __future__ import annotations

import sys
import time
from typing import Optional, TextIO


def duration(seconds: float) -> str:
  """'42s', '3m05s', '1h02m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
  """`Progress("FID reference statistics", 10000, "images")`, then `update(done)` as the
  work advances: '12:01:02 FID reference statistics  2,500/10,000 images (25%)  left 4m10s'."""

  def __init__(self, what: str, total: int, unit: str = "", stream: Optional[TextIO] = None):
    from common import parallel
    self.what, self.total, self.unit = what, max(int(total), 1), unit
    self.stream = stream or sys.stderr
    self.live = self.stream.isatty()
    self.start = time.perf_counter()
    self.quarters_shown = -1
    self.enabled = parallel.is_main_process()

  def line(self, done: int, now: float) -> str:
    elapsed = now - self.start
    left = elapsed / done * (self.total - done) if done else 0.0
    unit = f" {self.unit}" if self.unit else ""
    timing = f"left {duration(left)}" if done < self.total else f"in {duration(elapsed)}"
    return (f"{time.strftime('%H:%M:%S')} {self.what}  {done:,}/{self.total:,}{unit} "
            f"({100 * done // self.total}%)  {timing}")

  def update(self, done: int) -> None:
    if not self.enabled:
      return
    done = min(int(done), self.total)
    text = self.line(done, time.perf_counter())
    finished = done >= self.total
    if self.live:
      self.stream.write("\r\x1b[K" + text + ("\n" if finished else ""))
    else:
      quarter = 4 * done // self.total
      if quarter <= self.quarters_shown:
        return
      self.quarters_shown = quarter
      self.stream.write(text + "\n")
    self.stream.flush()
