"""The feature classifier of FCD and of the cascade's filter (evaluation.classifier):
it learns the stripes under a progress line, saves and loads, gives features, a confidence
critic and the reference that samples are scored against (FCD and KID), and refuses
directories of another resolution or without a trained classifier."""
import numpy as np
import pytest

from common.errors import CheckpointError
from helpers import tiny_config
from input_pipeline.pipeline import real_images


def test_classifier_learns_stripes_and_round_trips(stripes_npz, tmp_path, capsys):
  from evaluation import classifier
  from evaluation.statistics import ClassifierReference
  config = tiny_config(stripes_npz)
  out = str(tmp_path / "classifier_8")
  meta = classifier.train_classifier(config.data, 8, 2, out, num_steps=60, batch_size=32)
  assert meta["test_accuracy"] == 1.0 and meta["image_size"] == 8
  # stderr is no terminal here: the progress line is printed at each quarter of the steps.
  progress = [line.split("  ")[1] for line in capsys.readouterr().err.splitlines()
              if "Classifier training at 8x8" in line]
  assert progress == ["1/60 steps (1%)", "15/60 steps (25%)", "30/60 steps (50%)",
                      "45/60 steps (75%)", "60/60 steps (100%)"]
  model, params, loaded = classifier.load_classifier(out)
  images, labels = real_images(config.data, "test", 8)
  logits, features = classifier.apply_in_batches(model, params, images)
  assert features.shape == (16, classifier.FEATURE_DIM)
  np.testing.assert_array_equal(logits.argmax(-1), labels)
  critic = classifier.confidence_critic(out, 8)
  scores = critic(images)
  assert scores.shape == (16,) and np.all((scores > 0.5) & (scores <= 1.0))
  with pytest.raises(CheckpointError, match="is for 8x8 images"):
    classifier.confidence_critic(out, 4)
  # The reference of the test split: its own images are at Frechet distance 0 (up to the
  # square roots of the ~0 eigenvalues of a rank-15 covariance), the horizontal stripes
  # alone far from the mix of both kinds.
  reference = ClassifierReference.load(out, config.data, "test", 8)
  assert reference.description == "test split, 16 images" and reference.test_accuracy == 1.0
  np.testing.assert_array_equal(reference.predict(images), labels)
  scale = np.trace(reference.statistics[1])
  assert abs(reference.score(images)["fcd"]) < 1e-5 * scale
  assert reference.score(images[labels == 0])["fcd"] > 0.1 * scale
  with pytest.raises(CheckpointError, match="is for 8x8 images, the samples are 4x4"):
    ClassifierReference.load(out, config.data, "test", 4)
  with pytest.raises(CheckpointError, match="no trained classifier"):
    classifier.load_classifier(str(tmp_path / "missing"))


def test_recipe_augmentations_shift_with_reflected_borders_and_mirror():
  """Each augmented image is its original shifted by (dy, dx) in {-1, 0, 1}^2, the borders
  reflected (numpy's 'reflect' pad, written out here by hand), then mirrored or not; over
  400 images every shift and both mirrorings occur. The default recipe changes nothing."""
  from evaluation.classifier_recipe import Recipe
  rng = np.random.default_rng(0)
  batch = rng.integers(0, 256, (400, 5, 6, 3)).astype(np.uint8)
  out = Recipe(flip=True, max_shift=1).augment(np.random.default_rng(1), batch)
  assert out.shape == batch.shape and out.dtype == np.uint8

  def reflect(index, size):   # -1 -> 1, size -> size - 2
    return -index if index < 0 else 2 * (size - 1) - index if index >= size else index

  def shifted(image, dy, dx):
    h, w, _ = image.shape
    return np.array([[image[reflect(r + dy, h), reflect(c + dx, w)] for c in range(w)]
                     for r in range(h)])

  seen = set()
  for image, augmented in zip(batch, out):
    matches = {(dy, dx, mirrored) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               for mirrored in (False, True)
               if np.array_equal(augmented, shifted(image, dy, dx)[:, ::-1] if mirrored
                                 else shifted(image, dy, dx))}
    assert len(matches) == 1
    seen |= matches
  assert len(seen) == 18
  np.testing.assert_array_equal(Recipe().augment(np.random.default_rng(1), batch), batch)


def test_classifier_of_a_recipe_trains_saves_and_loads_at_its_widths(stripes_npz, tmp_path):
  """A wider, augmented recipe: its widths and augmentations go in meta.json and the loaded
  model has its widths (its parameters would not fit the small one); stripes stay stripes
  under shifts and mirroring, so it still learns them."""
  from evaluation import classifier
  from evaluation.classifier_recipe import Recipe
  config = tiny_config(stripes_npz)
  out = str(tmp_path / "classifier_8")
  recipe = Recipe(widths=(8, 16, 16, 24), flip=True, max_shift=1)
  meta = classifier.train_classifier(config.data, 8, 2, out, num_steps=60, batch_size=32,
                                     recipe=recipe)
  assert meta["test_accuracy"] == 1.0
  model, params, loaded = classifier.load_classifier(out)
  assert loaded["recipe"] == {"widths": [8, 16, 16, 24], "flip": True, "max_shift": 1}
  assert model.widths == (8, 16, 16, 24)
  assert params["params"]["Conv_3"]["kernel"].shape == (3, 3, 16, 24)
  images, labels = real_images(config.data, "test", 8)
  logits, _ = classifier.apply_in_batches(model, params, images)
  np.testing.assert_array_equal(logits.argmax(-1), labels)
