"""Evaluation of a trained model.

`evaluate_loss`: the held-out denoising loss, the training objective
(`train_step.denoising_loss`) on the evaluation split with fixed seeded t and noise,
overall and per quarter of the chain (t in [0, T/4), ...). It tracks over-fitting and
compares checkpoints of one config; `evaluate_losses` does it for every model of a run.

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
from evaluation import classifier_recipe
from hdd import layout, stages
from hdd.build import create_model, create_schedule
from hdd.maths.handover import LowResInput
from hdd.train_step import denoising_loss
from input_pipeline.pipeline import build_dataset, check_labels
from input_pipeline.sources import create_source, for_split


def evaluate_loss(config: ml_collections.ConfigDict, params, workdir: str) -> dict:
  """The held-out denoising loss of one model (a single-model config) with `params`,
  written to WORKDIR/eval.json."""
  source = create_source(for_split(config.data, config.data.eval_split))
  check_labels(source, config.model.num_classes)
  num_examples = min(config.eval.num_examples, source.num_examples)
  model, schedule = create_model(config), create_schedule(config.diffusion)
  low_res = LowResInput.from_config(config)
  mesh = parallel.create_mesh()
  batch_size = config.eval.batch_size + (-config.eval.batch_size) % mesh.size

  @jax.jit
  def batch_losses(params, x0, labels, rng):
    return denoising_loss(model.apply, params, schedule, x0, labels, rng,
                          prediction=config.diffusion.prediction, low_res=low_res,
                          low_res_rng=jax.random.fold_in(rng, 1))

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
  files.write_json(layout.eval_path(workdir), result)
  logging.info("Held-out denoising loss on %d %s images: %s", seen, config.data.eval_split,
               json.dumps(result))
  return result


def evaluate_losses(config: ml_collections.ConfigDict, params_by_model: dict,
                    workdir: str) -> dict:
  """`evaluate_loss` of every model of the run ({name: params}, as `cascade.restore` gives
  them), each into its own workdir's eval.json. Returns {name: result}."""
  return {model.name: evaluate_loss(model.config, params_by_model[model.name], model.workdir)
          for model in stages.models(config, workdir)}


def classifier_dir(config: ml_collections.ConfigDict, workdir: str, image_size: int) -> str:
  """eval.classifier_dir when set, else the run's own classifier of that size."""
  return config.eval.classifier_dir or layout.classifier_dir(workdir, image_size)


def train_classifiers(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Trains the feature classifier at every resolution the model (or each cascade stage)
  samples at, into WORKDIR/classifier_<size>."""
  from evaluation import classifier
  for size in stages.image_sizes(config):
    classifier.train_classifier(config.data, size, config.eval.classifier_classes,
                                classifier_dir(config, workdir, size),
                                num_steps=config.eval.classifier_steps, seed=config.seed,
                                recipe=classifier_recipe.named(config.eval.classifier_recipe))


def evaluate_samples(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Quality of WORKDIR/samples/samples.npz against the evaluation split: FID and KID
  (Inception, when the weights are there) and FCD and KID in the features of the
  project's classifier (when one is trained). Writes WORKDIR/quality.json; says how to
  get what is missing. Without samples it says how to make them and returns {}."""
  from evaluation import classifier, weights
  from evaluation.statistics import ClassifierReference, FidReference
  samples_path = layout.samples_path(workdir)
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
  if classifier.is_trained(directory):
    features = ClassifierReference.load(directory, config.data, split, size,
                                        config.eval.reference_examples, config.seed)
    result.update(features.score(samples))
    result["fcd_reference"] = (f"{features.description}; classifier test accuracy "
                               f"{features.test_accuracy:.4f}")
  else:
    logging.warning("No classifier distance: train the classifier with "
                    "--mode=train_classifier (it goes to %s).", directory)
  if "fid" not in result and "fcd" not in result:
    return {}
  files.write_json(layout.quality_path(workdir), result)
  logging.info("Sample quality: %s", json.dumps(result))
  return result
