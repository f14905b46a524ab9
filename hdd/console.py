"""What a person sees in the terminal: one progress line per training run (step, loss,
images/s, ETA), and a closing summary of a run's outputs, its timing and the commands to
run next. (Third-party logs are kept quiet by `common.runtime.quiet_logs`.)"""
from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Mapping, Optional, TextIO

from clu import metric_writers

from common import parallel

def duration(seconds: float) -> str:
  """'42s', '3m05s', '1h02m'."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


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


def outputs_of(workdir: str) -> list[tuple[str, str]]:
  """(what, path) of the outputs a run left in its workdir, for the closing summary."""
  found = []
  for what, relative in (("samples", "samples/grid.png"), ("stages", "samples/cascade.png"),
                         ("chain", "samples/chain.png"), ("trajectory", "samples/trajectory.png"),
                         ("images", "samples/samples.npz"), ("timing", "timing.md"),
                         ("evaluation", "eval/results.json"),
                         ("interpolation", "interpolation"),
                         ("forward process", "forward_process.png")):
    if os.path.exists(os.path.join(workdir, relative)):
      found.append((what, os.path.join(workdir, relative)))
  checkpoint_dirs = sorted(os.path.join(workdir, name, "checkpoints")
                           for name in os.listdir(workdir)
                           if os.path.isdir(os.path.join(workdir, name, "checkpoints")))
  if os.path.isdir(os.path.join(workdir, "checkpoints")):
    checkpoint_dirs.insert(0, os.path.join(workdir, "checkpoints"))
  found += [("checkpoints", d) for d in checkpoint_dirs]
  return found


def summary(workdir: str, mode: str, argv: list[str], seconds: float) -> str:
  """The closing summary: where the outputs are, the timing table, the next commands."""
  command = [a for a in argv[1:] if not a.startswith("--mode")]
  base = "python main.py " + " ".join(shlex.quote(a) for a in command)
  lines = ["", f"Done: {mode} in {duration(seconds)}. Outputs in {workdir}:"]
  lines += [f"  {what:<16}{path}" for what, path in outputs_of(workdir)]
  lines.append(f"  {'logs':<16}tensorboard --logdir {shlex.quote(workdir)}")
  timing = os.path.join(workdir, "timing.md")
  if os.path.exists(timing):
    with open(timing) as f:
      lines += ["", f.read().rstrip()]
  lines += ["", "Next:",
            f"  sample again    {base} --mode=sample",
            f"  evaluate        {base} --mode=eval",
            f"  web app         python -m hdd.app --workdir={shlex.quote(workdir)}"]
  return "\n".join(lines)
