"""Sampling from parameters (hdd.generate): class labels, seeded and deterministic
sampling, padding of the last batch that never changes the real rows, the trajectory of
the first batch, hand-over inputs, and the files of a single model's cascade.sample_and_save. Tiny U-Net with
freshly initialised parameters, a 2-step DDIM chain, batches of 4."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from common import parallel
from common.errors import ConfigError
from helpers import tiny_cascade, tiny_config, tiny_sampling_config
from hdd import cascade, generate, stages
from hdd.build import create_model
from hdd.maths.handover import Handover
from hdd.plan import SamplingPlan
from hdd.train_step import create_train_state


@pytest.fixture(scope="module")
def setup():
  config = tiny_sampling_config()
  params = create_train_state(config, create_model(config)).params
  return config, params, SamplingPlan.create(config), parallel.create_mesh()


@pytest.fixture(scope="module")
def runs(setup):
  """The sampling runs the tests compare, each made once."""
  config, params, plan, mesh = setup
  sample = lambda n, seed, **kw: generate.sample_images(plan, params, mesh, n, seed=seed, **kw)
  return {"four": sample(4, 0, with_trajectory=True), "four_again": sample(4, 0),
          "six": sample(6, 0), "eight": sample(8, 0), "other_seed": sample(4, 1),
          "other_stream": sample(4, 0, stream=1)}


def test_class_labels():
  config = tiny_config()
  assert generate.class_labels(config, 5) is None   # Unconditional.
  config.model.num_classes = 3
  labels = generate.class_labels(config, 7)
  assert labels.dtype == np.int32 and labels.tolist() == [0, 1, 2, 0, 1, 2, 0]
  config.sample.label = 2
  fixed = generate.class_labels(config, 4)
  assert fixed.dtype == np.int32 and fixed.tolist() == [2, 2, 2, 2]
  # A cascade: the labels of its conditional stages (an unconditional stage may join).
  cascade_config = tiny_cascade(data_path="unused.npz")
  assert generate.class_labels(cascade_config, 3) is None
  cascade_config.stages.stage1.model.num_classes = 4
  assert generate.class_labels(cascade_config, 5).tolist() == [0, 1, 2, 3, 0]


def test_given_noise_and_labels_replace_the_drawn_ones(setup, runs):
  config, params, plan, mesh = setup
  drawn, _ = runs["four"]
  noise = np.zeros((4, 8, 8, 1), np.float32)
  given, info = generate.sample_images(plan, params, mesh, 4, seed=0, noise=noise,
                                       labels=np.array([1, 1, 0, 0]))
  assert info["labels"].tolist() == [1, 1, 0, 0]
  assert not np.array_equal(given, drawn)
  # One noise for all four: DDIM with eta = 0 then makes four equal images (unconditional).
  assert config.sample.eta == 0 and (given == given[:1]).all()


def test_samples_are_uint8_images(runs):
  images, info = runs["six"]
  assert images.shape == (6, 8, 8, 1) and images.dtype == np.uint8
  assert info["labels"] is None and info["compile_seconds"] > 0
  assert len(np.unique(images)) > 10   # Not a constant image.


def test_sampling_is_deterministic_for_a_seed_and_differs_across_seeds(runs):
  np.testing.assert_array_equal(runs["four"][0], runs["four_again"][0])
  for other in ("other_seed", "other_stream"):
    different = np.any(runs[other][0] != runs["four"][0], axis=(1, 2, 3))
    assert different.all(), other


def test_padding_of_the_last_batch_does_not_change_real_rows(runs):
  four, six, eight = runs["four"][0], runs["six"][0], runs["eight"][0]
  np.testing.assert_array_equal(six[:4], four)        # The first batch is the same batch.
  np.testing.assert_array_equal(six, eight[:6])       # Rows 4..5: padded batch vs full batch.
  assert np.any(eight[4] != eight[0]) and np.any(six[4] != six[5])


def test_trajectory_of_the_first_batch(runs):
  images, info = runs["four"]
  trajectory = info["trajectory"]
  # trajectory_every=1 over 2 steps: the initial noise and the state after each step.
  assert trajectory.shape == (3, 4, 8, 8, 1) and trajectory.dtype == np.uint8
  np.testing.assert_array_equal(trajectory[-1], images)
  assert runs["four_again"][1]["trajectory"] is None   # Only when asked for.


def test_low_res_is_needed_exactly_with_a_hand_over(setup):
  config, params, plan, mesh = setup
  with pytest.raises(ValueError, match="low_res images are needed exactly when"):
    generate.sample_images(plan, params, mesh, 4, low_res=np.zeros((4, 4, 4, 1), np.uint8))
  cascade = tiny_cascade()
  single = stages.stage_config(cascade, "stage2")
  handover_plan = SamplingPlan.create(single, Handover.from_config(single.sample))
  with pytest.raises(ValueError, match="low_res images are needed exactly when"):
    generate.sample_images(handover_plan, params, mesh, 4)


def test_no_images_to_sample_is_a_config_error(setup, tmp_path):
  """--mode=sample with sample.num_samples=0 divided by zero after compiling."""
  config, params, _, _ = setup
  config = tiny_sampling_config()
  config.sample.num_samples = 0
  with pytest.raises(ConfigError, match=r"^sample.num_samples=0: must be >= 1 to sample$"):
    cascade.sample_and_save(config, {"model": params}, str(tmp_path))
  assert os.listdir(tmp_path) == []


def test_generate_and_save_writes_the_samples(setup, runs, tmp_path):
  config, params, _, _ = setup
  config = tiny_sampling_config()
  config.sample.num_samples = 6
  timing = cascade.sample_and_save(config, {"model": params}, str(tmp_path))
  out = tmp_path / "samples"
  assert sorted(os.listdir(out)) == ["grid.png", "samples.npz", "timing.json",
                                     "trajectory.png"]
  with np.load(out / "samples.npz") as data:
    assert data.files == ["images"]   # Unconditional: no labels.
    np.testing.assert_array_equal(data["images"], runs["six"][0])   # Default seed 0.
  # Pictures for people: every 8 px image drawn 8 times as large (at least 64 px).
  with Image.open(out / "grid.png") as grid:
    assert grid.size == (8 * (3 * 10 + 2), 8 * (2 * 10 + 2))   # 6 images: 3 columns, 2 rows.
  with Image.open(out / "trajectory.png") as strip:
    # 3 frames of 4 images under the header: the stage's name, then each column's step.
    assert strip.size == (8 * (3 * 10 + 2), 2 * 16 + 8 * (4 * 10 + 2))
  assert json.loads((out / "timing.json").read_text()) == timing
  assert timing["num_images"] == 6 and timing["stages"][0]["sampler"] == "ddim"
  assert timing["stages"][0]["network_evaluations_per_image"] == 2
