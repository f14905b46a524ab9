"""The forward process as a picture (`--mode=forward_process`): real images x_0 and draws
of q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I) (Ho et al. 2020, eq. 4) at chosen
steps t, per stage of a cascade with the stage's own resolution and schedule. It shows
how much of an image each step of a schedule leaves, e.g. what a hand-over at t* keeps.
Needs data, not a trained model. Writes WORKDIR/forward_process.png.
"""
from __future__ import annotations

import logging
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import images
from hdd import layout, pictures, stages
from hdd.maths import diffusion
from hdd.build import create_schedule
from input_pipeline.pipeline import real_images


def strip_steps(config: ml_collections.ConfigDict) -> np.ndarray:
  """pictures.forward_steps, or 8 steps evenly spaced over [0, T - 1]."""
  num_steps = config.diffusion.num_steps
  chosen = config.pictures.forward_steps
  return np.asarray(chosen if len(chosen) else
                    np.linspace(0, num_steps - 1, 8).round(), np.int32)


def forward_frames(config: ml_collections.ConfigDict, x0: np.ndarray,
                   seed: int = 0) -> np.ndarray:
  """uint8 [1 + steps, N, H, W, C]: x_0, then a draw of x_t for each step (one noise
  per image, shared by every t, so the columns differ only by the schedule)."""
  schedule = create_schedule(config.diffusion)
  x = images.from_uint8(x0)
  noise = jax.random.normal(jax.random.PRNGKey(seed), x.shape)
  frames = [x] + [diffusion.q_sample(schedule, x, jnp.full((len(x),), t, jnp.int32), noise)
                  for t in strip_steps(config)]
  return images.to_uint8(np.stack(frames))


def forward_process_and_save(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The strip of every stage (or of the model), stacked, at the final resolution."""
  size = config.data.image_size
  parts, steps = [], []
  for stage in stages.models(config):
    single = stage.config
    x0, _ = real_images(single.data, single.data.split, single.data.image_size,
                        single.pictures.forward_images, single.seed)
    parts.append(pictures.enlarge(forward_frames(single, x0, single.seed), size))
    steps.append(strip_steps(single).tolist())
  path = layout.forward_process_path(workdir)
  os.makedirs(workdir, exist_ok=True)
  images.save_png(path, pictures.for_display(
      pictures.trajectory_strip(np.concatenate(parts, axis=1)), size))
  logging.info("Wrote the forward process at steps %s to %s.", steps, path)
  return path
