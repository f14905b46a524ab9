"""The feature classifier (trains, saves, loads, refuses bad directories) and the
cascade's low-resolution filter (re-draws exactly the rejected samples)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hdd import cascade
from hdd.build import create_model
from hdd.errors import CheckpointError
from tiny_cascade_config import get_config as tiny_cascade
from tiny_config import get_config as tiny_config


def test_classifier_learns_stripes_and_round_trips(stripes_npz, tmp_path):
  from evaluation import classifier
  config = tiny_config(stripes_npz)
  out = str(tmp_path / "classifier_8")
  meta = classifier.train_classifier(config.data, 8, 2, out, num_steps=60, batch_size=32)
  assert meta["test_accuracy"] == 1.0 and meta["image_size"] == 8
  model, params, loaded = classifier.load_classifier(out)
  images, labels = classifier.real_images(config.data, "test", 8)
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


def test_filter_redraws_rejected_low_resolution_samples():
  config = tiny_cascade(data_path="unused.npz")
  config.filter.update(enabled=True, threshold=0.5, max_rounds=4)
  config.sample.batch_size = 8
  params = {}
  for name in cascade.stage_names(config):
    single = cascade.stage_config(config, name)
    size = single.data.image_size
    params[name] = create_model(single).init(jax.random.PRNGKey(1), jnp.zeros((1, size, size, 1)),
                                             jnp.zeros((1,), jnp.int32))["params"]
  unfiltered, _ = cascade.sample_cascade(config, params, num_images=16)
  brightness = lambda x: x.reshape(len(x), -1).mean(axis=1)
  cut = np.median(brightness(unfiltered["stage1"]))
  critic = lambda x: (brightness(x) > cut).astype(np.float64)   # Rejects the darker half.
  outputs, report = cascade.sample_cascade(config, params, num_images=16, critic=critic)
  filtered = report["stages"][0]["filter"]
  assert filtered["initially_rejected"] == int(np.sum(critic(unfiltered["stage1"]) < 0.5)) > 0
  low = outputs["stage1"]
  passing = critic(low) >= 0.5
  assert filtered["still_rejected"] == int(np.sum(~passing))
  assert filtered["still_rejected"] < filtered["initially_rejected"]
  # Accepted first draws are kept untouched; only rejected ones were replaced.
  kept = critic(unfiltered["stage1"]) >= 0.5
  np.testing.assert_array_equal(low[kept], unfiltered["stage1"][kept])
  assert filtered["redrawn"] % 8 == 0 and filtered["rounds"] >= 1
