"""The training pipeline: an index stream that is a pure function of (seed, step), then
fetch, augment, scale to [-1, 1], batch and prefetch. Also the real images of a split,
as uint8, for reference statistics and classifiers.

Epoch e visits the examples in the order of a stateless shuffle seeded by (seed, e), so
the pipeline started at step k yields exactly the batches an uninterrupted run sees from
step k on: resuming needs only the step number.
"""
from __future__ import annotations

from typing import Iterator

import jax
import numpy as np
import tensorflow as tf

from common import images
from common.errors import DataError
from input_pipeline.sources import Source, create_source, for_split


# Batches made ahead of the train step: the next one is ready while a step runs.
PREFETCH_BATCHES = 2


def index_stream(num_examples: int, seed: int, start: int) -> tf.data.Dataset:
  """Example indices of epochs 0, 1, ..., each a seeded permutation, from position `start`."""
  first_epoch, offset = divmod(start, num_examples)

  def epoch_order(epoch):
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), seed=tf.stack([tf.constant(seed, tf.int64), epoch]))
    positions = epoch * num_examples + tf.range(num_examples, dtype=tf.int64)
    return tf.data.Dataset.from_tensor_slices((order, positions))

  epochs = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
  return epochs.flat_map(epoch_order).skip(offset)


def to_model_range(image: tf.Tensor) -> tf.Tensor:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return tf.cast(image, tf.float32) / 127.5 - 1.0


def build_dataset(source: Source, batch_size: int, seed: int, start_step: int = 0,
                  random_flip: bool = False, num_epochs=None,
                  shard: tuple[int, int] = (0, 1)) -> tf.data.Dataset:
  """Batches {'image': [B, S, S, C] in [-1, 1], 'label': [B]}.

  `start_step` skips the first start_step * batch_size examples of the stream.
  `num_epochs=None` repeats forever; an integer gives that many passes, the last batch
  kept even if smaller (for evaluation). `shard=(k, n)` reads only part k of n of every
  batch (B/n examples, the k-th block of the global batch), as process k of n does.
  """
  indices = index_stream(source.num_examples, seed, start_step * batch_size)
  if num_epochs is not None:
    indices = indices.take(num_epochs * source.num_examples)
  part, parts = shard
  if parts > 1:
    local = batch_size // parts
    indices = indices.filter(lambda index, position: position % batch_size // local == part)
    batch_size = local

  def example(index, position):
    image, label = source.fetch(index)
    if random_flip:
      image = tf.image.stateless_random_flip_left_right(
          image, seed=tf.stack([tf.constant(seed, tf.int64) + 1, position]))
    return {"image": to_model_range(image), "label": label}

  # With autotuning off, AUTOTUNE here means TF's default: one call per core, at most 16.
  dataset = indices.map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  dataset = dataset.batch(batch_size, drop_remainder=num_epochs is None)
  options = tf.data.Options()
  options.deterministic = True
  # No autotuning: its thread sleeps for up to 60 s between rounds and deleting the
  # iterator waits out that sleep (TF 2.21), so a long run took up to a minute to close
  # its pipeline. Untuned, CIFAR-10 batches of 128 with flips still come at 25-34k
  # images/s on 2 cores (22-23k tuned), a hundred times what training takes.
  options.autotune.enabled = False
  return dataset.with_options(options).prefetch(PREFETCH_BATCHES)


def check_labels(source: Source, num_classes: int) -> None:
  """A class-conditional model (num_classes > 0) needs labels in [0, num_classes)."""
  if not num_classes:
    return
  if not source.has_labels:
    raise DataError(f"model.num_classes={num_classes} needs class labels, but "
                    f"{source.description} has none; use labelled data or set "
                    "model.num_classes=0")
  low, high = source.label_range
  if low < 0 or high >= num_classes:
    raise DataError(f"{source.description} has labels in [{low}, {high}], but "
                    f"model.num_classes={num_classes} needs them in [0, {num_classes - 1}]; "
                    "fix the labels or set model.num_classes")


def create_train_iterator(data_config, batch_size: int, seed: int, start_step: int,
                          num_classes: int = 0) -> Iterator[dict]:
  """This process's share of each global batch, as numpy arrays: the examples it reads
  itself, a contiguous block of the batch. A class-conditional model (num_classes > 0)
  needs labelled data."""
  source = create_source(data_config)
  check_labels(source, num_classes)
  dataset = build_dataset(source, batch_size, seed, start_step, data_config.random_flip,
                          shard=(jax.process_index(), jax.process_count()))
  yield from dataset.as_numpy_iterator()


def real_images(data_config, split: str, image_size: int, limit: int = 0, seed: int = 0):
  """uint8 images [N, S, S, C] and labels of a split at a resolution: all of them, or the
  first `limit` of the seeded order (the same images for the same seed)."""
  data_config = for_split(data_config, split)
  data_config.image_size = image_size
  source = create_source(data_config)
  count = min(limit, source.num_examples) if limit else source.num_examples
  dataset = build_dataset(source, 500, seed=seed, num_epochs=1).take(-(-count // 500))
  batches = list(dataset.as_numpy_iterator())
  pixels = np.concatenate([b["image"] for b in batches])[:count]
  labels = np.concatenate([b["label"] for b in batches])[:count]
  return images.to_uint8(pixels), labels
