"""The terminal (hdd.writers, common.progress, common.runtime, hdd.console): which log
records show, the progress line and the closing summary's next commands. The C++ notices
dropped from TensorFlow's start-up: tests/test_stderr.py."""
import io
import logging
import os

from common import progress, runtime
from hdd import console, writers


def record(path: str, level: int) -> logging.LogRecord:
  return logging.LogRecord("absl", level, path, 1, "message", None, None)


def test_project_records_pass_and_library_info_does_not():
  keep = runtime.ProjectRecords()
  own = os.path.join(runtime.ROOT, "hdd", "train.py")
  library = os.path.join(runtime.ROOT, ".venv", "lib", "python3.11", "site-packages", "orbax",
                         "checkpoint", "checkpoint_manager.py")
  assert keep.filter(record(own, logging.INFO))
  assert not keep.filter(record(library, logging.INFO))
  assert not keep.filter(record("/usr/lib/python3/dist-packages/jax/x.py", logging.INFO))
  assert keep.filter(record(library, logging.WARNING))
  assert keep.filter(record(library, logging.ERROR))


def test_progress_line_in_a_log_file_every_quarter():
  stream = io.StringIO()
  line = writers.ProgressLine("stage1 14px", 0, 100, 64, stream)
  for step in range(10, 101, 10):
    line.write_scalars(step, {"train_loss": 1.0 / step, "train_grad_norm": 1.0})
  line.write_scalars(100, {"steps_per_sec": 5.0})   # Other scalars are not shown.
  shown = stream.getvalue().splitlines()
  assert [s.split("  ")[1] for s in shown] == [
      "step 30/100 (30%)", "step 50/100 (50%)", "step 80/100 (80%)", "step 100/100 (100%)"]
  assert shown[-1].startswith("stage1 14px  step 100/100 (100%)  loss 0.0100  ")
  assert shown[-1].endswith("ETA 0s") and " img/s  " in shown[-1]


def test_progress_line_of_a_resumed_run_counts_from_where_it_resumed():
  stream = io.StringIO()
  line = writers.ProgressLine("run", 60, 100, 8, stream)
  line.write_scalars(70, {"train_loss": 0.5})
  assert stream.getvalue().startswith("run  step 70/100 (70%)  loss 0.5000")


def test_progress_line_of_a_budgeted_run_shows_the_budget_spent_and_left():
  import types
  from hdd.clock import TrainingClock
  now = types.SimpleNamespace(t=0.0)
  clock = TrainingClock(seconds_before=60.0, budget_seconds=600.0, now=lambda: now.t)
  clock.start()
  stream = io.StringIO()
  line = writers.ProgressLine("stage2 28px", 100, 10**7, 64, stream, clock=clock)
  for step, t in ((200, 90.0), (300, 200.0), (400, 420.0), (500, 540.0)):
    now.t = t
    line.write_scalars(step, {"train_loss": 0.25})
  shown = stream.getvalue().splitlines()
  # Resumed at 10% of the budget: the quarters of the remaining 90% are 32.5%, 55%, 77.5%.
  assert [s.split("  ")[1] for s in shown] == ["step 300 (43% of 10m00s)",
                                               "step 400 (80% of 10m00s)",
                                               "step 500 (100% of 10m00s)"]
  assert shown[0].endswith("left 5m40s") and shown[-1].endswith("left 0s")


def test_duration():
  assert [progress.duration(s) for s in (0.4, 42, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


def next_commands(text: str) -> list[str]:
  return [line.strip() for line in text.split("Next")[1].splitlines()[1:]]


def test_summary_after_one_stage_trains_the_others_then_samples_without_the_stage(tmp_path):
  argv = ["main.py", "--config=configs/hdd_afd.py", "--config.stage", "1", "--mode=train",
          f"--workdir={tmp_path}"]
  base = f"python main.py --config=configs/hdd_afd.py --workdir={tmp_path}"
  assert next_commands(console.summary(str(tmp_path), "train", argv, 3.0, stage=1)) == [
      f"another stage   {base} --config.stage=K", f"then sample     {base} --mode=sample"]
  # A whole run: the flags as given, --mode and its value dropped.
  argv = ["main.py", "--mode", "train", "--config.stage=0", f"--workdir={tmp_path}"]
  shown = next_commands(console.summary(str(tmp_path), "train", argv, 3.0))
  assert shown[:2] == [
      f"sample again    python main.py --config.stage=0 --workdir={tmp_path} --mode=sample",
      f"evaluate        python main.py --config.stage=0 --workdir={tmp_path} --mode=eval"]
