"""Inception statistics of real data, computed once and cached, and FID/KID of samples.

A reference file holds mu, sigma, the features of up to `KID_FEATURES` images (for KID),
the image count n and a fingerprint of everything that determines them: the data (source,
name or path, split, resolution, channels, crop), n, the preprocessing and the weights
file. Statistics with different fingerprints are never compared.

`FidReference.load` is the one place that loads the weights and the reference
statistics; training's FID hook, `--mode=eval` and the experiments all score through it.
`ClassifierReference.load` is its counterpart in the features of the project's classifier
(FCD and KID, `evaluation.classifier`): `--mode=eval` and the experiments score with it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time

import ml_collections
import numpy as np

from common import files, images
from common.errors import CheckpointError
from common.progress import Progress
from evaluation import classifier, fid, inception, weights
from input_pipeline.pipeline import real_images
from input_pipeline.sources import for_split

PREPROCESSING = "pytorch-fid: uint8 levels, grey->RGB, bilinear 299 align_corners=False, 2x-1"
KID_FEATURES = 10_000


def default_cache_dir() -> str:
  """$HDD_FID_STATS, or ~/.cache/hdd/fid_stats."""
  return os.environ.get("HDD_FID_STATS") or files.cache_path("fid_stats")


def fingerprint(data_config: ml_collections.ConfigDict, split: str, image_size: int,
                count: int, weights_path: str) -> str:
  path = for_split(data_config, split).path
  description = {"source": data_config.source, "name": data_config.name,
                 "path": os.path.abspath(path) if path else "",
                 "split": split, "image_size": image_size, "channels": data_config.channels,
                 "crop": data_config.crop, "count": count, "preprocessing": PREPROCESSING,
                 "weights_sha256": weights.sha256_of(weights_path)}
  return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def load_statistics(path: str, expected_fingerprint: str) -> dict:
  with np.load(path) as data:
    stats = {k: data[k] for k in data.files}
  if str(stats["fingerprint"]) != expected_fingerprint:
    raise CheckpointError(f"reference statistics {path} were computed from other data, "
                          "preprocessing or weights (fingerprint mismatch); delete the file "
                          "to recompute them")
  return stats


def reference_statistics(data_config: ml_collections.ConfigDict, split: str, image_size: int,
                         limit: int, variables: dict, weights_path: str,
                         cache_dir: str = "") -> dict:
  """{'mu', 'sigma', 'features' (first KID_FEATURES), 'n', 'fingerprint'} of the real
  images of a split (all, or `limit`), from the cache when it is there."""
  real, _ = real_images(data_config, split, image_size, limit)
  key = fingerprint(data_config, split, image_size, len(real), weights_path)
  name = f"{data_config.name}_{split}_{image_size}px_{len(real)}_{key[:12]}.npz"
  path = os.path.join(cache_dir or default_cache_dir(), name)
  if os.path.exists(path):
    logging.info("Reference statistics from %s.", path)
    return load_statistics(path, key)
  start = time.perf_counter()
  progress = Progress(f"FID reference statistics ({split} split)", len(real), "images")
  features = inception.fid_features(variables, real / 255.0, progress=progress)
  mu, sigma = fid.feature_statistics(features)
  stats = {"mu": mu, "sigma": sigma, "features": features[:KID_FEATURES],
           "n": np.asarray(len(real)), "fingerprint": np.asarray(key)}
  images.save_npz(path, stats, compressed=False)
  logging.info("Reference statistics of %d %s images in %.0f s (%.1f img/s); cached in %s.",
               len(real), split, time.perf_counter() - start,
               len(real) / (time.perf_counter() - start), path)
  return stats


def fid_and_kid(samples: np.ndarray, reference: dict, variables: dict) -> dict:
  """FID and KID (x1e3, mean and std over subsets) of uint8 samples [N, H, W, C]."""
  start = time.perf_counter()
  features = inception.fid_features(variables, samples / 255.0)
  seconds = time.perf_counter() - start
  measured = fid.distances(features, reference["mu"], reference["sigma"], reference["features"])
  return {"fid": measured["frechet"], "kid_x1e3": 1e3 * measured["kid"],
          "kid_std_x1e3": 1e3 * measured["kid_std"],
          "inception_images_per_second": len(samples) / seconds}


@dataclasses.dataclass(frozen=True)
class FidReference:
  """The FID Inception and the statistics of real images that samples are scored against."""
  variables: dict
  statistics: dict
  description: str   # e.g. "test split, 10000 images"

  @classmethod
  def load(cls, data_config: ml_collections.ConfigDict, split: str, image_size: int,
           limit: int = 0, weights_path: str = "", cache_dir: str = "") -> "FidReference":
    """Loads the weights (`weights_path`, default `weights.default_path()`) and the
    statistics of the split's real images (all, or `limit`), computing them once."""
    weights_path = weights_path or weights.default_path()
    variables = weights.load_fid_inception(weights_path)
    stats = reference_statistics(data_config, split, image_size, limit, variables, weights_path,
                                 cache_dir)
    return cls(variables, stats, f"{split} split, {int(stats['n'])} images")

  def score(self, samples: np.ndarray) -> dict:
    """FID and KID (x1e3) of uint8 samples [N, H, W, C]; see `fid_and_kid`."""
    return fid_and_kid(samples, self.statistics, self.variables)


@dataclasses.dataclass(frozen=True)
class ClassifierReference:
  """The project's classifier and its features of real images that samples are scored
  against: the classifier Fréchet distance (FCD, never called FID) and KID."""
  model: classifier.Classifier
  params: dict
  features: np.ndarray   # [N, FEATURE_DIM] of the real images
  statistics: tuple      # (mu, sigma) of `features`
  test_accuracy: float   # the classifier's, on the data's evaluation split
  description: str       # e.g. "test split, 10000 images"

  @classmethod
  def load(cls, directory: str, data_config: ml_collections.ConfigDict, split: str,
           image_size: int, limit: int = 0, seed: int = 0) -> "ClassifierReference":
    """Loads the classifier trained into `directory` and the features of the split's real
    images (all, or the first `limit` of the `seed`ed order)."""
    model, params, meta = classifier.load_classifier(directory)
    if meta["image_size"] != image_size:
      raise CheckpointError(f"classifier in {directory!r} is for {meta['image_size']}x"
                            f"{meta['image_size']} images, the samples are {image_size}x"
                            f"{image_size}; train one at that size")
    real, _ = real_images(data_config, split, image_size, limit, seed)
    _, features = classifier.apply_in_batches(model, params, real)
    return cls(model, params, features, fid.feature_statistics(features),
               meta["test_accuracy"], f"{split} split, {len(real)} images")

  def predict(self, samples: np.ndarray) -> np.ndarray:
    """The class the classifier gives each uint8 sample [N, H, W, C]."""
    logits, _ = classifier.apply_in_batches(self.model, self.params, samples)
    return logits.argmax(-1)

  def score(self, samples: np.ndarray, num_subsets: int = 100, subset_size: int = 1000) -> dict:
    """FCD and KID (x1e3) of uint8 samples [N, H, W, C]; KID over `num_subsets` subsets
    of `subset_size` (`fid.distances`)."""
    _, features = classifier.apply_in_batches(self.model, self.params, samples)
    measured = fid.distances(features, *self.statistics, self.features, num_subsets=num_subsets,
                             subset_size=subset_size)
    return {"fcd": measured["frechet"], "classifier_kid_x1e3": 1e3 * measured["kid"]}
