"""The dataset configs end to end: each one's quick variant, with its model and 64x64 data
settings but only 2 steps of 4 images and 2 samples of 2 DDIM steps, trains and samples
through hdd.run.run on data the test makes (tfds' mock data offline, or a folder of PNGs);
a missing image folder fails in one line before anything is trained or written."""
import importlib
import os

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from helpers import COMPILATION_CACHE, ROOT, run_main
from hdd import run

TFDS_CONFIGS = ("ddpm_stl10", "ddpm_flowers102", "ddpm_birds")
FOLDER_CONFIGS = ("ddpm_butterflies", "ddpm_afd")


def shrunk_quick_config(name: str):
  """configs/<name>.py:quick, cut to what a test affords; model, data and schedule kept."""
  config = importlib.import_module(f"configs.{name}").get_config("quick")
  config.train.update(batch_size=4, num_steps=2, warmup_steps=1, log_every=1, checkpoint_every=2)
  config.sample.update(num_samples=2, batch_size=2, num_steps=2, trajectory_every=0)
  return config


def write_images(folder, num: int = 8) -> str:
  """`num` RGB PNGs of different sizes (landscape and portrait: the centre crop matters)."""
  rng = np.random.default_rng(0)
  os.makedirs(folder)
  for i in range(num):
    shape = (72, 96, 3) if i % 2 else (90, 66, 3)
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(os.path.join(folder, f"{i}.png"))
  return str(folder)


def assert_trained_and_sampled(config, workdir):
  """A checkpoint at the last step, and the configured number of 64x64 RGB samples."""
  assert (config.data.image_size, config.data.channels) == (64, 3)
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(config.train.num_steps)]
  with np.load(os.path.join(workdir, "samples", "samples.npz")) as samples:
    images = samples["images"]
  assert images.dtype == np.uint8
  assert images.shape == (config.sample.num_samples, 64, 64, 3)


@pytest.mark.parametrize("name", TFDS_CONFIGS)
def test_tfds_config_trains_and_samples_on_mock_data(tmp_path, name):
  import tensorflow_datasets as tfds
  config = shrunk_quick_config(name)
  assert config.data.source == "tfds"
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    run.run(config, str(tmp_path / "w"), "train", COMPILATION_CACHE)
  assert_trained_and_sampled(config, str(tmp_path / "w"))


@pytest.mark.parametrize("name", FOLDER_CONFIGS)
def test_folder_config_trains_and_samples_on_a_made_folder(tmp_path, name):
  config = shrunk_quick_config(name)
  assert config.data.source == "folder"
  config.data.path = write_images(tmp_path / "images")
  run.run(config, str(tmp_path / "w"), "train", COMPILATION_CACHE)
  assert_trained_and_sampled(config, str(tmp_path / "w"))


def test_dataset_splits_and_the_afd_baseline_match_their_intent():
  stl10 = importlib.import_module("configs.ddpm_stl10").get_config()
  assert (stl10.data.name, stl10.data.split, stl10.data.eval_split) == (
      "stl10", "unlabelled", "test")
  flowers = importlib.import_module("configs.ddpm_flowers102").get_config()
  assert (flowers.data.split, flowers.data.eval_split) == ("train+test", "validation")
  for variant in ("", "quick"):
    cascade = importlib.import_module("configs.hdd_afd").get_config(variant)
    ddpm = importlib.import_module("configs.ddpm_afd").get_config(variant)
    stages = [cascade.stages.stage1, cascade.stages.stage2]
    assert ddpm.data == cascade.data and ddpm.model == stages[1].model
    assert ddpm.train.num_steps == sum(stage.train.num_steps for stage in stages)
    assert ddpm.train.batch_size == stages[1].train.batch_size
    assert (ddpm.diffusion.num_steps, ddpm.diffusion.beta_end) == (1000, 0.02)
    assert ddpm.sample.num_steps == sum(stage.sample.num_steps or stage.diffusion.num_steps
                                        for stage in stages)


def test_missing_afd_folder_is_one_line_before_training(tmp_path):
  """The design card's command without data/anime_faces: exit 2, one line naming the path
  and the flag, and no stage, checkpoint or config written."""
  if os.path.exists(os.path.join(ROOT, "data", "anime_faces")):
    pytest.skip("data/anime_faces exists here")
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", config="configs/hdd_afd.py")
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "data.path 'data/anime_faces'" in errors[0] and "does not exist" in errors[0]
  assert "--config.data.path=DIR" in errors[0] and "Traceback" not in result.stderr
  assert sorted(os.listdir(workdir)) == [".lock"]


@pytest.mark.parametrize("name", FOLDER_CONFIGS)
def test_missing_folder_of_a_ddpm_config_is_refused_before_training(tmp_path, name):
  config = importlib.import_module(f"configs.{name}").get_config("quick")
  config.data.path = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match=r"'.*nowhere' does not exist .*--config.data.path=DIR"):
    run.run(config, str(tmp_path / "w"), "train", COMPILATION_CACHE)
  assert os.listdir(tmp_path / "w") == [".lock"]
