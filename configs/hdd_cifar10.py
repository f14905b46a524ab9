"""Hierarchical diffusion on CIFAR-10: 16x16 -> 32x32 with the published recipe
(`configs.common.published_cascade`) on the CIFAR-10 recipe (`common.cifar10_recipe`).

  python main.py --config=configs/hdd_cifar10.py --workdir=runs/hdd_cifar10
  python main.py --config=configs/hdd_cifar10.py:quick --workdir=runs/hdd_cifar_quick \
      --config.data.source=npz --config.data.path=../shared/data/cifar10_train_part1.npz \
      --config.data.eval_path=../shared/data/cifar10_test.npz

Data: tfds 'cifar10' (downloads); offline, Keras-style npz files as above (the shared
training file lacks the test images, hence data.eval_path). Random horizontal flips.
full:  14.7M + 56.9M parameters, 50k updates of 128 per stage. CPU: impractical; one modern
       GPU: about a day.
quick: 0.18M + 0.28M parameters, 150 steps of 64 each, DDIM-50 per stage: about 6
       minutes on 2 CPU cores; colour blobs.
budget: the recipe of configs/hdd_mnist.py:budget at 16 -> 32 (`common.budget_cascade`):
       the quick U-Nets (stage 1 at base width 32) with attention at 8x8 only,
       config.time_budget_minutes = 30 (35% stage 1), stochastic DDIM with 50 steps at
       16x16 (eta 0.5) and 25 at 32x32 (eta 1; 2,000 samples in about 3 minutes on 2
       cores), stage 2 by truncate at t* = 399 and conditional on up(x_16), noised to
       0.25 (T-1) when sampling: experiments/budget.py --dataset=cifar10 (FID 88.8 of 2,000
       samples against the DDPM's 92.7; docs/results.md).
three_stage_budget: the budget recipe on three stages, 8x8 -> 16x16 -> 32x32: stage 1 (8x8,
       base width 32) takes 15% of the budget, the conditional 16x16 stage 30% and the
       conditional 32x32 stage 55%; a lever of the budget study
       (experiments/budget.py --cascade_variant=three_stage_budget): FID 95.3, no better
       than the two-stage cascade (docs/results.md, levers).
cond, cond_quick, cond_budget: every stage class-conditional on the class, label dropout
       0.1, each guided at w = 2 (--config.stages.stageK.sample.guidance_scale); a row per
       class; cond_budget's stage 1 samples at eta 0.5 as budget's does (its stage 2's
       input stays at 0.1 (T-1)). FID and class accuracy against w:
       experiments/guidance.py --dataset=cifar10.
"""
from configs import common, default


VARIANTS = common.BUDGET_VARIANTS + ("three_stage_budget",)
# The share of the budget of each stage of `three_stage_budget`: at 8x8 a stage trains
# several times more images per second than at 16x16, and the last stage is the costliest.
THREE_STAGE_FRACTIONS = (0.15, 0.30, 0.55)


def get_config(variant: str = ""):
  quick, _ = common.parse_variant(variant, VARIANTS)
  config = common.cifar10_recipe(default.get_config())
  if quick:
    config.train.mixed_precision = False
    config.train.grad_accum_steps = 1
  three_stages = variant == "three_stage_budget"
  common.published_cascade(config, (8, 16, 32) if three_stages else (16, 32), variant,
                           VARIANTS)
  if not quick:
    config.stages.stage1.model.channel_mult = (1, 2, 4)
    config.stages.stage2.model.channel_mult = (1, 2, 4, 8)
  if variant.endswith("budget"):
    # Stage 1 twice as wide (0.70M parameters): at 16x16 it still trains 238 img/s, and
    # after 4 minutes its held-out loss was 0.0720 against the quick width's 0.0746.
    config.stages.stage1.model.base_channels = 32
    last = common.stage_names(config)[-1]
    # 25 steps of the 32x32 stage: 2,000 samples in about 3 minutes on 2 cores (162.8 s
    # on 2026-12-03, 192.0 s on a slower 12-04).
    config.stages[last].sample.num_steps = 25
  if variant in ("budget", "cond_budget"):
    # Sampling levers of trained cascades (docs/results.md, levers): stage 1 with half of
    # DDPM's noise (eta 0.5) lowered FID by 1.1, 0.5, 0.2 and 1.6 and the classifier
    # distance by 26, 18, 17 and 16% on four cascades (the DDPM's FID is best at eta 1: 92.7
    # against 98.4 at 0.5); guided at w = 3, the conditional cascade's FID fell from 110.4 to
    # 104.4 (1,000 samples; its class accuracy, 57.8% -> 58.9%, moved within the noise).
    config.stages.stage1.sample.eta = 0.5
  if variant == "budget":
    # Stage 2's input noised to 0.25 (T-1) in place of 0.1 (T-1): FID -3.2, -2.0 and -2.7
    # on three cascades of seed 0, +0.4 (within the noise) on one of seed 1. Not in
    # cond_budget: guided at w = 3, it cost the conditional cascade class accuracy on two
    # settings of stage 1 (500 samples: 58.0% against 60.0% at eta 0.5, 55.6% against 56.8%
    # at eta 1; docs/results.md, levers).
    config.stages.stage2.sample.low_res_noise = 0.25
  if three_stages:
    for name, fraction in zip(common.stage_names(config), THREE_STAGE_FRACTIONS):
      config.stages[name].budget_fraction = fraction
  return config
