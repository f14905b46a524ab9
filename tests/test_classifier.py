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
