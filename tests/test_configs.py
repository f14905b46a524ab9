"""Every shipped config and its quick variant loads and passes start-up validation."""
import glob
import importlib
import os

import pytest

from hdd import config_checks
from hdd.errors import ConfigError

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "*.py"))
                 if not p.endswith("__init__.py"))


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["", "quick"])
def test_config_is_valid(name, variant):
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config(variant) if name != "default" else module.get_config()
  config_checks.check_config(config)
  if variant == "quick" and name != "default":
    trains = ([stage.train for stage in config.stages.values()] if "stages" in config
              else [config.train])
    assert all(train.num_steps <= 1000 for train in trains)


def test_invalid_values_are_listed_one_per_line():
  config = importlib.import_module("configs.default").get_config()
  config.diffusion.schedule = "sigmoid"
  config.train.grad_accum_steps = 3
  with pytest.raises(ConfigError) as error:
    config_checks.check_config(config)
  lines = str(error.value).splitlines()
  assert lines == [
      "invalid config: diffusion.schedule='sigmoid': must be one of ('linear', 'cosine', "
      "'quadratic')",
      "invalid config: train.grad_accum_steps=3: must be >= 1 and divide train.batch_size=128"]
