"""Start-up validation (hdd.config_checks): every bad value is listed one per line with
the field, its value and what is allowed, for single models and cascade stages."""
import importlib

import pytest

from common.errors import ConfigError
from helpers import tiny_cascade, tiny_config
from hdd import config_checks


def test_invalid_values_are_listed_one_per_line():
  config = importlib.import_module("configs.default").get_config()
  config.diffusion.schedule = "sigmoid"
  config.train.grad_accum_steps = 3
  config.eval.classifier_recipe = "resnet"
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  lines = str(error.value).splitlines()
  assert lines == [
      "invalid config: diffusion.schedule='sigmoid': must be one of ('linear', 'cosine', "
      "'quadratic')",
      "invalid config: train.grad_accum_steps=3: must be >= 1 and divide train.batch_size=128",
      "invalid config: eval.classifier_recipe='resnet': must be one of ('', 'cifar10')"]


@pytest.mark.parametrize("field,value,message", [
    ("stages.stage2.image_size", 4, "stages.stage2.image_size=4: stage resolutions must increase"),
    # Pictures show every stage at the final size by repeating pixels: a 6x6 stage of an
    # 8x8 cascade trained fully, then could not be drawn.
    ("stages.stage1.image_size", 6, "stages.stage1.image_size=6: must divide the last stage's "
     "image_size (8): one of 4"),
    ("stages.stage2.model.channel_mult", (1, 2, 2, 2, 2), "stages.stage2.image_size=8: must be "
     "divisible by 16"),
    ("stages.stage2.sample.handover", "blend", "stages.stage2.sample.handover='blend': must be "
     "one of ('mix', 'truncate', 'noise')"),
    ("stages.stage2.sample.gamma", 1.5, "stages.stage2.sample.gamma=1.5: must lie in [0, 1]"),
    ("stages.stage2.sample.start_step", 40, "stages.stage2.sample.start_step=40: must lie in "
     "[0, diffusion.num_steps=40)"),
    ("stages.stage1.diffusion.beta_end", 2.0, "stages.stage1.diffusion.beta_start=0.0001"),
    ("stages.stage1.sample.upsample", "lanczos", "stages.stage1.sample.upsample='lanczos'"),
    ("stage", 3, "stage=3: must lie in [0, 2]"),
    ("stages.stage1.train.min_snr_gamma", -5.0, "stages.stage1.train.min_snr_gamma=-5.0: must "
     "be >= 0 (0 = the simple loss)"),
    # Sizes that become loops or host arrays are bounded: found by tests/test_fuzz.py, where
    # num_res_blocks=536870913 hung the model's construction.
    ("stages.stage2.model.num_res_blocks", 536870913,
     "stages.stage2.model.num_res_blocks=536870913: must lie in [1, 64]"),
    ("stages.stage1.diffusion.num_steps", 2**40,
     "stages.stage1.diffusion.num_steps=1099511627776: must lie in [1, 100000]"),
    ("data.image_size", 16, "data.image_size=16: must equal the last stage's image_size (8)"),
    ("stages.stage2.sample.guidance_scale", 2.0, "stages.stage2.sample.guidance_scale=2.0: "
     "needs a class-conditional model (model.num_classes > 0)"),
    ("pictures.interpolation_frames", 1, "pictures.interpolation_frames=1: must lie in [2, 64]"),
    ("stages.stage1.model.low_res_size", 4, "stages.stage1.model.low_res_size=4: must be 0 "
     "(unconditional); the first stage has no stage before it"),
    ("stages.stage2.model.low_res_size", 2, "stages.stage2.model.low_res_size=2: must be 0 "
     "(unconditional) or the previous stage's image_size (4)"),
    ("stages.stage2.sample.handover", "noise", "stages.stage2.sample.handover='noise': an "
     "unconditional stage would ignore the stage before; set "
     "stages.stage2.model.low_res_size=4"),
    ("stages.stage2.sample.low_res_noise", 1.5, "stages.stage2.sample.low_res_noise=1.5: must "
     "lie in [0, 1]"),
    ("stages.stage2.train.low_res_noise_max", -0.1, "stages.stage2.train.low_res_noise_max=-0.1:"
     " must lie in [0, 1]"),
    ("pictures.forward_steps", (0, 40), "pictures.forward_steps=(0, 40): must be at most 64 "
     "steps in [0, diffusion.num_steps=40)"),
])
def test_bad_stage_configs_are_named(field, value, message):
  config = tiny_cascade(data_path="x.npz")
  config_checks.check_config(config)
  parent = config
  *path, last = field.split(".")
  for part in path:
    parent = parent[part]
  parent[last] = value
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  assert any(line == f"invalid config: {message}" or line.startswith(f"invalid config: {message}")
             for line in str(error.value).splitlines()), str(error.value)


def test_conditional_stages_must_share_their_classes():
  config = tiny_cascade("cascade_cond", "x.npz")
  config_checks.check_config(config)
  config.stages.stage2.model.num_classes = 0   # An unconditional stage may follow.
  config.stages.stage2.sample.guidance_scale = 0.0
  config_checks.check_config(config)
  config.stages.stage2.model.num_classes = 3
  with pytest.raises(ConfigError, match=r"stages.\*.model.num_classes=\[2, 3\]: the conditional "
                     "stages of a cascade must share one set of classes"):
    config_checks.check_config(config)


def test_a_single_model_has_no_low_res_input():
  config = tiny_config()
  config.model.low_res_size = 4
  # A single model is the first (and only) stage: nothing before it to condition on.
  with pytest.raises(ConfigError, match=r"(?m)^invalid config: model.low_res_size=4: must be 0 "
                     r"\(unconditional\); the first stage has no stage before it to condition "
                     "on$"):
    config_checks.check_config(config)


def test_a_budget_must_be_a_finite_number_of_minutes():
  """1e308 minutes passed the checks and overflowed the first log line of training."""
  config = tiny_config("x.npz")
  config.train.time_budget_minutes = 1e308
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  assert str(error.value) == ("invalid config: train.time_budget_minutes=1e+308: must be a "
                              "finite number of minutes, at most 525600 (a year)")
  cascade = tiny_cascade(data_path="x.npz")
  cascade.time_budget_minutes = 1e308   # Its stages' shares are not named as well.
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(cascade)
  assert str(error.value) == ("invalid config: time_budget_minutes=1e+308: must be a finite "
                              "number of minutes, at most 525600 (a year)")
  cascade.time_budget_minutes = 365 * 24 * 60
  config_checks.check_config(cascade)


def test_sample_mode_needs_images_to_sample():
  """num_samples=0 means 'no sampling after training'; --mode=sample divided by it."""
  config = tiny_cascade(data_path="x.npz")
  config.sample.num_samples = 0
  config_checks.check_config(config, "train")
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config, "sample")
  assert str(error.value) == ("invalid config: sample.num_samples=0: must be >= 1 for "
                              "--mode=sample")


def test_an_eval_path_needs_a_source_that_reads_paths():
  config = importlib.import_module("configs.default").get_config()
  config.data.eval_path = "test.npz"
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  assert str(error.value) == (
      "invalid config: data.eval_path='test.npz': must be a file or folder of the eval split, "
      "and only with data.source=npz|idx|folder (tfds reads data.eval_split itself)")
  config.data.update(source="npz", path="train.npz")
  config_checks.check_config(config)
