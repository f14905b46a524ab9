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


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist"])
def test_budget_variants_share_one_budget_and_the_quick_models(dataset):
  """`budget`: the quick U-Nets with attention at 7x7 only, 30 minutes (the cascade's split
  35/65), stochastic DDIM (eta = 1) with equal evaluations per image; stage 2 is conditional on
  stage 1's 14x14 output and its schedule is the published one cut at t*."""
  import numpy as np
  from hdd import stages
  cascade = importlib.import_module(f"configs.hdd_{dataset}").get_config("budget")
  ddpm = importlib.import_module(f"configs.ddpm_{dataset}").get_config("budget")
  config_checks.check_config(cascade)
  config_checks.check_config(ddpm)
  quick = importlib.import_module(f"configs.hdd_{dataset}").get_config("quick")
  budgets = [stages.stage_config(cascade, name).train.time_budget_minutes
             for name in ("stage1", "stage2")]
  assert budgets == pytest.approx([10.5, 19.5]) and ddpm.train.time_budget_minutes == 30.0
  for name in ("stage1", "stage2"):
    model = cascade.stages[name].model.copy_and_resolve_references()
    assert model.attention_resolutions == (7,) == ddpm.model.attention_resolutions
    assert model.low_res_size == (14 if name == "stage2" else 0)
    model.attention_resolutions = quick.stages[name].model.attention_resolutions
    model.low_res_size = 0
    assert model == quick.stages[name].model
  # Every chain stochastic DDIM; the DDPM gets the cascade's evaluations per image.
  for sample in [ddpm.sample] + [s.sample for s in cascade.stages.values()]:
    assert sample.sampler == "ddim" and sample.eta == 1.0
  assert ddpm.sample.num_steps == sum(s.sample.num_steps for s in cascade.stages.values())
  # Min-SNR-5 in the first stage only: it hurt the 28x28 stage.
  assert [cascade.stages[n].train.min_snr_gamma for n in ("stage1", "stage2")] == [5.0, 0.0]
  assert ddpm.train.min_snr_gamma == 0.0
  stage2, published = cascade.stages.stage2, quick.stages.stage2
  assert stage2.sample.handover == "truncate" and stage2.sample.start_step == 399
  assert stage2.diffusion.num_steps == 400 and stage2.diffusion.schedule == "linear"
  linear = lambda d: np.linspace(d.beta_start, d.beta_end, d.num_steps)
  np.testing.assert_allclose(linear(stage2.diffusion), linear(published.diffusion)[:400],
                             rtol=1e-12)


def test_cifar10_budget_variants():
  """CIFAR-10's `budget`: the cascade 16 -> 32 on the quick U-Nets (stage 1 twice as wide)
  with attention at 8x8 only, 30 minutes split 35/65, stage 2 conditional on stage 1's
  16x16 output with a 25-step chain, stage 1 sampled with half of DDPM's noise; the DDPM on
  the quick U-Net with 100 steps at DDPM's noise; random flips everywhere; `seed_budget` the
  seed's training recipe on that U-Net; `cond_budget` both stages conditional."""
  from hdd import stages
  module = importlib.import_module("configs.hdd_cifar10")
  cascade, conditional = module.get_config("budget"), module.get_config("cond_budget")
  ddpm_module = importlib.import_module("configs.ddpm_cifar10")
  ddpm, seed = ddpm_module.get_config("budget"), ddpm_module.get_config("seed_budget")
  for config in (cascade, conditional, ddpm, seed):
    config_checks.check_config(config)
    assert config.data.channels == 3 and config.data.random_flip
  assert [stages.stage_config(cascade, name).train.time_budget_minutes
          for name in ("stage1", "stage2")] == pytest.approx([10.5, 19.5])
  assert stages.image_sizes(cascade) == [16, 32]
  assert [cascade.stages[n].model.attention_resolutions for n in ("stage1", "stage2")] == [
      (8,), (8,)] and ddpm.model.attention_resolutions == (8,)
  assert cascade.stages.stage2.model.low_res_size == 16
  assert [cascade.stages[n].sample.num_steps for n in ("stage1", "stage2")] == [50, 25]
  assert [cascade.stages[n].sample.eta for n in ("stage1", "stage2")] == [0.5, 1.0]
  assert cascade.stages.stage2.sample.low_res_noise == 0.25
  assert ddpm.sample.eta == 1.0
  assert ddpm.sample.num_steps == 100 and ddpm.train.time_budget_minutes == 30.0
  assert not ddpm.train.mixed_precision and ddpm.train.grad_accum_steps == 1
  # The seed's recipe: its lr held constant, two micro-batches of 64, EMA 0.995, bfloat16,
  # T = 1000 linear; the U-Net and the sampler are the budget DDPM's.
  assert (seed.train.learning_rate, seed.train.lr_schedule, seed.train.batch_size,
          seed.train.grad_accum_steps, seed.train.ema_decay, seed.train.mixed_precision) == (
              8e-5, "constant", 128, 2, 0.995, True)
  assert seed.model == ddpm.model and seed.sample == ddpm.sample
  assert seed.diffusion == ddpm.diffusion and seed.diffusion.num_steps == 1000
  assert seed.train.time_budget_minutes == 30.0
  assert [cascade.stages[n].model.base_channels for n in ("stage1", "stage2")] == [32, 16]
  # cond_budget: the conditioning differs from budget, and stage 2's input is noised to
  # 0.1 (T-1), not 0.25 (guided, 0.25 cost class accuracy); stage 1 at eta 0.5 as budget's.
  for name in ("stage1", "stage2"):
    model = conditional.stages[name].model
    assert model.num_classes == 10 and conditional.stages[name].sample.guidance_scale == 2.0
    assert model.base_channels == cascade.stages[name].model.base_channels
  assert [conditional.stages[n].sample.eta for n in ("stage1", "stage2")] == [0.5, 1.0]
  assert conditional.stages.stage2.sample.low_res_noise == 0.1


def test_cifar10_three_stage_budget_variant():
  """CIFAR-10's `three_stage_budget`: 8 -> 16 -> 32 under the same 30 minutes, split 15/30/55;
  each later stage conditional on the one before and handed over by truncate at t* = 399;
  stage 1 twice as wide and weighted by Min-SNR-5, the last stage's chain 25 steps."""
  from hdd import stages
  cascade = importlib.import_module("configs.hdd_cifar10").get_config("three_stage_budget")
  config_checks.check_config(cascade)
  names = ("stage1", "stage2", "stage3")
  assert stages.image_sizes(cascade) == [8, 16, 32] and cascade.time_budget_minutes == 30.0
  assert [stages.stage_config(cascade, name).train.time_budget_minutes
          for name in names] == pytest.approx([4.5, 9.0, 16.5])
  assert [cascade.stages[n].model.low_res_size for n in names] == [0, 8, 16]
  assert [cascade.stages[n].model.base_channels for n in names] == [32, 16, 16]
  assert [cascade.stages[n].sample.num_steps for n in names] == [50, 50, 25]
  assert [cascade.stages[n].train.min_snr_gamma for n in names] == [5.0, 0.0, 0.0]
  for name in names[1:]:
    stage = cascade.stages[name]
    assert (stage.sample.handover, stage.sample.start_step, stage.diffusion.num_steps) == (
        "truncate", 399, 400)
  with pytest.raises(ValueError, match="unknown variant 'three_stage_quick'"):
    importlib.import_module("configs.hdd_cifar10").get_config("three_stage_quick")


@pytest.mark.parametrize("name, ddpm_name", [("hdd_mnist", "ddpm_mnist"),
                                             ("hdd_mnist_3stage", "ddpm_mnist"),
                                             ("hdd_afd", "ddpm_afd"),
                                             ("hdd_cifar10", "ddpm_cifar10")])
@pytest.mark.parametrize("variant", ["", "quick"])
def test_published_cascade_recipe(name, ddpm_name, variant):
  """The published recipe (configs.common.published_cascade): T = 500 per stage, linear
  betas from 1e-4 to 0.02 in the first stage (sampled from pure noise) and to 0.01 in later
  stages (started from the gamma = 0.3 mix x = 0.3 up(x_low) + 0.7 z), the DDPM's steps
  split evenly between the stages; the schedules built from it end where it says (float64
  closed form of the linear schedule)."""
  import numpy as np
  from hdd import stages
  from hdd.build import create_schedule
  from hdd.maths.handover import Handover
  config = importlib.import_module(f"configs.{name}").get_config(variant)
  ddpm = importlib.import_module(f"configs.{ddpm_name}").get_config(variant)
  models = stages.models(config)
  for stage in models:
    diffusion, sample = stage.config.diffusion, stage.config.sample
    beta_end = 0.01 if stage.index else 0.02
    assert (diffusion.schedule, diffusion.num_steps, diffusion.beta_start,
            diffusion.beta_end) == ("linear", 500, 1e-4, beta_end)
    assert stage.config.train.num_steps == ddpm.train.num_steps // len(models)
    betas = np.linspace(1e-4, beta_end, 500)
    schedule = create_schedule(diffusion)
    np.testing.assert_allclose(schedule.betas, betas, rtol=1e-6)
    assert (float(schedule.betas[0]), float(schedule.betas[-1])) == pytest.approx(
        (1e-4, beta_end), rel=1e-6)
    np.testing.assert_allclose(schedule.alphas_cumprod[-1], np.prod(1 - betas), rtol=1e-5)
    if stage.index:
      handover = Handover.from_config(sample)
      assert (handover.method, handover.gamma) == ("mix", 0.3)
      assert handover.chain_start(np.asarray(schedule.alphas_cumprod)) is None   # All T steps.
