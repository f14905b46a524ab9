"""The feature classifier of FCD and of the cascade's filter (evaluation.classifier):
it learns the stripes, saves and loads, gives features and a confidence critic, and
refuses directories of another resolution or without a trained classifier."""
import numpy as np
import pytest

from common.errors import CheckpointError
from helpers import tiny_config
from input_pipeline.pipeline import real_images


def test_classifier_learns_stripes_and_round_trips(stripes_npz, tmp_path):
  from evaluation import classifier
  config = tiny_config(stripes_npz)
  out = str(tmp_path / "classifier_8")
  meta = classifier.train_classifier(config.data, 8, 2, out, num_steps=60, batch_size=32)
  assert meta["test_accuracy"] == 1.0 and meta["image_size"] == 8
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
  with pytest.raises(CheckpointError, match="no trained classifier"):
    classifier.load_classifier(str(tmp_path / "missing"))
