"""Periodic actions of the training loop: hook(step, state, writer, train_seconds) after
every step, where train_seconds are the run's training seconds up to the step (all resumed
runs counted; compilation and the hooks' own time left out, `hdd.clock`).

The caller (`hdd.run`) builds them from the config (a sample grid, a small-N FID); the loop
itself checkpoints.
"""
from __future__ import annotations

import json
import os
import time
from typing import Callable, Optional

import ml_collections
import numpy as np
from clu import metric_writers

from common import files, parallel
from common.errors import CheckpointError
from hdd import generate, layout, pictures
from hdd.maths.handover import Handover
from hdd.plan import SamplingPlan
from hdd.train_step import TrainState

Hook = Callable[[int, TrainState, metric_writers.MetricWriter, float], None]


class HookSampler:
  """Samples a model for a hook: on its own, from noise, or, given `low_res(num_images)`
  (the uint8 output of the cascade's earlier stages, drawn once, at first use), handed
  over by the stage's own rule, so the samples are the cascade's."""

  def __init__(self, config: ml_collections.ConfigDict,
               low_res: Optional[Callable[[int], np.ndarray]] = None):
    self.low_res_fn, self.low_res = low_res, None
    self.plan = SamplingPlan.create(config, Handover.from_config(config.sample)
                                    if low_res is not None else None)
    self.compiled = {}   # The chain, compiled at the first measurement and kept for the rest.

  def __call__(self, params, count: int) -> tuple[np.ndarray, dict]:
    if self.low_res is None and self.low_res_fn is not None:
      self.low_res = self.low_res_fn(count)
    return generate.sample_images(self.plan, params, parallel.create_mesh(), count,
                                  low_res=self.low_res, compiled=self.compiled)


class SampleGrid:
  """Logs a grid of EMA samples every `every` steps: 16, or of a conditional model two of
  each class, a row per class. A cascade stage samples from noise, on its own; a stage
  conditioned on the stage before (model.low_res_size) cannot, and samples what
  `low_res(num_images)` hands it over (as in `FidMonitor`)."""

  def __init__(self, config: ml_collections.ConfigDict, every: int,
               low_res: Optional[Callable[[int], np.ndarray]] = None):
    num_classes = config.model.num_classes
    self.count = 2 * num_classes if num_classes else 16
    self.sample = HookSampler(config, low_res if config.model.low_res_size else None)
    self.every = every

  def __call__(self, step: int, state: TrainState, writer, train_seconds: float) -> None:
    if step % self.every == 0:
      samples, info = self.sample(state.ema_params, self.count)
      grid = pictures.sample_grid(samples, info["labels"], columns=2)
      writer.write_images(step, {"samples": grid[None]})


class FidMonitor:
  """Every `every` steps, the FID of train.fid_samples EMA samples against the evaluation
  split: logged as fid_<N>samples (a small-N estimate for monitoring, biased upwards
  against the final, large-N FID) and appended to WORKDIR/fid_curve.json as {step, fid,
  train_seconds, measure_seconds}, for curves of FID against training time. A resumed run
  keeps the points before the step it resumed from.

  `low_res(num_images)` gives, for a later stage of a cascade, the output of the stages
  before it (`HookSampler`): the FID is measured through the cascade, not stage by stage.
  The weights must exist when the hook is built; they and the reference statistics load
  once, at first use."""

  def __init__(self, config: ml_collections.ConfigDict, every: int, workdir: str = "",
               low_res: Optional[Callable[[int], np.ndarray]] = None):
    from evaluation import weights  # Only runs that monitor FID need it.
    self.weights_path = config.eval.inception_weights or weights.default_path()
    if not os.path.exists(self.weights_path):  # Found out now, not after the first steps.
      raise CheckpointError(f"train.fid_every={every} needs the FID Inception weights, not "
                            f"found at {self.weights_path!r}: {weights.WEIGHTS_HELP}")
    self.config, self.every, self.workdir, self.reference = config, every, workdir, None
    self.sample = HookSampler(config, low_res)
    self.saved_curve = read_fid_curve(workdir) if workdir else []
    self.curve = None

  def __call__(self, step: int, state: TrainState, writer, train_seconds: float) -> None:
    if self.curve is None:
      self.curve = [row for row in self.saved_curve if row["step"] < step]
    if step % self.every:
      return
    measure_start = time.perf_counter()
    config, count = self.config, self.config.train.fid_samples
    if self.reference is None:
      from evaluation.statistics import FidReference  # Only runs that monitor FID need it.
      self.reference = FidReference.load(config.data, config.data.eval_split,
                                         config.data.image_size, config.eval.reference_examples,
                                         self.weights_path, config.eval.stats_dir)
    samples, _ = self.sample(state.ema_params, count)
    fid = self.reference.score(samples)["fid"]
    writer.write_scalars(step, {f"fid_{count}samples": fid})
    self.curve.append({"step": step, "fid": fid, "train_seconds": train_seconds,
                       "measure_seconds": time.perf_counter() - measure_start,
                       "num_samples": count})
    if self.workdir:   # (Only process 0 writes it: common.files.)
      files.write_json(layout.fid_curve_path(self.workdir), self.curve)


def read_fid_curve(workdir: str) -> list[dict]:
  """The points of WORKDIR/fid_curve.json ([] if there is none), read when the hook is
  built: a damaged file is refused before anything compiles or trains."""
  path = layout.fid_curve_path(workdir)
  if not os.path.lexists(path):
    return []
  try:
    with open(path) as f:
      curve = json.load(f)
  except (OSError, ValueError) as e:   # Unreadable, not UTF-8, not JSON.
    problem = getattr(e, "strerror", None) or str(e).splitlines()[0]
  else:
    if isinstance(curve, list) and all(isinstance(row, dict) and isinstance(
        row.get("step"), int) for row in curve):
      return curve
    problem = "expected a list of {step, fid, ...} points"
  raise CheckpointError(f"{path} is damaged ({problem}); remove it (its FID points are lost) "
                        "or use another --workdir")


def from_config(config: ml_collections.ConfigDict, workdir: str = "",
                low_res: Optional[Callable[[int], np.ndarray]] = None) -> list[Hook]:
  """The optional hooks a model's train section asks for (train.sample_every, fid_every);
  `workdir` and `low_res` as in `FidMonitor`."""
  hooks = []
  if config.train.fid_every:
    hooks.append(FidMonitor(config, config.train.fid_every, workdir, low_res))
  if config.train.sample_every:
    hooks.append(SampleGrid(config, config.train.sample_every, low_res))
  return hooks
