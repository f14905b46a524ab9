"""Wall-clock training budgets (hdd.clock, train.time_budget_minutes): the clock, the
budget learning rate against its closed form, and budgeted runs that stop, checkpoint with
their training seconds and resume with only the time left; a cascade splits its budget."""
import json
import math
import os
import time
import types

import jax
import numpy as np
import pytest

from common.errors import CheckpointError, ConfigError
from helpers import tiny_cascade, tiny_config
from hdd import checkpoints, config_checks, stages, train
from hdd.clock import TrainingClock


def test_budget_learning_rate_against_its_closed_form():
  from hdd.optimizer import budget_learning_rate
  config = tiny_config().train
  config.update(learning_rate=2e-3, min_learning_rate=1e-5, warmup_steps=10,
                time_budget_minutes=5.0)
  for step, fraction in ((0, 0.0), (4, 0.001), (10, 0.0), (50, 0.25), (60, 0.5), (99, 0.9),
                         (120, 1.0), (130, 1.7)):
    f = min(fraction, 1.0)
    cosine = 1e-5 + 0.5 * (2e-3 - 1e-5) * (1 + math.cos(math.pi * f))
    expected = min(cosine, 2e-3 * step / 10) if step < 10 else cosine
    assert math.isclose(budget_learning_rate(config, step, fraction), expected, rel_tol=1e-12)
  config.lr_schedule = "constant"
  assert budget_learning_rate(config, 50, 0.9) == 2e-3
  assert math.isclose(budget_learning_rate(config, 5, 0.9), 1e-3, rel_tol=1e-12)


def test_clock_leaves_out_excluded_time_and_continues_earlier_runs():
  now = types.SimpleNamespace(t=100.0)
  clock = TrainingClock(seconds_before=30.0, budget_seconds=60.0, now=lambda: now.t)
  assert clock.seconds() == 30.0 and clock.spent_fraction() == 0.5
  clock.start()
  now.t = 110.0
  with clock.excluded():
    now.t = 125.0               # 15 s in a measuring hook.
  now.t = 130.0
  assert clock.seconds() == 45.0 and clock.run_seconds() == 15.0
  assert clock.excluded_seconds == 15.0 and not clock.budget_spent()
  now.t = 145.0
  assert clock.budget_spent() and clock.spent_fraction() == 1.0
  unbudgeted = TrainingClock(now=lambda: now.t)
  assert not unbudgeted.budgeted and unbudgeted.spent_fraction() == 0.0
  assert not unbudgeted.budget_spent()


def budgeted_config(data_path: str, minutes: float):
  config = tiny_config(data_path)
  config.train.update(time_budget_minutes=minutes, num_steps=1_000_000, checkpoint_every=10**6,
                      log_every=10**6, min_learning_rate=0.0)
  return config


def timing_of(workdir) -> dict:
  with open(os.path.join(workdir, "train_timing.json")) as f:
    return json.load(f)


def last_checkpoint(workdir):
  directory = os.path.join(workdir, "checkpoints")
  step = max(checkpoints.step_names(directory), default=None)
  return step, checkpoints.trained_seconds(directory, step)


def test_a_budget_stops_checkpoints_and_resumes_with_the_time_left(stripes_npz, tmp_path):
  workdir = str(tmp_path / "run")
  budget_seconds = 1.5
  rates, seconds = [], [0.0]     # Each step's rate, and the training seconds at its end.

  def record(step, state, writer, train_seconds):
    rates.append(float(state.opt_state.hyperparams["learning_rate"]))
    seconds.append(train_seconds)

  config = budgeted_config(stripes_npz, budget_seconds / 60)
  state = train.train_and_evaluate(config, workdir, [record])
  timing = timing_of(workdir)
  assert timing["stopped_by"] == "budget" and timing["budget_seconds"] == budget_seconds
  steps = timing["end_step"]
  assert 10 < steps == int(state.step) < 1_000_000
  # It stopped at the first step ending past the budget (a loaded machine may stretch a
  # step), and checkpointed that step with its training seconds.
  assert budget_seconds <= timing["total_train_seconds"] < budget_seconds + 3.0
  saved_step, saved_seconds = last_checkpoint(workdir)
  assert saved_step == steps and budget_seconds <= saved_seconds <= timing["total_train_seconds"]
  # Each step after the warm-up ran at the cosine of the budget spent before it,
  # lr (1 + cos(pi s / B)) / 2 with lr_min = 0; the last one began inside the budget and ended
  # past it.
  lr, warmup = config.train.learning_rate, config.train.warmup_steps
  assert len(rates) == steps and seconds[-2] < budget_seconds <= seconds[-1]
  for step in range(warmup, steps):
    cosine = 0.5 * lr * (1 + math.cos(math.pi * seconds[step] / budget_seconds))
    assert rates[step] == pytest.approx(cosine, rel=1e-5, abs=1e-12)

  # The same budget again: nothing left to train.
  again = train.train_and_evaluate(budgeted_config(stripes_npz, budget_seconds / 60), workdir)
  assert int(again.step) == steps and timing_of(workdir)["end_step"] == steps

  # A doubled budget trains only what is left of it: 2B less the seconds saved with the
  # checkpoint it resumes from.
  start = time.perf_counter()
  resumed = train.train_and_evaluate(budgeted_config(stripes_npz, 2 * budget_seconds / 60),
                                     workdir)
  wall = time.perf_counter() - start
  timing = timing_of(workdir)
  assert timing["start_step"] == steps < timing["end_step"] == int(resumed.step)
  left = 2 * budget_seconds - saved_seconds
  assert left <= timing["train_seconds"] < left + 3.0 and timing["train_seconds"] < wall
  assert timing["total_train_seconds"] >= 2 * budget_seconds


def test_measuring_hooks_are_not_training_time(stripes_npz, tmp_path):
  calls = []

  def slow_hook(step, state, writer, train_seconds):   # Measures for 0.4 s every 5 steps.
    calls.append(train_seconds)
    if step % 5 == 0:
      time.sleep(0.4)

  workdir = str(tmp_path / "run")
  start = time.perf_counter()
  train.train_and_evaluate(budgeted_config(stripes_npz, 1.5 / 60), workdir, [slow_hook])
  wall = time.perf_counter() - start
  timing = timing_of(workdir)
  measured = 0.4 * (timing["end_step"] // 5)
  assert len(calls) == timing["end_step"] >= 10 and timing["hook_seconds"] >= measured
  # The budget counted training only: the loop ran on for the hooks' time.
  assert timing["total_train_seconds"] >= 1.5 and wall >= (
      timing["total_train_seconds"] + timing["hook_seconds"])
  # Each hook saw the training seconds up to its step: increasing, and without hook time.
  assert all(b > a for a, b in zip(calls, calls[1:]))
  assert calls[-1] == pytest.approx(timing["total_train_seconds"], abs=0.5)


def test_a_budget_run_samples_under_any_config_and_resumes_only_under_a_budget(stripes_npz,
                                                                               tmp_path):
  workdir = str(tmp_path / "run")
  budgeted = budgeted_config(stripes_npz, 0.5 / 60)
  state = train.train_and_evaluate(budgeted, workdir)
  plain = tiny_config(stripes_npz)
  params = checkpoints.restore_params(plain, workdir)   # Sampling reads the parameters.
  for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(state.ema_params)):
    np.testing.assert_array_equal(a, b)
  plain.train.num_steps = 10**6
  with pytest.raises(CheckpointError, match=r"written by a run with a time budget.*resume it "
                     r"with one \(train.time_budget_minutes"):
    train.train_and_evaluate(plain, workdir)


def test_a_cascade_splits_its_budget_by_stage_fraction(stripes_npz):
  config = tiny_cascade(data_path=stripes_npz)
  config.time_budget_minutes = 30.0
  config.stages.stage1.budget_fraction, config.stages.stage2.budget_fraction = 0.3, 0.7
  config_checks.check_config(config)
  assert [stages.stage_config(config, name).train.time_budget_minutes
          for name in ("stage1", "stage2")] == pytest.approx([9.0, 21.0])
  config.stages.stage2.budget_fraction = 0.6
  with pytest.raises(ConfigError, match=r"budget_fraction=\[0.3, 0.6\]: .* sum to 1"):
    config_checks.check_config(config)
  config.stages.stage2.budget_fraction = 0.7
  config.stages.stage2.train.time_budget_minutes = 5.0
  with pytest.raises(ConfigError, match=r"stages.stage2.train.time_budget_minutes=5.0: set "
                     "either"):
    config_checks.check_config(config)
  single = tiny_config(stripes_npz)
  single.train.time_budget_minutes = -1.0
  with pytest.raises(ConfigError, match=r"train.time_budget_minutes=-1.0: must be >= 0"):
    config_checks.check_config(single)
