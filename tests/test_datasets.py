"""The dataset configs end to end: each one's quick variant, with its model(s) and 64x64
data settings but only 2 steps of 4 images and 2 samples of 2 DDIM steps per model, trains
and samples through hdd.run.run on data the test makes (tfds' mock data offline, or a
download-like folder of mixed images put through `input_pipeline.prepare_folder`); a missing
image folder fails in one line, naming that command, before anything is trained or written."""
import importlib
import os

import numpy as np
import pytest
from PIL import Image

from common.errors import DataError
from helpers import COMPILATION_CACHE, ROOT, run_main
from hdd import layout, run, stages
from input_pipeline import prepare_folder

TFDS_CONFIGS = ("ddpm_stl10", "ddpm_flowers102", "ddpm_birds")
FOLDER_CONFIGS = ("ddpm_butterflies", "ddpm_afd", "hdd_afd")


def shrunk_quick_config(name: str):
  """configs/<name>.py:quick, cut to what a test affords; models, data and schedules kept,
  but ddpm_afd's T (below)."""
  config = importlib.import_module(f"configs.{name}").get_config("quick")
  for section in stages.all_sections(config):
    section.train.update(batch_size=4, num_steps=2, warmup_steps=1, log_every=1,
                         checkpoint_every=2)
    section.sample.num_steps = 2
  config.sample.update(num_samples=2, batch_size=2, trajectory_every=0)
  if name == "ddpm_afd":
    # The U-Net and training of hdd_afd's 64x64 stage: at that stage's T (the schedule is
    # an input of shape [T]) the two tests train one compiled program, compiled once.
    config.diffusion.num_steps = shrunk_quick_config("hdd_afd").stages.stage2.diffusion.num_steps
  return config


def write_download(folder, num: int = 8) -> str:
  """A download as users get one: `num` images of different sizes (landscape and portrait:
  the centre crop matters) as RGB and grey JPEGs and RGB, RGBA and grey PNGs, and a
  truncated JPEG."""
  rng = np.random.default_rng(0)
  os.makedirs(folder)
  kinds = [(3, "jpg"), (1, "jpg"), (3, "png"), (4, "png"), (1, "png")]
  for i in range(num):
    channels, extension = kinds[i % len(kinds)]
    shape = (72, 96, channels) if i % 2 else (90, 66, channels)
    pixels = rng.integers(0, 256, shape, np.uint8)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(
        os.path.join(folder, f"{i}.{extension}"))
  whole = (folder / "0.jpg").read_bytes()
  (folder / "truncated.jpg").write_bytes(whole[:len(whole) // 2])
  return str(folder)


def assert_trained_and_sampled(config, workdir):
  """A checkpoint at the last step of every model, and the configured number of 64x64 RGB
  samples."""
  assert (config.data.image_size, config.data.channels) == (64, 3)
  for model in stages.models(config, workdir):
    assert os.listdir(layout.checkpoint_dir(model.workdir)) == [
        str(model.config.train.num_steps)]
  with np.load(layout.samples_path(workdir)) as samples:
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
def test_folder_config_trains_and_samples_on_a_prepared_download(tmp_path, name):
  """The preparation command first, at its default size (the configs' 64), then training."""
  config = shrunk_quick_config(name)
  assert config.data.source == "folder"
  config.data.path = str(tmp_path / "images")
  written, skipped = prepare_folder.prepare(write_download(tmp_path / "download"),
                                            config.data.path)
  assert written == 8 and len(skipped) == 1 and "truncated.jpg" in skipped[0]
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
  """The design card's command without data/anime_faces: exit 2, one line naming the path,
  the flag and the command that prepares the folder, and no stage, checkpoint or config
  written."""
  if os.path.exists(os.path.join(ROOT, "data", "anime_faces")):
    pytest.skip("data/anime_faces exists here")
  workdir = tmp_path / "w"
  result = run_main(f"--workdir={workdir}", config="configs/hdd_afd.py")
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
  assert len(errors) == 1, result.stderr[-2000:]
  assert "data.path 'data/anime_faces'" in errors[0] and "does not exist" in errors[0]
  assert "--config.data.path=DIR" in errors[0] and "Traceback" not in result.stderr
  assert "python -m input_pipeline.prepare_folder DOWNLOADED DIR makes DIR" in errors[0]
  assert sorted(os.listdir(workdir)) == [".lock"]


@pytest.mark.parametrize("name", FOLDER_CONFIGS)
def test_missing_folder_of_a_folder_config_is_refused_before_training(tmp_path, name):
  config = importlib.import_module(f"configs.{name}").get_config("quick")
  config.data.path = str(tmp_path / "nowhere")
  with pytest.raises(DataError, match=r"'.*nowhere' does not exist .*--config.data.path=DIR; "
                                      r"python -m input_pipeline.prepare_folder "):
    run.run(config, str(tmp_path / "w"), "train", COMPILATION_CACHE)
  assert os.listdir(tmp_path / "w") == [".lock"]
