"""Every shipped config and its quick variant loads and passes start-up validation;
configs never import each other (only `configs.common` and `configs.default`)."""
import glob
import importlib
import os

import pytest

from hdd import config_checks

CONFIGS = sorted(os.path.basename(p)[:-3] for p in glob.glob(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "*.py"))
                 if not p.endswith(("__init__.py", "common.py")))


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


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_import_only_common_and_default(name):
  path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                      f"{name}.py")
  imports = [line.strip() for line in open(path) if line.startswith(("from ", "import "))]
  assert all(line in ("import copy", "import ml_collections", "from configs import common, default")
             for line in imports), imports


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown variant 'fast'"):
    importlib.import_module("configs.hdd_mnist").get_config("fast")
