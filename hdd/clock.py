"""The training clock, and the wall-clock budget it enforces (train.time_budget_minutes).

Training seconds are the training loop's wall-clock from its first step to the end of its
last, without compilation and without the time the optional hooks spend measuring (FID,
sample grids), continued across resumes: every checkpoint records them (`checkpoints.save`).
Saves during training count; the final save, after the last step, does not. A budgeted run
stops at the first step that ends with the budget spent (or at train.num_steps, a cap),
checkpoints there, and a resumed run trains only what is left. Its learning rate follows the
spent fraction (`optimizer.budget_learning_rate`).
"""
from __future__ import annotations

import contextlib
import time
from typing import Callable, Optional


class TrainingClock:
  """Training seconds of a run: `seconds_before` (its earlier runs) plus this run's
  wall-clock since `start()`, less the intervals spent inside `excluded()`."""

  def __init__(self, seconds_before: float = 0.0, budget_seconds: float = 0.0,
               now: Callable[[], float] = time.perf_counter):
    self.seconds_before, self.budget_seconds, self._now = seconds_before, budget_seconds, now
    self._start = None
    self.excluded_seconds = 0.0

  def start(self) -> None:
    self._start = self._now()

  def seconds(self) -> float:
    """Training seconds so far, all runs counted."""
    if self._start is None:
      return self.seconds_before
    return self.seconds_before + self._now() - self._start - self.excluded_seconds

  def run_seconds(self) -> float:
    """Training seconds of this run alone."""
    return self.seconds() - self.seconds_before

  @contextlib.contextmanager
  def excluded(self):
    """Time spent in this block is not training (measuring hooks)."""
    start = self._now()
    try:
      yield
    finally:
      self.excluded_seconds += self._now() - start

  @property
  def budgeted(self) -> bool:
    return self.budget_seconds > 0

  def spent_fraction(self, seconds: Optional[float] = None) -> float:
    """The budget's spent fraction in [0, 1] after `seconds` (default: now); 0 without a
    budget."""
    if not self.budgeted:
      return 0.0
    return min((self.seconds() if seconds is None else seconds) / self.budget_seconds, 1.0)

  def budget_spent(self, seconds: Optional[float] = None) -> bool:
    """Whether the budget is spent after `seconds` (default: now)."""
    return self.budgeted and (self.seconds() if seconds is None else seconds) >= (
        self.budget_seconds)
