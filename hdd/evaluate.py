"""Evaluation of a trained model.

`evaluate_loss`: the held-out denoising loss, the training objective on the evaluation
split with fixed seeded t and noise, overall and per quarter of the chain (t in [0, T/4),
...). It tracks over-fitting and compares checkpoints of one config.

`evaluate_samples`: the quality of WORKDIR/samples/samples.npz against the real evaluation
split: FID and KID with the FID Inception, and the Fréchet distance (FCD) and KID in the
features of the project's classifier (never called FID).

`train_classifiers`: that classifier, one per resolution the model samples at.
"""
from __future__ import annotations

import json
import logging
import os

import jax
import ml_collections
import numpy as np

from common import batching, files, images, parallel
from hdd import stages
from hdd.maths import diffusion
from hdd.build import create_model, create_schedule
from hdd.maths.handover import LowResInput
from input_pipeline.pipeline import build_dataset, check_labels, real_images
from input_pipeline.sources import create_source


def evaluate_loss(config: ml_collections.ConfigDict, params, workdir: str) -> dict:
  data_config = config.data.copy_and_resolve_references()
  data_config.split = config.data.eval_split
  source = create_source(data_config)
  check_labels(source, config.model.num_classes)
  num_examples = min(config.eval.num_examples, source.num_examples)
  model, schedule = create_model(config), create_schedule(config.diffusion)
  low_res = LowResInput.from_config(config)
  mesh = parallel.create_mesh()
  batch_size = config.eval.batch_size + (-config.eval.batch_size) % mesh.size

  @jax.jit
  def batch_losses(params, x0, labels, rng):
    extra = {} if low_res is None else low_res.for_training(schedule, x0,
                                                            jax.random.fold_in(rng, 1))
    model_fn = lambda x_t, t: model.apply({"params": params}, x_t, t, labels, train=False,
                                          **extra)
    return diffusion.denoising_loss(model_fn, schedule, x0, rng, config.diffusion.prediction)

  dataset = build_dataset(source, batch_size, seed=config.seed, num_epochs=1)
  losses, steps, seen = [], [], 0
  for b, batch in enumerate(dataset.as_numpy_iterator()):
    if seen >= num_examples:
      break
    n = min(len(batch["image"]), num_examples - seen)
    x0 = batching.pad_rows(batch["image"][:n], batch_size)
    labels = (batching.pad_rows(batch["label"][:n], batch_size) if config.model.num_classes
              else None)
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
  files.write_json(os.path.join(workdir, "eval.json"), result)
  logging.info("Held-out denoising loss on %d %s images: %s", seen, config.data.eval_split,
               json.dumps(result))
  return result


def classifier_dir(config: ml_collections.ConfigDict, workdir: str, image_size: int) -> str:
  return config.eval.classifier_dir or os.path.join(workdir, f"classifier_{image_size}")


def train_classifiers(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Trains the feature classifier at every resolution the model (or each cascade stage)
  samples at, into WORKDIR/classifier_<size>."""
  from evaluation import classifier
  for size in stages.image_sizes(config):
    classifier.train_classifier(config.data, size, config.eval.classifier_classes,
                                classifier_dir(config, workdir, size),
                                num_steps=config.eval.classifier_steps, seed=config.seed)


def evaluate_samples(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Quality of WORKDIR/samples/samples.npz against the evaluation split: FID and KID
  (Inception, when the weights are there) and FCD and KID in the features of the
  project's classifier (when one is trained). Writes WORKDIR/quality.json; says how to
  get what is missing. Without samples it says how to make them and returns {}."""
  from evaluation import classifier, fid, weights
  from evaluation.statistics import FidReference
  samples_path = os.path.join(workdir, "samples", "samples.npz")
  if not os.path.exists(samples_path):
    logging.warning("No sample quality: no %s (run --mode=sample).", samples_path)
    return {}
  samples = images.load_samples_npz(samples_path)
  size, split = samples.shape[1], config.data.eval_split
  result = {"num_samples": int(len(samples)), "eval_split": split}
  weights_path = config.eval.inception_weights or weights.default_path()
  if os.path.exists(weights_path):
    reference = FidReference.load(config.data, split, size, config.eval.reference_examples,
                                  weights_path, config.eval.stats_dir)
    result["fid_reference"] = reference.description
    result.update(reference.score(samples))
  else:
    logging.warning("No FID: %s", weights.WEIGHTS_HELP)
  directory = classifier_dir(config, workdir, size)
  if os.path.exists(os.path.join(directory, "meta.json")):
    model, params, meta = classifier.load_classifier(directory)
    real, _ = real_images(config.data, split, size, config.eval.reference_examples, config.seed)
    _, sample_features = classifier.apply_in_batches(model, params, samples)
    _, real_features = classifier.apply_in_batches(model, params, real)
    measured = fid.distances(sample_features, *fid.feature_statistics(real_features),
                             real_features)
    result.update({
        "fcd": measured["frechet"], "classifier_kid_x1e3": 1e3 * measured["kid"],
        "fcd_reference": f"{split} split, {len(real)} images; classifier test accuracy "
                         f"{meta['test_accuracy']:.4f}"})
  else:
    logging.warning("No classifier distance: train the classifier with "
                    "--mode=train_classifier (it goes to %s).", directory)
  if "fid" not in result and "fcd" not in result:
    return {}
  files.write_json(os.path.join(workdir, "quality.json"), result)
  logging.info("Sample quality: %s", json.dumps(result))
  return result
