"""Generating images from trained parameters: batched, seeded, data-parallel sampling
with the compiled chain of `hdd.maths.sampling`, following a `SamplingPlan` (the files a
sampling run leaves are written by `hdd.cascade.sample_and_save`)."""
from __future__ import annotations

import json
import time
from typing import Callable, Optional

import jax
import ml_collections
import numpy as np

from common import batching, images, parallel
from common.errors import ConfigError
from hdd import stages, stop_signal
from hdd.maths import sampling
from hdd.plan import SamplingPlan


def class_labels(config: ml_collections.ConfigDict, num_images: int) -> Optional[np.ndarray]:
  """Labels to condition on (a model, or every conditional stage of a cascade):
  sample.label for all, or 0, 1, ..., C-1, 0, ... (label = -1); None if unconditional."""
  num_classes = stages.class_count(config)
  if not num_classes:
    return None
  if config.sample.label >= 0:
    return np.full((num_images,), config.sample.label, np.int32)
  return (np.arange(num_images) % num_classes).astype(np.int32)


def chain_weights(plan: SamplingPlan) -> dict:
  """The weights a compiled chain takes as inputs, not as constants, so that a new value
  compiles nothing: the guidance weight w and the hand-over's mix gamma (float32)."""
  gamma = 0.0 if plan.handover is None else plan.handover.gamma
  return {"guidance": np.float32(plan.config.sample.guidance_scale), "gamma": np.float32(gamma)}


def program_key(plan: SamplingPlan) -> str:
  """What a plan's chain compiles to, the key of `sample_images`' cache: its config without
  what the chain takes as inputs (seed, class, number of images, and `chain_weights` but
  whether w > 0, which doubles the network's rows), with the hand-over's t* (it sets the
  steps). The batch size shapes the program and stays."""
  tree = plan.config.to_dict()
  for field in ("seed", "label", "num_samples", "gamma", "start_step", "guidance_scale"):
    tree["sample"].pop(field, None)
  tree["chain"] = {"start_step": None if plan.start_step is None else int(plan.start_step),
                   "guided": plan.config.sample.guidance_scale > 0}
  return json.dumps(tree, sort_keys=True, default=str)


def make_sampler(plan: SamplingPlan, mesh, batch_size: int):
  """A jitted fn(params, rng, weights, labels, low_res, noise=None) -> (x0 [B, H, W, C] in
  [-1, 1], trajectory), `weights` those of `chain_weights`.

  Without a hand-over the chain starts from the noise (low_res is None); with one, from the
  previous cascade stage's uint8 images `low_res` [B, h, w, C] handed over by its rule with
  this noise; a conditional stage also sees `low_res`, noised anew, at every step. The
  noise is drawn from `rng` unless given (interpolation chooses it).
  Labels are class indices [B], or class weights [B, C + 1] (embedding interpolation).
  """
  config = plan.config
  shape = (batch_size, config.data.image_size, config.data.image_size, config.data.channels)
  sharding = parallel.batch_sharded(mesh)
  guided = config.sample.guidance_scale > 0   # Compiled in: it doubles the network's rows.

  def sample(params, rng, weights, labels, low_res, noise=None):
    init_rng, chain_rng = jax.random.split(rng)
    if noise is None:
      noise = jax.random.normal(init_rng, shape)
    x_init = jax.lax.with_sharding_constraint(noise, sharding)
    extra = {}
    if low_res is not None:
      low_res = images.from_uint8(low_res)
      x_init = plan.handover(plan.schedule, low_res, x_init, plan.start_step, weights["gamma"])
      if plan.low_res_input is not None:
        extra = plan.low_res_input.for_sampling(
            plan.schedule, low_res, jax.random.normal(jax.random.fold_in(init_rng, 1), shape))
    denoise = sampling.model_denoise_fn(plan.model.apply, params, plan.schedule,
                                        config.diffusion.prediction, labels,
                                        weights["guidance"] if guided else None,
                                        config.model.num_classes, extra)
    return sampling.run_chain(denoise, plan.schedule, plan.settings, x_init, chain_rng,
                              plan.steps, plan.prev_steps,
                              trajectory_every=config.sample.trajectory_every,
                              trajectory_images=config.sample.trajectory_images)

  return jax.jit(sample)


def sample_images(plan: SamplingPlan, params, mesh, num_images: int,
                  seed: Optional[int] = None, with_trajectory: bool = False, stream: int = 0,
                  low_res: Optional[np.ndarray] = None, noise: Optional[np.ndarray] = None,
                  labels: Optional[np.ndarray] = None, compiled: Optional[dict] = None,
                  progress: Optional[Callable[[float], None]] = None):
  """Samples `num_images` images as uint8 [N, H, W, C], in batches of sample.batch_size.

  Batch b uses the key fold_in(fold_in(PRNGKey(seed), stream), b), so the output depends
  only on the seed, the stream (one per cascade stage), the batch size and the parameters
  (and `low_res`, the previous cascade stage's uint8 images, one per output, when the plan
  hands over). `noise` [N, H, W, C] replaces the drawn initial noise and `labels` (class
  indices [N] or weights [N, C + 1]) those of `class_labels` (interpolation sets both).
  Returns (images, info) where info has the labels, the trajectory of the first batch
  (uint8 [frames, n, H, W, C]) if asked for, and the compile and sampling seconds (the
  latter excluding compilation).

  `compiled` keeps the compiled chain per `program_key` and batch shape for callers that
  sample again (a server, `hdd.app.serving`; the training hooks): a plan that compiles to
  the same program, with any seed, class, guidance weight or mix gamma, compiles nothing.
  `progress(fraction)` is called after every batch.
  """
  config = plan.config
  if (plan.handover is None) != (low_res is None):
    raise ValueError("low_res images are needed exactly when the plan has a hand-over")
  if num_images < 1:   # Found out now, not by a division after compiling an empty batch.
    raise ConfigError(f"sample.num_samples={num_images}: must be >= 1 to sample")
  seed = config.sample.seed if seed is None else seed
  batch_size = min(config.sample.batch_size, num_images)
  batch_size += (-batch_size) % mesh.size  # Every device gets an equal share.
  labels = class_labels(config, num_images) if labels is None else labels
  sharding = parallel.batch_sharded(mesh)

  def inputs(b):
    return [None if array is None else jax.device_put(array, sharding)
            for array in (batching.batch_of(labels, b, batch_size),
                          batching.batch_of(low_res, b, batch_size),
                          batching.batch_of(noise, b, batch_size))]

  params = jax.device_put(params, parallel.replicated(mesh))
  weights = jax.device_put(chain_weights(plan), parallel.replicated(mesh))
  base = jax.random.fold_in(jax.random.PRNGKey(seed), stream)
  compile_start = time.perf_counter()
  shapes = tuple(None if a is None else a.shape for a in inputs(0))
  key = None if compiled is None else (program_key(plan), batch_size, shapes)
  if compiled is not None and key in compiled:
    chain = compiled[key]
  else:
    chain = make_sampler(plan, mesh, batch_size).lower(params, base, weights,
                                                       *inputs(0)).compile()
    if compiled is not None:
      compiled[key] = chain
  compile_seconds = time.perf_counter() - compile_start
  num_batches = batching.num_batches(num_images, batch_size)
  outputs, trajectory = [], None
  start = time.perf_counter()
  stop = stop_signal.current()
  for b in range(num_batches):
    stop.raise_if_requested("while sampling, before anything was written")
    x, frames = chain(params, jax.random.fold_in(base, b), weights, *inputs(b))
    outputs.append(images.to_uint8(parallel.to_host(x)))
    if b == 0 and frames is not None and with_trajectory:
      trajectory = images.to_uint8(parallel.to_host(frames))
    if progress is not None:
      progress((b + 1) / num_batches)
  sample_seconds = time.perf_counter() - start
  info = {"labels": labels, "trajectory": trajectory, "compile_seconds": compile_seconds,
          "sample_seconds": sample_seconds}
  return np.concatenate(outputs)[:num_images], info
