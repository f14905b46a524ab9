"""Every mode of `main.py`, for a single model and a cascade alike:

  train             train (or resume), then sample config.sample.num_samples images
  sample            sample from the latest checkpoint(s)
  eval              held-out denoising loss (per stage) and the quality of the samples
  train_classifier  the feature classifier of FCD and of the cascade's filter
  interpolate       DDIM interpolations between noises (and classes) through every stage
  forward_process   a picture of q(x_t | x_0) on real images at chosen steps, per stage

A cascade runs stage by stage (`hdd.cascade`); each stage is an ordinary model.
"""
from __future__ import annotations

import os
from typing import Optional

import jax
import ml_collections
from absl import logging

from common import files, runtime
from common.errors import UserError
from hdd import (cascade, checkpoints, config_checks, evaluate, forward_process, generate, guards,
                 hooks, interpolation, stages, stop_signal, timing_report, train)
from input_pipeline import sources


def run(config: ml_collections.ConfigDict, workdir: str, mode: str,
        compilation_cache: Optional[str] = None) -> None:
  """Validates the config, takes the workdir's lock and runs `mode` in it."""
  runtime.configure_runtime(compilation_cache)
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  config_checks.check_config(config, mode)
  with guards.exclusive(workdir), stop_signal.StopSignal():
    try:
      {"train": train_mode, "sample": sample_mode, "eval": eval_mode,
       "train_classifier": evaluate.train_classifiers, "interpolate": interpolate_mode,
       "forward_process": forward_process.forward_process_and_save}[mode](config, workdir)
    except OSError as e:  # A full disk, a vanished or read-only directory mid-run.
      raise UserError(f"{e.strerror or e}: {e.filename or ''}; the last complete checkpoint "
                      "is kept; fix this and re-run the same command to resume") from None


def train_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  # Everything the run needs later is found (or found missing) before anything trains.
  sources.check_path(config.data)
  critic = cascade.load_critic(config, workdir) if stages.is_cascade(config) else None
  if not stages.is_cascade(config):
    params = train.train_and_evaluate(config, workdir,
                                      training_hooks(config, workdir)).ema_params
  else:
    keep_cascade_config(config, workdir)
    params = cascade.train_cascade(config, workdir, training_hooks(config, workdir))
    if config.stage:
      timing_report.write_timing_table(config, workdir)
      logging.info("Trained stage %d only; sample once every stage is trained.", config.stage)
      return
  if config.sample.num_samples > 0:
    sample_and_save(config, params, workdir, critic)


def training_hooks(config: ml_collections.ConfigDict, workdir: str):
  """The optional hooks the train sections ask for: a list for a model, {stage: list} for
  a cascade. A stage's FID is that of the cascade up to it: its hooks get the earlier
  stages' output."""
  if not stages.is_cascade(config):
    return hooks.from_config(config, workdir)
  first = stages.stage_names(config)[0]
  return {name: hooks.from_config(
      stages.stage_config(config, name), stages.stage_workdir(workdir, name),
      None if name == first else cascade.earlier_stages_output(config, workdir, name))
          for name in stages.stages_to_train(config)}


def keep_cascade_config(config: ml_collections.ConfigDict, workdir: str) -> None:
  """WORKDIR/config.json of a cascade (a single model's is written by its training, each
  stage's in its own directory): the config that `hdd.app` serves the workdir with."""
  with files.atomic_write(os.path.join(workdir, "config.json")) as f:
    f.write(config.to_json_best_effort(indent=2))


def sample_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  if stages.is_cascade(config):
    keep_cascade_config(config, workdir)
  critic = cascade.load_critic(config, workdir) if stages.is_cascade(config) else None
  sample_and_save(config, restore(config, workdir), workdir, critic)


def eval_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  if stages.is_cascade(config):
    for name, params in cascade.restore_cascade(config, workdir).items():
      evaluate.evaluate_loss(stages.stage_config(config, name), params,
                             stages.stage_workdir(workdir, name))
  else:
    evaluate.evaluate_loss(config, checkpoints.restore_params(config, workdir), workdir)
  evaluate.evaluate_samples(config, workdir)


def interpolate_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  interpolation.interpolate_and_save(config, restore(config, workdir), workdir)


def restore(config: ml_collections.ConfigDict, workdir: str):
  """EMA parameters: of the model, or {stage: parameters} of a cascade."""
  if stages.is_cascade(config):
    return cascade.restore_cascade(config, workdir)
  return checkpoints.restore_params(config, workdir)


def sample_and_save(config: ml_collections.ConfigDict, params, workdir: str,
                    critic=None) -> None:
  if stages.is_cascade(config):
    cascade.generate_and_save(config, params, workdir, critic)
  else:
    generate.generate_and_save(config, params, workdir)
