"""Periodic actions of the training loop: hook(step, state, writer) after every step.

The caller (`hdd.run`) builds the optional ones from the config (a sample grid, a
small-N FID); the loop adds `Checkpointing`, which every run has.
"""
from __future__ import annotations

import os
from typing import Callable

import ml_collections
import orbax.checkpoint as ocp
from clu import metric_writers

from common import parallel
from common.errors import CheckpointError
from hdd import checkpoints, generate, reports
from hdd.plan import SamplingPlan
from hdd.train_step import TrainState
from hdd.workdir import StopSignal

Hook = Callable[[int, TrainState, metric_writers.MetricWriter], None]


class Checkpointing:
  """Saves every `every` steps, at `last_step`, and at the step a stop signal arrives."""

  def __init__(self, manager: ocp.CheckpointManager, every: int, last_step: int,
               stop: StopSignal):
    self.manager, self.every, self.last_step, self.stop = manager, every, last_step, stop

  def __call__(self, step: int, state: TrainState, writer) -> None:
    if step % self.every == 0 or step == self.last_step or self.stop.requested:
      checkpoints.save(self.manager, step, state)


class SampleGrid:
  """Logs a grid of EMA samples every `every` steps: 16, or of a conditional model two of
  each class, a row per class."""

  def __init__(self, config: ml_collections.ConfigDict, every: int):
    self.plan, self.every = SamplingPlan.create(config), every

  def __call__(self, step: int, state: TrainState, writer) -> None:
    if step % self.every == 0:
      num_classes = self.plan.config.model.num_classes
      samples, info = generate.sample_images(self.plan, state.ema_params,
                                             parallel.create_mesh(),
                                             num_images=2 * num_classes if num_classes else 16)
      grid = reports.sample_grid(samples, info["labels"], columns=2)
      writer.write_images(step, {"samples": grid[None]})


class FidMonitor:
  """Logs the FID of train.fid_samples EMA samples against the evaluation split every
  `every` steps, as fid_<N>samples: a small-N estimate for monitoring, biased upwards
  against the final, large-N FID. The weights must exist when the hook is built; they and
  the reference statistics load once, at first use."""

  def __init__(self, config: ml_collections.ConfigDict, every: int):
    from evaluation import weights  # Only runs that monitor FID need it.
    self.weights_path = config.eval.inception_weights or weights.default_path()
    if not os.path.exists(self.weights_path):  # Found out now, not after the first steps.
      raise CheckpointError(f"train.fid_every={every} needs the FID Inception weights, not "
                            f"found at {self.weights_path!r}: {weights.WEIGHTS_HELP}")
    self.config, self.every, self.reference = config, every, None
    self.plan = SamplingPlan.create(config)

  def __call__(self, step: int, state: TrainState, writer) -> None:
    if step % self.every:
      return
    if self.reference is None:
      from evaluation.statistics import FidReference  # Only runs that monitor FID need it.
      config = self.config
      self.reference = FidReference.load(config.data, config.data.eval_split,
                                         config.data.image_size, config.eval.reference_examples,
                                         self.weights_path, config.eval.stats_dir)
    count = self.config.train.fid_samples
    samples, _ = generate.sample_images(self.plan, state.ema_params, parallel.create_mesh(),
                                        count)
    writer.write_scalars(step, {f"fid_{count}samples": self.reference.score(samples)["fid"]})


def from_config(config: ml_collections.ConfigDict) -> list[Hook]:
  """The optional hooks a model's train section asks for (train.sample_every, fid_every)."""
  hooks = []
  if config.train.fid_every:
    hooks.append(FidMonitor(config, config.train.fid_every))
  if config.train.sample_every:
    hooks.append(SampleGrid(config, config.train.sample_every))
  return hooks
