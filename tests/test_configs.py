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


LABELLED = ["ddpm_mnist", "ddpm_fashion_mnist", "ddpm_cifar10", "hdd_mnist",
            "hdd_fashion_mnist", "hdd_cifar10", "hdd_mnist_3stage"]


@pytest.mark.parametrize("name", LABELLED)
def test_conditional_variants_condition_every_model_on_ten_classes(name):
  module = importlib.import_module(f"configs.{name}")
  for size in ("", "quick"):
    config = module.get_config(f"cond_{size}".rstrip("_"))
    config_checks.check_config(config)
    unconditional = module.get_config(size)
    models = list(config.stages.values()) if "stages" in config else [config]
    assert all(m.model.num_classes == 10 and m.train.label_dropout == 0.1 and
               m.sample.guidance_scale > 0 and m.sample.clipped_eps for m in models)
    assert config.sample.num_samples >= 100 and config.sample.label == -1
    # Only the conditioning differs from the unconditional variant.
    for m, u in zip(models, list(unconditional.stages.values()) if "stages" in config
                    else [unconditional]):
      assert m.model.base_channels == u.model.base_channels
      assert m.train.num_steps == u.train.num_steps


def test_unlabelled_datasets_have_no_conditional_variant():
  with pytest.raises(ValueError, match="unknown variant 'cond'"):
    importlib.import_module("configs.hdd_afd").get_config("cond")


def test_unknown_variant_is_refused():
  with pytest.raises(ValueError, match="unknown variant 'fast'"):
    importlib.import_module("configs.hdd_mnist").get_config("fast")
