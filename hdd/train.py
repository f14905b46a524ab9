"""The training loop: build or restore the state, then step, log, run the hooks and
checkpoint until train.num_steps, the end of the time budget, or a stop signal.

A batch goes: input_pipeline.pipeline (numpy, [B, H, W, C] in [-1, 1]) ->
`train_step.split_micro_batches` ([A, B/A, ...]) -> `parallel.shard_batch` (split over
devices) -> `train_step.train_step` (one optimizer update, one EMA update).
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Sequence

import jax
import ml_collections
import numpy as np
from clu import metric_writers, periodic_actions

from common import files, parallel
from common.errors import UserError
from hdd import (checkpoints, guards, hooks as hooks_lib, layout, stop_signal, tracking,
                 writers)
from hdd.clock import TrainingClock
from hdd.build import create_model, create_schedule
from hdd.optimizer import budget_learning_rate, learning_rate_fn, with_learning_rate
from hdd.train_step import TrainState, compile_train_step, create_train_state, split_micro_batches
from hdd.maths.unet import count_params
from input_pipeline.pipeline import create_train_iterator


class NonFiniteError(UserError):
  pass


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       hooks: Sequence[hooks_lib.Hook] = ()) -> TrainState:
  """Trains (or resumes) the model of `config` in `workdir`; returns the final state.

  Training ends at train.num_steps or, with train.time_budget_minutes, at the first step
  that ends with the budget spent (`hdd.clock`). `hooks` run after every step (see
  `hdd.hooks`); their time is not training time. Checkpoints are written every
  train.checkpoint_every steps and at the end. A stop signal ends training after the
  checkpoint of the step it arrived in (`common.errors.Stopped`); any failure first lets a
  checkpoint being written complete."""
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.create_mesh()
  tc = config.train
  state = jax.device_put(create_train_state(config, create_model(config)),
                         parallel.replicated(mesh))
  logging.info("U-Net: %s parameters; %d device(s): %s", f"{count_params(state.params):,}",
               mesh.size, jax.devices()[0].platform)

  # Parameters, EMA and two Adam moments in float32, for each kept checkpoint and one more.
  guards.check_free_space(workdir, 16 * count_params(state.params) *
                          (tc.keep_checkpoints + 1) + 2**20)
  checkpoint_dir = layout.checkpoint_dir(workdir)
  guards.check_writable(checkpoint_dir)
  restored_step, state = checkpoints.restore_latest(checkpoint_dir, state)
  manager = checkpoints.create_manager(checkpoint_dir, tc.keep_checkpoints)
  start_step = int(state.step)
  clock = TrainingClock(seconds_before(checkpoint_dir, restored_step, workdir),
                        60.0 * tc.time_budget_minutes)
  if restored_step is not None:
    checkpoints.check_resume_config(config, workdir, start_step)
    logging.info("Resuming from the checkpoint at step %d in %s.", start_step, checkpoint_dir)
  if start_step >= tc.num_steps or clock.budget_spent():
    logging.info("Training already finished (step %d of %d, %.0f s trained%s).", start_step,
                 tc.num_steps, clock.seconds(),
                 f" of a {clock.budget_seconds:.0f} s budget" if clock.budgeted else "")
    checkpoints.finish(manager)
    return state
  with files.atomic_write(layout.config_path(workdir)) as f:
    f.write(config.to_json_best_effort(indent=2))

  batches = create_train_iterator(config.data, tc.batch_size, config.seed, start_step,
                                  config.model.num_classes)
  schedule = jax.device_put(create_schedule(config.diffusion), parallel.replicated(mesh))
  tracked = tracking.writers(config, workdir, "/".join(os.path.normpath(os.path.abspath(
      workdir)).split(os.sep)[-2:]))
  writer = metric_writers.MultiWriter([
      metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0),
      *tracked])
  writer.write_hparams(tracking.flatten_config(config))
  progress = periodic_actions.ReportProgress(
      num_train_steps=None if clock.budgeted else tc.num_steps, writer=writer,
      every_steps=tc.log_every)

  def next_batch():
    return parallel.shard_batch(split_micro_batches(next(batches), tc.grad_accum_steps), mesh, 1)

  batch = next_batch()
  compile_start = time.perf_counter()
  step_fn = compile_train_step(config, mesh).lower(state, batch, schedule).compile()
  compile_seconds = time.perf_counter() - compile_start
  logging.info("Compiled the train step in %.1f s.", compile_seconds)
  name = f"{os.path.basename(os.path.normpath(workdir))} {config.data.image_size}px"
  writer = metric_writers.MultiWriter(
      [writer, writers.ProgressLine(name, start_step, tc.num_steps, tc.batch_size, clock=clock)])
  learning_rate, replicated = learning_rate_fn(tc), parallel.replicated(mesh)

  history, skipped = [], 0
  stop = stop_signal.current()
  clock.start()
  step, seconds, rate = start_step, clock.seconds_before, None
  try:
    while True:
      if clock.budgeted:   # The rate of this step, from the budget spent before it.
        rate = budget_learning_rate(tc, step, clock.spent_fraction(seconds))
        state = with_learning_rate(state, jax.device_put(np.float32(rate), replicated))
      state, metrics = step_fn(state, batch, schedule)
      step += 1
      stopping = stop.requested   # Read once: the step is waited for, saved and ended on it.
      history.append(metrics)
      if step < tc.num_steps:
        batch = next_batch()   # Prepared while the step runs (a budget's last one unused).
      if clock.budgeted or hooks or step >= tc.num_steps or stopping:
        jax.block_until_ready(metrics)   # The clock must see the step done, not dispatched.
      # With several processes, a budget's end is process 0's reading of the clock, so that
      # every process stops (and checkpoints) at the same step.
      seconds = (parallel.from_main_process(clock.seconds()) if clock.budgeted
                 else clock.seconds())
      last = step >= tc.num_steps or clock.budget_spent(seconds)
      progress(step)
      if step % tc.log_every == 0 or last:
        skipped += write_train_metrics(writer, step, jax.device_get(history), tc,
                                       learning_rate(step - 1) if rate is None else rate,
                                       skipped)
        history = []
      with clock.excluded():
        for hook in hooks:
          hook(step, state, writer, seconds)
      if last or step % tc.checkpoint_every == 0 or stopping:
        checkpoints.save(manager, step, state, seconds)
      if last or stopping:
        break
  except BaseException:
    checkpoints.finish(manager, raise_errors=False)  # A save in flight completes first.
    raise
  # Training time is the clock at the last step's end, as the budget and the hooks saw it
  # and the last checkpoint holds: the final save after it is not training.
  total_seconds = seconds
  run_seconds = total_seconds - clock.seconds_before
  checkpoints.finish(manager)
  timing = {"start_step": start_step, "end_step": step, "compile_seconds": compile_seconds,
            "train_seconds": run_seconds, "total_train_seconds": total_seconds,
            "hook_seconds": clock.excluded_seconds, "budget_seconds": clock.budget_seconds,
            "stopped_by": ("signal" if stop.requested else
                           "num_steps" if step >= tc.num_steps else "budget"),
            "parameters": count_params(state.params), "skipped_steps": skipped,
            "preempted": bool(stop.requested),
            "images_per_second": (step - start_step) * tc.batch_size / max(run_seconds, 1e-9)}
  if not stop.requested:
    close_start = time.perf_counter()
    batches.close()
    logging.info("Closed the input pipeline in %.1f s.", time.perf_counter() - close_start)
  writer.flush()
  for tracker in tracked:
    tracker.close()
  files.write_json(layout.train_timing_path(workdir), timing)
  logging.info("Trained steps %d-%d in %.1f s (%.1f img/s).", start_step, step,
               timing["train_seconds"], timing["images_per_second"])
  stop.raise_if_requested(f"at step {step} of {tc.num_steps} in {workdir}")
  return state


def seconds_before(checkpoint_dir: str, restored_step, workdir: str) -> float:
  """The training seconds of the runs a resumed run continues: recorded with its checkpoint,
  or for a checkpoint written before they were, those of a train_timing.json that ended at
  that step (else 0)."""
  if restored_step is None:
    return 0.0
  recorded = checkpoints.trained_seconds(checkpoint_dir, restored_step)
  if recorded is not None:
    return recorded
  timing_path = layout.train_timing_path(workdir)
  if os.path.exists(timing_path):
    with open(timing_path) as f:
      previous = json.load(f)
    if previous.get("end_step") == restored_step:
      return float(previous.get("total_train_seconds", 0.0))
  return 0.0


def write_train_metrics(writer, step: int, summary: list, tc: ml_collections.ConfigDict,
                        learning_rate, skipped_before: int) -> int:
  """Logs the mean loss and gradient norm of the steps since the last log; returns how
  many of them were non-finite (skipped), or raises with train.nonfinite=stop."""
  finite = np.array([m["finite"] for m in summary])
  skipped = 0
  if not finite.all():
    bad_step = step - len(summary) + int(np.argmin(finite)) + 1
    if tc.nonfinite == "stop":
      raise NonFiniteError(f"non-finite loss, gradient or update at step {bad_step}; the last "
                           "good checkpoint is kept. Lower train.learning_rate or set "
                           "train.nonfinite=skip")
    skipped = int((~finite).sum())
  writer.write_scalars(step, {
      "train_loss": float(np.mean([m["loss"] for m in summary if m["finite"]] or [np.nan])),
      "train_grad_norm": float(np.mean([m["grad_norm"] for m in summary])),
      "train_learning_rate": float(learning_rate),
      "train_skipped_steps": skipped_before + skipped})
  return skipped
