"""Every mode of `main.py`, for any config (a single model is a cascade of one stage):

  train             train (or resume), then sample config.sample.num_samples images
  sample            sample from the latest checkpoint(s)
  eval              held-out denoising loss (per stage) and the quality of the samples
  train_classifier  the feature classifier of FCD and of the cascade's filter
  interpolate       DDIM interpolations between noises (and classes) through every stage
  forward_process   a picture of q(x_t | x_0) on real images at chosen steps, per stage

The work itself is `hdd.cascade`'s (train, restore, sample) and the modules named below;
this module checks the config, holds the workdir and maps a mode to its function.
"""
from __future__ import annotations

import time
from typing import Optional

import jax
import ml_collections
from absl import logging

from common import parallel, runtime
from common.errors import UserError
from hdd import (cascade, config_checks, console, evaluate, forward_process, guards,
                 interpolation, stop_signal, timing_report)
from input_pipeline import sources


def run(config: ml_collections.ConfigDict, workdir: str, mode: str,
        compilation_cache: Optional[str] = None, command: Optional[list] = None) -> None:
  """Validates the config, takes the workdir's lock and runs `mode` in it; given the
  `command` line (sys.argv), process 0 then prints the closing summary."""
  start = time.perf_counter()
  runtime.configure_runtime(compilation_cache)
  logging.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  config_checks.check_config(config, mode)
  with guards.exclusive(workdir), stop_signal.StopSignal():
    try:
      MODES[mode](config, workdir)
    except OSError as e:  # A full disk, a vanished or read-only directory mid-run.
      raise UserError(f"{e.strerror or e}: {e.filename or ''}; the last complete checkpoint "
                      "is kept; fix this and re-run the same command to resume") from None
  if command and parallel.is_main_process():
    print(console.summary(workdir, mode, command, time.perf_counter() - start,
                          config.get("stage", 0) if mode == "train" else 0), flush=True)


def train_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  # Everything the run needs later is found (or found missing) before anything trains.
  sources.check_path(config.data)
  critic = cascade.load_critic(config, workdir)
  params = cascade.train(config, workdir)
  if config.get("stage", 0):
    timing_report.write_timing_table(config, workdir)
    logging.info("Trained stage %d only; sample once every stage is trained.", config.stage)
    return
  if config.sample.num_samples > 0:
    cascade.sample_and_save(config, params, workdir, critic)


def sample_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  cascade.keep_config(config, workdir)
  critic = cascade.load_critic(config, workdir)
  cascade.sample_and_save(config, cascade.restore(config, workdir), workdir, critic)


def eval_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  evaluate.evaluate_losses(config, cascade.restore(config, workdir), workdir)
  evaluate.evaluate_samples(config, workdir)


def interpolate_mode(config: ml_collections.ConfigDict, workdir: str) -> None:
  interpolation.interpolate_and_save(config, cascade.restore(config, workdir), workdir)


MODES = {"train": train_mode, "sample": sample_mode, "eval": eval_mode,
         "train_classifier": evaluate.train_classifiers, "interpolate": interpolate_mode,
         "forward_process": forward_process.forward_process_and_save}
