"""The CLU metric writers of HDD's own: one that ignores every kind of record (the base of
the others), and the training's progress line in the terminal."""
from __future__ import annotations

import sys
import time
from typing import Mapping, Optional, TextIO

from clu import metric_writers

from common import parallel
from common.progress import duration


class IgnoringWriter(metric_writers.MetricWriter):
  """A CLU metric writer that ignores every kind of record: writers that show or send only
  some kinds override those."""

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_scalars(self, step, scalars):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


class ProgressLine(IgnoringWriter):
  """A metric writer that shows training as one line: the name, step, loss, images/s
  (since the last line) and the ETA (at the run's mean pace), or for a budgeted run the
  budget's spent share and what is left of it (`clock`, a budget.TrainingClock). On a
  terminal the line is rewritten in place; in a log file it is printed at every quarter of
  the run."""

  def __init__(self, name: str, start_step: int, num_steps: int, batch_size: int,
               stream: Optional[TextIO] = None, clock=None):
    self.name, self.start_step, self.num_steps = name, start_step, num_steps
    self.batch_size, self.clock = batch_size, clock
    self.stream = stream or sys.stderr
    self.live = self.stream.isatty()
    self.start_time = self.last_time = time.perf_counter()
    self.last_step, self.quarters_shown = start_step, 0
    self.start_fraction = self.fraction(start_step)
    self.enabled = parallel.is_main_process()

  @property
  def budgeted(self) -> bool:
    return self.clock is not None and self.clock.budgeted

  def fraction(self, step: int) -> float:
    """The share of the run done: of its budget, or of its steps."""
    if self.budgeted:
      return self.clock.spent_fraction()
    return min(step / max(self.num_steps, 1), 1.0)

  def line(self, step: int, loss: float, now: float) -> str:
    rate = (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
    head = f"{self.name}  step {step}"
    if self.budgeted:
      budget = self.clock.budget_seconds
      done = self.fraction(step)
      return (f"{head} ({100 * done:.0f}% of {duration(budget)})  loss {loss:.4f}  "
              f"{rate:,.0f} img/s  left {duration(budget * (1 - done))}")
    remaining = (now - self.start_time) / max(step - self.start_step, 1) * (self.num_steps - step)
    return (f"{head}/{self.num_steps} ({100 * step // self.num_steps}%)  "
            f"loss {loss:.4f}  {rate:,.0f} img/s  ETA {duration(remaining)}")

  def write_scalars(self, step: int, scalars: Mapping[str, float]):
    if not self.enabled or "train_loss" not in scalars:
      return
    now = time.perf_counter()
    text = self.line(step, float(scalars["train_loss"]), now)
    self.last_step, self.last_time = step, now
    done = self.fraction(step)
    finished = done >= 1.0 or step >= self.num_steps
    if self.live:
      self.stream.write("\r\x1b[K" + text + ("\n" if finished else ""))
    else:
      quarter = int(4 * (done - self.start_fraction) / max(1.0 - self.start_fraction, 1e-9)
                    + 1e-9)
      if quarter <= self.quarters_shown and not finished:
        return
      self.quarters_shown = quarter
      self.stream.write(text + "\n")
    self.stream.flush()
