"""Generating images from trained parameters: batched, seeded, data-parallel sampling
with the compiled chain of `hdd.sampling`, and the files it leaves in WORKDIR/samples/."""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

import jax
import ml_collections
import numpy as np

from hdd import images, parallel, sampling
from hdd.build import create_model, create_schedule
from hdd.handover import Handover


def class_labels(config: ml_collections.ConfigDict, num_images: int) -> Optional[np.ndarray]:
  """Labels to condition on: sample.label for all, or 0, 1, ..., C-1, 0, ... (label = -1)."""
  num_classes = config.model.num_classes
  if not num_classes:
    return None
  if config.sample.label >= 0:
    return np.full((num_images,), config.sample.label, np.int32)
  return (np.arange(num_images) % num_classes).astype(np.int32)


def chain_start_step(config: ml_collections.ConfigDict, handover: Optional[Handover]):
  """Where this model's reverse chain starts: None (step T-1) unless a handover says t*."""
  if handover is None:
    return None
  return handover.chain_start(np.asarray(create_schedule(config.diffusion).alphas_cumprod))


def chain_steps(config: ml_collections.ConfigDict, handover: Optional[Handover] = None):
  """The steps t this model's reverse chain visits, noisiest first."""
  steps, _ = sampling.reverse_timesteps(sampling.SamplerSettings.from_config(config.sample),
                                        config.diffusion.num_steps,
                                        chain_start_step(config, handover))
  return steps


def network_evaluations(config: ml_collections.ConfigDict, handover: Optional[Handover] = None):
  """Network evaluations per image of this model's chain (x2 under guidance)."""
  return len(chain_steps(config, handover)) * (2 if config.sample.guidance_scale > 0 else 1)


def make_sampler(config: ml_collections.ConfigDict, mesh, batch_size: int,
                 handover: Optional[Handover] = None):
  """A jitted fn(params, rng, labels, low_res) -> (x0 [B, H, W, C] in [-1, 1], trajectory).

  Without a handover the chain starts from pure noise (low_res is None); with one, from
  the previous cascade stage's uint8 images `low_res` [B, h, w, C] handed over by its rule.
  """
  model = create_model(config)
  schedule = create_schedule(config.diffusion)
  settings = sampling.SamplerSettings.from_config(config.sample)
  start_step = chain_start_step(config, handover)
  shape = (batch_size, config.data.image_size, config.data.image_size, config.data.channels)
  sharding = parallel.batch_sharded(mesh)

  def sample(params, rng, labels, low_res):
    denoise = sampling.model_denoise_fn(model.apply, params, schedule, config.diffusion.prediction,
                                        labels, config.sample.guidance_scale,
                                        config.model.num_classes)
    init_rng, chain_rng = jax.random.split(rng)
    x_init = jax.lax.with_sharding_constraint(jax.random.normal(init_rng, shape), sharding)
    if low_res is not None:
      x_init = handover(schedule, images.from_uint8(low_res), x_init, start_step)
    return sampling.run_chain(denoise, schedule, settings, x_init, chain_rng, start_step,
                              trajectory_every=config.sample.trajectory_every,
                              trajectory_images=config.sample.trajectory_images)

  return jax.jit(sample)


def sample_images(config: ml_collections.ConfigDict, params, mesh, num_images: int,
                  seed: Optional[int] = None, with_trajectory: bool = False, stream: int = 0,
                  low_res: Optional[np.ndarray] = None, handover: Optional[Handover] = None):
  """Samples `num_images` images as uint8 [N, H, W, C], in batches of sample.batch_size.

  Batch b uses the key fold_in(fold_in(PRNGKey(seed), stream), b), so the output depends
  only on the seed, the stream (one per cascade stage), the batch size and the parameters
  (and `low_res`, the previous cascade stage's uint8 images, one per output, when a
  handover is given). Returns (images, info) where
  info has the labels, the trajectory of the first batch (uint8 [frames, n, H, W, C]) if
  asked for, and the compile and sampling seconds (the latter excluding compilation).
  """
  seed = config.sample.seed if seed is None else seed
  batch_size = min(config.sample.batch_size, num_images)
  batch_size += (-batch_size) % mesh.size  # Every device gets an equal share.
  num_batches = -(-num_images // batch_size)
  labels = class_labels(config, num_images)
  sharding = parallel.batch_sharded(mesh)

  def padded(array):
    return None if array is None else np.resize(array, (num_batches * batch_size,) +
                                                array.shape[1:])

  padded_labels, padded_low_res = padded(labels), padded(low_res)

  def batch_of(array, b):
    if array is None:
      return None
    return jax.device_put(array[b * batch_size:(b + 1) * batch_size], sharding)

  sampler = make_sampler(config, mesh, batch_size, handover if low_res is not None else None)
  params = jax.device_put(params, parallel.replicated(mesh))
  base = jax.random.fold_in(jax.random.PRNGKey(seed), stream)
  compile_start = time.perf_counter()
  compiled = sampler.lower(params, base, batch_of(padded_labels, 0),
                           batch_of(padded_low_res, 0)).compile()
  compile_seconds = time.perf_counter() - compile_start
  outputs, trajectory = [], None
  start = time.perf_counter()
  for b in range(num_batches):
    x, frames = compiled(params, jax.random.fold_in(base, b), batch_of(padded_labels, b),
                         batch_of(padded_low_res, b))
    outputs.append(images.to_uint8(jax.device_get(x)))
    if b == 0 and frames is not None and with_trajectory:
      trajectory = images.to_uint8(jax.device_get(frames))
  sample_seconds = time.perf_counter() - start
  info = {"labels": labels, "trajectory": trajectory, "compile_seconds": compile_seconds,
          "sample_seconds": sample_seconds}
  return np.concatenate(outputs)[:num_images], info


def trajectory_strip(trajectory: np.ndarray) -> np.ndarray:
  """[frames, n, H, W, C] -> one image: a row per sample, a column per recorded step."""
  frames, n = trajectory.shape[:2]
  return images.make_grid(trajectory.transpose(1, 0, 2, 3, 4).reshape(
      (frames * n,) + trajectory.shape[2:]), columns=frames)


def generate_and_save(config: ml_collections.ConfigDict, params, workdir: str) -> dict:
  """Samples config.sample.num_samples images and writes WORKDIR/samples/{grid.png,
  samples.npz, trajectory.png, timing.json}. Returns the timing summary."""
  mesh = parallel.create_mesh()
  num = config.sample.num_samples
  samples, info = sample_images(config, params, mesh, num, with_trajectory=True)
  out_dir = os.path.join(workdir, "samples")
  images.save_samples_npz(os.path.join(out_dir, "samples.npz"), samples, info["labels"])
  images.save_png(os.path.join(out_dir, "grid.png"), images.make_grid(samples[:64]))
  if info["trajectory"] is not None:
    images.save_png(os.path.join(out_dir, "trajectory.png"), trajectory_strip(info["trajectory"]))
  timing = {"num_samples": num, "sampler": config.sample.sampler,
            "network_evaluations_per_image": network_evaluations(config),
            "compile_seconds": info["compile_seconds"], "sample_seconds": info["sample_seconds"],
            "images_per_second": num / max(info["sample_seconds"], 1e-9)}
  with open(os.path.join(out_dir, "timing.json"), "w") as f:
    json.dump(timing, f, indent=2)
  logging.info("Sampled %d images in %.1f s (+%.1f s compile) with %s; wrote %s.", num,
               info["sample_seconds"], info["compile_seconds"], config.sample.sampler, out_dir)
  return timing
