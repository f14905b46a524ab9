"""Interpolation between samples (`--mode=interpolate`).

Deterministic DDIM (eta = 0) makes a sample a smooth function of its initial noise (Song
et al. 2021, sec. 5.3), so spherically interpolating two noises moves one sample into
another. A cascade consumes one noise per stage (stage 1's x_T and each later stage's
hand-over noise z); all of them are interpolated together, with the same weights. For
class-conditional models the class embedding is interpolated too, at a fixed noise.

Writes WORKDIR/interpolation/{noise.png, classes.png (conditional), interpolation.npz}.
"""
from __future__ import annotations

import logging
import os

import jax
import ml_collections
import numpy as np

from common import files, images, parallel
from hdd import generate, layout, pictures, stages
from hdd.cascade import sampling_plans


def slerp(z0: np.ndarray, z1: np.ndarray, alpha: float) -> np.ndarray:
  """Spherical linear interpolation (Shoemake 1985) between rows of z0 and z1 [N, ...]:
  sin((1 - a) W) / sin W z0 + sin(a W) / sin W z1, cos W = <z0, z1> / (|z0| |z1|).
  Gaussian noise keeps its norm along the arc, where a straight line would shrink it.
  Nearly parallel rows fall back to the straight line."""
  a, b = z0.reshape(len(z0), -1).astype(np.float64), z1.reshape(len(z1), -1).astype(np.float64)
  cosine = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
  omega = np.arccos(np.clip(cosine, -1.0, 1.0))[:, None]
  safe = np.sin(omega) > 1e-6
  sin_omega = np.where(safe, np.sin(omega), 1.0)
  arc = (np.sin((1 - alpha) * omega) * a + np.sin(alpha * omega) * b) / sin_omega
  line = (1 - alpha) * a + alpha * b
  return np.where(safe, arc, line).reshape(z0.shape).astype(z0.dtype)


def class_weights(first: np.ndarray, second: np.ndarray, alpha: float,
                  num_classes: int) -> np.ndarray:
  """Rows (1 - a) onehot(first) + a onehot(second) over the C + 1 embeddings (the last
  is the null class), which the U-Net turns into the mixed class embedding."""
  eye = np.eye(num_classes + 1, dtype=np.float32)
  return (1 - alpha) * eye[first] + alpha * eye[second]


def deterministic(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config with every model's chain set to DDIM with eta = 0."""
  config = config.copy_and_resolve_references()
  for section in stages.all_sections(config):
    section.sample.sampler, section.sample.eta = "ddim", 0.0
  return config


def interpolate(config: ml_collections.ConfigDict, params: dict, seed: int = 0) -> dict:
  """Interpolations through every stage ({stage: params}, `hdd.cascade.restore`).

  Pair p goes from noise set 2p to noise set 2p + 1 (one noise per stage) in
  pictures.interpolation_frames steps, conditioned on class p mod C (or sample.label).
  Conditional models also get, at the first noise of pair p, class p mod C -> p + 1 mod C.
  Returns {'alphas', 'noise': {stage: uint8 [pairs, frames, h, w, C]}, 'labels' and, if
  conditional, 'classes': {stage: ...}, 'class_pairs'}.
  """
  config = deterministic(config)
  plans = sampling_plans(config)
  pairs, frames = config.pictures.interpolation_pairs, config.pictures.interpolation_frames
  alphas = np.linspace(0.0, 1.0, frames)
  num_classes = stages.class_count(config)
  pair_labels = generate.class_labels(config, pairs)
  mesh = parallel.create_mesh()
  endpoints = {}
  for index, (name, plan) in enumerate(plans.items()):
    data = plan.config.data
    shape = (2 * pairs, data.image_size, data.image_size, data.channels)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), index)
    endpoints[name] = np.asarray(jax.random.normal(key, shape))

  def run_stages(noise_of, labels):
    """Samples every (pair, frame) through the stages: noise_of(stage) [P * F, ...]."""
    outputs, previous = {}, None
    for name, plan in plans.items():
      samples, _ = generate.sample_images(plan, params[name], mesh, pairs * frames, seed=seed,
                                          low_res=previous, noise=noise_of(name),
                                          labels=labels)
      outputs[name] = samples.reshape((pairs, frames) + samples.shape[1:])
      previous = samples
    return outputs

  def noise_path(name):
    start, end = endpoints[name][0::2], endpoints[name][1::2]
    return np.stack([slerp(start, end, a) for a in alphas], axis=1).reshape(
        (pairs * frames,) + start.shape[1:])

  labels = None if pair_labels is None else np.repeat(pair_labels, frames)
  result = {"alphas": alphas, "noise": run_stages(noise_path, labels), "labels": pair_labels}
  if num_classes:
    first, second = pair_labels, (pair_labels + 1) % num_classes
    weights = np.stack([class_weights(first, second, a, num_classes) for a in alphas], axis=1)
    result["classes"] = run_stages(
        lambda name: np.repeat(endpoints[name][0::2], frames, axis=0),
        weights.reshape(pairs * frames, num_classes + 1))
    result["class_pairs"] = np.stack([first, second], axis=1)
  return result


def interpolate_and_save(config: ml_collections.ConfigDict, params: dict, workdir: str) -> str:
  """`interpolate` with sample.seed, written to WORKDIR/interpolation/ (all files or none)."""
  result = interpolate(config, params, config.sample.seed)
  out_dir = layout.interpolation_dir(workdir)
  arrays = {"alphas": result["alphas"]}
  for kind in ("noise", "classes"):
    for name, stage_images in result.get(kind, {}).items():
      arrays[f"{kind}_{name}"] = stage_images
  if result["labels"] is not None:
    arrays["labels"] = result["labels"]
    arrays["class_pairs"] = result["class_pairs"]
  with files.atomic_directory(out_dir) as new_dir:
    images.save_npz(os.path.join(new_dir, "interpolation.npz"), arrays)
    for kind in ("noise", "classes"):
      if kind in result:
        size = list(result[kind].values())[-1].shape[2]
        images.save_png(os.path.join(new_dir, f"{kind}.png"),
                        pictures.for_display(pictures.interpolation_strip(result[kind]), size))
  logging.info("Wrote %d interpolations of %d frames to %s.", config.pictures.interpolation_pairs,
               config.pictures.interpolation_frames, out_dir)
  return out_dir
