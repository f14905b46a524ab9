"""The process-wide stop signal: SIGTERM/SIGINT ask a run to stop at its next safe point
(finish the step, save, exit) instead of dying mid-write."""
from __future__ import annotations

import logging
import os
import signal

from common.errors import Stopped


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
