"""A small CNN classifier trained on the real data: the domain-feature space for a
Fréchet distance that small grayscale images deserve (FID at 28x28 is dominated by the
x10 upsampling to 299x299), and the critic of the cascade's low-resolution filter.

The distance in its features is reported as "classifier Fréchet distance" (FCD), never
as FID. A trained classifier is a directory with params.npz and meta.json (version,
resolution, channels, classes, recipe, test accuracy, data description).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util

from common import batching, files, images
from common.errors import CheckpointError, DataError
from common.progress import Progress
from evaluation.classifier_recipe import SMALL_WIDTHS, Recipe
from input_pipeline.pipeline import real_images

VERSION = 2
FEATURE_DIM = 128


class Classifier(nn.Module):
  """Four 3x3 convolutions (`widths` channels, 16, 32, 32, 64 by default; the 2nd and 4th
  with stride 2) and a 128-d feature layer on the flattened map: ~8 MFLOP per 28x28 image
  at the default widths. One instance per resolution; inputs in [-1, 1]."""
  num_classes: int
  widths: tuple = SMALL_WIDTHS

  @nn.compact
  def __call__(self, x, return_features: bool = False):
    for width, stride in zip(self.widths, (1, 2, 1, 2), strict=True):
      x = nn.relu(nn.Conv(width, (3, 3), strides=stride)(x))
    features = nn.relu(nn.Dense(FEATURE_DIM)(x.reshape((x.shape[0], -1))))
    logits = nn.Dense(self.num_classes)(features)
    return (logits, features) if return_features else logits


def train_classifier(data_config: ml_collections.ConfigDict, image_size: int, num_classes: int,
                     out_dir: str, num_steps: int = 1000, batch_size: int = 128,
                     learning_rate: float = 1e-3, seed: int = 0,
                     recipe: Recipe = Recipe()) -> dict:
  """Trains on data_config's train split at `image_size` as `recipe` says, measures accuracy
  on its eval split and writes out_dir/{params.npz, meta.json}. Returns the metadata."""
  train_images, train_labels = real_images(data_config, data_config.split, image_size)
  if train_labels.min() < 0 or train_labels.max() >= num_classes:
    raise DataError(f"the classifier needs labels in [0, {num_classes}); {data_config.source} "
                    f"data at {data_config.path or data_config.name!r} has "
                    f"[{train_labels.min()}, {train_labels.max()}]")
  test_images, test_labels = real_images(data_config, data_config.eval_split, image_size)
  model = Classifier(num_classes, tuple(recipe.widths))
  start = time.perf_counter()
  params = fit(model, train_images, train_labels, num_steps, batch_size, learning_rate, seed,
               f"Classifier training at {image_size}x{image_size}", recipe.augment)
  logits, _ = apply_in_batches(model, params, test_images)
  meta = {"version": VERSION, "image_size": image_size, "channels": train_images.shape[-1],
          "num_classes": num_classes, "recipe": dataclasses.asdict(recipe),
          "test_accuracy": float((logits.argmax(-1) == test_labels).mean()),
          "test_examples": int(len(test_labels)), "train_steps": num_steps,
          "train_seconds": time.perf_counter() - start,
          "data": f"{data_config.source} {data_config.path or data_config.name}"}
  save_classifier(out_dir, params, meta)
  logging.info("Classifier at %dx%d: test accuracy %.4f; saved to %s.", image_size, image_size,
               meta["test_accuracy"], out_dir)
  return meta


def fit(model: nn.Module, train_images: np.ndarray, train_labels: np.ndarray, num_steps: int,
        batch_size: int = 128, learning_rate: float = 1e-3, seed: int = 0, what: str = "",
        augment=None):
  """Parameters of `model` (logits of inputs in [-1, 1]) fitted to uint8 images and integer
  labels: `num_steps` Adam steps on batches drawn with replacement (each passed through
  `augment(rng, batch)` when given), the learning rate cosine-decayed to zero, under a
  progress line named `what` (default: the model's class). The classifiers of the
  augmentation study train here too."""
  params = jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros((1,) + train_images.shape[1:]))
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, num_steps))
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(
          model.apply(p, images.from_uint8(x)), y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  rng = np.random.default_rng(seed)
  progress = Progress(what or f"{type(model).__name__} training", num_steps, "steps")
  loss = None
  for index in range(num_steps):
    batch = rng.integers(0, len(train_images), batch_size)
    inputs = train_images[batch] if augment is None else augment(rng, train_images[batch])
    params, opt_state, loss = step(params, opt_state, inputs, train_labels[batch])
    loss.block_until_ready()   # the line counts steps done, not steps dispatched
    progress.update(index + 1)
  if loss is not None:
    logging.info("%s trained for %d steps: final loss %.4f", type(model).__name__, num_steps,
                 float(loss))
  return params


def save_classifier(out_dir: str, params, meta: dict) -> None:
  """params.npz, then meta.json (whose presence marks a complete classifier), atomically."""
  flat = {"/".join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(params).items()}
  images.save_npz(os.path.join(out_dir, "params.npz"), flat)
  files.write_json(os.path.join(out_dir, "meta.json"), meta)


def is_trained(directory: str) -> bool:
  """Whether `directory` holds a complete classifier (meta.json is written last)."""
  return os.path.exists(os.path.join(directory, "meta.json"))


def load_classifier(directory: str):
  """(model, params, meta) of a classifier saved by `train_classifier`."""
  meta_path, params_path = (os.path.join(directory, "meta.json"),
                            os.path.join(directory, "params.npz"))
  if not (os.path.exists(meta_path) and os.path.exists(params_path)):
    raise CheckpointError(f"no trained classifier in {directory!r}; train one with "
                          "`python main.py --mode=train_classifier --config=... --workdir=...`")
  try:
    with open(meta_path) as f:
      meta = json.load(f)
    version = meta.get("version")
    if version == VERSION:
      with np.load(params_path) as data:
        params = traverse_util.unflatten_dict({tuple(k.split("/")): jnp.asarray(data[k])
                                               for k in data.files})
      # Classifiers saved before recipes were recorded are the small one.
      widths = meta.get("recipe", {}).get("widths", SMALL_WIDTHS)
      model = Classifier(int(meta["num_classes"]), tuple(int(w) for w in widths))
  except Exception as e:  # noqa: BLE001 (damaged files fail in many ways)
    raise CheckpointError(f"the classifier in {directory!r} is damaged ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:160]}); train it again with "
                          "--mode=train_classifier") from None
  if version != VERSION:
    raise CheckpointError(f"classifier in {directory!r} has version {version}, this code "
                          f"reads version {VERSION}; retrain it")
  return model, params, meta


def apply_in_batches(model: Classifier, params, uint8_images: np.ndarray, batch_size: int = 500):
  """(logits [N, classes], features [N, 128]) of uint8 images, as float64 numpy."""
  forward = jax.jit(lambda p, x: model.apply(p, images.from_uint8(x), return_features=True))
  logits, features = batching.map_in_batches(lambda batch: forward(params, batch), uint8_images,
                                             batch_size)
  return logits.astype(np.float64), features.astype(np.float64)


def confidence_critic(directory: str, image_size: int):
  """critic(uint8 images) -> top-class softmax probability, for the cascade's filter."""
  model, params, meta = load_classifier(directory)
  if meta["image_size"] != image_size:
    raise CheckpointError(f"classifier in {directory!r} is for {meta['image_size']}x"
                          f"{meta['image_size']} images, the filtered stage makes {image_size}x"
                          f"{image_size}; train one at that size")

  def critic(uint8_images: np.ndarray) -> np.ndarray:
    logits, _ = apply_in_batches(model, params, uint8_images)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (probabilities / probabilities.sum(axis=-1, keepdims=True)).max(axis=-1)

  return critic
