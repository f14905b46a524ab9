"""The input pipeline (input_pipeline.pipeline): every image once per epoch, seeded order
and exact resumption, random flips, views at lower resolutions, and labels required by
conditional models."""
import numpy as np
import pytest

from common.errors import DataError
from helpers import make_stripes, tiny_data_config
from input_pipeline import pipeline, sources


def test_npz_source_serves_every_image_once_per_epoch(stripes_npz):
  source = sources.create_source(tiny_data_config(source="npz", path=stripes_npz))
  assert source.num_examples == 64 and source.has_labels
  batches = list(pipeline.build_dataset(source, 16, seed=0, num_epochs=1).as_numpy_iterator())
  assert [len(b["image"]) for b in batches] == [16, 16, 16, 16]
  seen = np.concatenate([b["image"] for b in batches])
  expected = make_stripes()[0].astype(np.float32)[..., None] / 127.5 - 1
  assert sorted(map(bytes, seen.astype(np.float32))) == sorted(map(bytes, expected))
  assert seen.min() == -1.0 and seen.max() == 1.0


def test_order_is_seeded_and_resumes_exactly(stripes_npz):
  source = sources.create_source(tiny_data_config(source="npz", path=stripes_npz))
  take = lambda ds, n: [b["image"] for b, _ in zip(ds.as_numpy_iterator(), range(n))]
  run = take(pipeline.build_dataset(source, 12, seed=3, random_flip=True), 13)
  again = take(pipeline.build_dataset(source, 12, seed=3, random_flip=True), 13)
  other = take(pipeline.build_dataset(source, 12, seed=4, random_flip=True), 13)
  resumed = take(pipeline.build_dataset(source, 12, seed=3, start_step=7, random_flip=True), 6)
  assert all(np.array_equal(a, b) for a, b in zip(run, again))
  assert not all(np.array_equal(a, b) for a, b in zip(run, other))
  # Step 7 onwards crosses an epoch boundary (64 examples, batches of 12).
  assert all(np.array_equal(a, b) for a, b in zip(run[7:], resumed))


def test_the_pipeline_is_not_autotuned(stripes_npz):
  """Deleting an autotuned iterator waits out the tuner's sleep between rounds (TF 2.21),
  up to 60 s: long runs spent 10-47 s closing their pipeline."""
  source = sources.create_source(tiny_data_config(source="npz", path=stripes_npz))
  dataset = pipeline.build_dataset(source, 16, seed=0)
  assert dataset.options().autotune.enabled is False and dataset.options().deterministic


def test_random_flip_mirrors_some_images():
  images = np.zeros((32, 8, 8), np.uint8)
  images[:, :, :4] = 255  # Left half white.
  source = sources.in_memory_source(images, None, 8, 1, "center", "left-white")
  batch = next(pipeline.build_dataset(source, 32, seed=0, random_flip=True).as_numpy_iterator())
  left_white = batch["image"][:, 0, 0, 0] > 0
  assert 0 < left_white.sum() < 32
  np.testing.assert_array_equal(batch["image"][~left_white], batch["image"][left_white][:1][
      :, :, ::-1].repeat((~left_white).sum(), 0))


def test_conditional_model_needs_labels(tmp_path):
  path = str(tmp_path / "unlabelled.npz")
  np.savez(path, images=make_stripes(8)[0])
  config = tiny_data_config(source="npz", path=path, split="train")
  with pytest.raises(DataError, match="model.num_classes=2 needs class labels, but npz"):
    next(pipeline.create_train_iterator(config, 4, seed=0, start_step=0, num_classes=2))
