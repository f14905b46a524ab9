"""The training loop: build or restore the state, then step, log, run the hooks and
checkpoint until train.num_steps, or until a stop signal.

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
from hdd import (checkpoints, console, hooks as hooks_lib, reports, tracking,
                 workdir as workdir_guard)
from hdd.build import create_model, create_schedule
from hdd.optimizer import learning_rate_fn
from hdd.train_step import TrainState, compile_train_step, create_train_state, split_micro_batches
from hdd.unet import count_params
from input_pipeline.pipeline import create_train_iterator


class NonFiniteError(UserError):
  pass


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       hooks: Sequence[hooks_lib.Hook] = ()) -> TrainState:
  """Trains (or resumes) the model of `config` in `workdir`; returns the final state.
  `hooks` run after every step (see `hdd.hooks`); checkpointing is always on. A stop
  signal ends training after the checkpoint of the step it arrived in
  (`common.errors.Stopped`); any failure first lets a checkpoint being written complete."""
  os.makedirs(workdir, exist_ok=True)
  mesh = parallel.create_mesh()
  tc = config.train
  state = jax.device_put(create_train_state(config, create_model(config)),
                         parallel.replicated(mesh))
  logging.info("U-Net: %s parameters; %d device(s): %s", f"{count_params(state.params):,}",
               mesh.size, jax.devices()[0].platform)

  # Parameters, EMA and two Adam moments in float32, for each kept checkpoint and one more.
  workdir_guard.check_free_space(workdir, 16 * count_params(state.params) *
                                 (tc.keep_checkpoints + 1) + 2**20)
  workdir_guard.check_writable(os.path.join(workdir, "checkpoints"))
  manager = checkpoints.create_manager(os.path.join(workdir, "checkpoints"), tc.keep_checkpoints)
  restored_step, state = checkpoints.restore_latest(manager, state)
  start_step = int(state.step)
  if restored_step is not None:
    checkpoints.check_resume_config(config, workdir, start_step)
    logging.info("Resuming from the checkpoint at step %d in %s.", start_step, manager.directory)
  if start_step >= tc.num_steps:
    logging.info("Training already finished (step %d of %d).", start_step, tc.num_steps)
    checkpoints.finish(manager)
    return state
  with files.atomic_write(os.path.join(workdir, "config.json")) as f:
    f.write(config.to_json_best_effort(indent=2))

  batches = create_train_iterator(config.data, tc.batch_size, config.seed, start_step,
                                  config.model.num_classes)
  schedule = jax.device_put(create_schedule(config.diffusion), parallel.replicated(mesh))
  tracked = tracking.writers(config, workdir, "/".join(os.path.normpath(os.path.abspath(
      workdir)).split(os.sep)[-2:]))
  writer = metric_writers.MultiWriter([
      metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0),
      *tracked])
  writer.write_hparams(reports.flatten_config(config))
  progress = periodic_actions.ReportProgress(num_train_steps=tc.num_steps, writer=writer,
                                             every_steps=tc.log_every)
  learning_rate = learning_rate_fn(tc)

  def next_batch():
    return parallel.shard_batch(split_micro_batches(next(batches), tc.grad_accum_steps), mesh, 1)

  batch = next_batch()
  compile_start = time.perf_counter()
  step_fn = compile_train_step(config, mesh).lower(state, batch, schedule).compile()
  compile_seconds = time.perf_counter() - compile_start
  logging.info("Compiled the train step in %.1f s.", compile_seconds)
  name = f"{os.path.basename(os.path.normpath(workdir))} {config.data.image_size}px"
  writer = metric_writers.MultiWriter(
      [writer, console.ProgressLine(name, start_step, tc.num_steps, tc.batch_size)])

  history, skipped = [], 0
  stop = workdir_guard.current()
  all_hooks = [*hooks, hooks_lib.Checkpointing(manager, tc.checkpoint_every, tc.num_steps, stop)]
  train_start = time.perf_counter()
  step = start_step
  try:
    while step < tc.num_steps:
      state, metrics = step_fn(state, batch, schedule)
      step += 1
      history.append(metrics)
      if step < tc.num_steps:
        batch = next_batch()
      progress(step)
      if step % tc.log_every == 0 or step == tc.num_steps:
        skipped += write_train_metrics(writer, step, jax.device_get(history), tc,
                                       learning_rate(step - 1), skipped)
        history = []
      for hook in all_hooks:
        hook(step, state, writer)
      if stop.requested:
        break
  except BaseException:
    checkpoints.finish(manager, raise_errors=False)  # A save in flight completes first.
    raise
  checkpoints.finish(manager)
  train_seconds = time.perf_counter() - train_start
  if not stop.requested:
    close_start = time.perf_counter()
    batches.close()
    logging.info("Closed the input pipeline in %.1f s.", time.perf_counter() - close_start)
  writer.flush()
  for tracker in tracked:
    tracker.close()
  timing = record_timing(workdir, start_step, step, compile_seconds, train_seconds,
                         count_params(state.params), tc.batch_size, skipped,
                         bool(stop.requested))
  logging.info("Trained steps %d-%d in %.1f s (%.1f img/s).", start_step, step, train_seconds,
               timing["images_per_second"])
  stop.raise_if_requested(f"at step {step} of {tc.num_steps} in {workdir}")
  return state


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


def record_timing(workdir: str, start_step: int, end_step: int, compile_seconds: float,
                  train_seconds: float, parameters: int, batch_size: int, skipped: int,
                  preempted: bool) -> dict:
  """Writes WORKDIR/train_timing.json; total_train_seconds adds the runs this one resumed."""
  timing_path = os.path.join(workdir, "train_timing.json")
  earlier = 0.0
  if start_step > 0 and os.path.exists(timing_path):
    with open(timing_path) as f:
      previous = json.load(f)
    if previous.get("end_step") == start_step:
      earlier = previous.get("total_train_seconds", 0.0)
  timing = {"start_step": start_step, "end_step": end_step, "compile_seconds": compile_seconds,
            "train_seconds": train_seconds, "total_train_seconds": earlier + train_seconds,
            "parameters": parameters,
            "images_per_second": (end_step - start_step) * batch_size / max(train_seconds, 1e-9),
            "skipped_steps": skipped, "preempted": preempted}
  files.write_json(timing_path, timing)
  return timing
