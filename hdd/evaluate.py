"""Held-out denoising loss: the training objective on the evaluation split, with fixed
seeded t and noise, overall and per quarter of the chain (t in [0, T/4), ...).

It is the quantity the network was trained to minimise, so it tracks over-fitting and
compares checkpoints of one config; image quality is measured by FID (evaluation/).
"""
from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections
import numpy as np

from hdd import diffusion, parallel
from hdd.build import create_model, create_schedule
from input_pipeline.pipeline import build_dataset
from input_pipeline.sources import create_source


def evaluate_loss(config: ml_collections.ConfigDict, params, workdir: str) -> dict:
  data_config = config.data.copy_and_resolve_references()
  data_config.split = config.data.eval_split
  source = create_source(data_config)
  num_examples = min(config.eval.num_examples, source.num_examples)
  model, schedule = create_model(config), create_schedule(config.diffusion)
  mesh = parallel.create_mesh()
  batch_size = config.eval.batch_size + (-config.eval.batch_size) % mesh.size

  @jax.jit
  def batch_losses(params, x0, labels, rng):
    model_fn = lambda x_t, t: model.apply({"params": params}, x_t, t, labels, train=False)
    return diffusion.denoising_loss(model_fn, schedule, x0, rng, config.diffusion.prediction)

  dataset = build_dataset(source, batch_size, seed=config.seed, num_epochs=1)
  losses, steps, seen = [], [], 0
  for b, batch in enumerate(dataset.as_numpy_iterator()):
    if seen >= num_examples:
      break
    n = min(len(batch["image"]), num_examples - seen)
    pad = batch_size - n
    x0 = np.pad(batch["image"][:n], ((0, pad), (0, 0), (0, 0), (0, 0)))
    labels = np.pad(batch["label"][:n], (0, pad)) if config.model.num_classes else None
    loss, t = batch_losses(params, parallel.shard_batch(x0, mesh),
                           None if labels is None else parallel.shard_batch(labels, mesh),
                           jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), b))
    losses.append(np.asarray(loss)[:n])
    steps.append(np.asarray(t)[:n])
    seen += n
  losses, steps = np.concatenate(losses), np.concatenate(steps)
  quarter = np.minimum(steps * 4 // schedule.num_steps, 3)
  result = {"eval_split": config.data.eval_split, "num_examples": int(seen),
            "eval_loss": float(losses.mean())}
  for q in range(4):
    result[f"eval_loss_t_quarter{q + 1}"] = float(losses[quarter == q].mean()) if (
        quarter == q).any() else float("nan")
  with open(os.path.join(workdir, "eval.json"), "w") as f:
    json.dump(result, f, indent=2)
  logging.info("Held-out denoising loss on %d %s images: %s", seen, config.data.eval_split,
               json.dumps(result))
  return result
