"""Evaluation of a trained model (hdd.evaluate): the held-out denoising loss and its
quarters written to each model's eval.json, against the closed form of a network that
outputs zero (loss = E[eps^2] = 1); and evaluate_samples without samples (or without
weights and a classifier) returns {} and writes nothing."""
import json
import math
import os

import jax
import numpy as np
import pytest

from common import images
from helpers import tiny_config
from hdd import evaluate, stages
from hdd.build import create_model
from hdd.train_step import create_train_state


@pytest.fixture(scope="module")
def zero_params():
  """All-zero parameters: the U-Net outputs exactly 0, so the eps-prediction loss of an
  example is mean(eps^2) over its 64 pixels, with expectation 1."""
  config = tiny_config()
  params = create_train_state(config, create_model(config)).params
  return jax.tree_util.tree_map(np.zeros_like, params)


def test_evaluate_loss_writes_eval_json(stripes_npz, tmp_path, zero_params):
  """Through `evaluate_losses`: a single model is one model, evaluated in the run's workdir."""
  config = tiny_config(stripes_npz)
  assert config.eval.num_examples == 16 and config.diffusion.prediction == "eps"
  workdir = tmp_path / "run"
  results = evaluate.evaluate_losses(config, {stages.SINGLE: zero_params}, str(workdir))
  assert list(results) == [stages.SINGLE]
  result = results[stages.SINGLE]
  assert os.listdir(workdir) == ["eval.json"]
  with open(workdir / "eval.json") as f:
    written = json.load(f)
  assert written == result
  quarters = [f"eval_loss_t_quarter{q}" for q in range(1, 5)]
  assert sorted(result) == sorted(["eval_split", "num_examples", "eval_loss"] + quarters)
  assert result["eval_split"] == "test" and result["num_examples"] == 16
  # 16 x 64 squared standard normals: the mean is 1 with a standard deviation of 0.044.
  assert abs(result["eval_loss"] - 1.0) < 0.2
  present = [result[q] for q in quarters if not math.isnan(result[q])]
  assert len(present) >= 2 and all(abs(v - 1.0) < 0.6 for v in present)
  assert min(present) <= result["eval_loss"] <= max(present)


def test_evaluate_loss_counts_examples_not_batches(stripes_npz, tmp_path, zero_params):
  config = tiny_config(stripes_npz)
  config.eval.num_examples = 11   # One full batch of 8 and 3 rows of the next.
  result = evaluate.evaluate_loss(config, zero_params, str(tmp_path))
  assert result["num_examples"] == 11
  config.eval.num_examples = 1000   # More than the split has: all 16.
  assert evaluate.evaluate_loss(config, zero_params, str(tmp_path))["num_examples"] == 16
  config.eval.num_examples = 2      # Two examples fill at most two quarters; the rest are NaN.
  result = evaluate.evaluate_loss(config, zero_params, str(tmp_path))
  nans = sum(math.isnan(result[f"eval_loss_t_quarter{q}"]) for q in range(1, 5))
  assert result["num_examples"] == 2 and nans >= 2 and math.isfinite(result["eval_loss"])


def test_evaluate_samples_without_samples_returns_nothing(stripes_npz, tmp_path):
  config = tiny_config(stripes_npz)
  workdir = tmp_path / "run"
  workdir.mkdir()
  assert evaluate.evaluate_samples(config, str(workdir)) == {}
  assert os.listdir(workdir) == []


def test_evaluate_samples_without_weights_or_classifier_returns_nothing(stripes_npz, tmp_path):
  config = tiny_config(stripes_npz)
  config.eval.inception_weights = str(tmp_path / "no-weights.pt")
  workdir = tmp_path / "run"
  images.save_samples_npz(str(workdir / "samples" / "samples.npz"),
                          np.zeros((4, 8, 8, 1), np.uint8))
  assert evaluate.evaluate_samples(config, str(workdir)) == {}
  assert sorted(os.listdir(workdir)) == ["samples"]
  assert os.listdir(workdir / "samples") == ["samples.npz"]
