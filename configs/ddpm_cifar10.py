"""DDPM on CIFAR-10 (32x32 RGB) with `configs.common.cifar10_recipe`: base width 64,
multipliers (1,2,4,8), lr 8e-5, gradient accumulation 2, EMA 0.995, mixed precision.

  python main.py --config=configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10
  python main.py --config=configs/ddpm_cifar10.py:quick --workdir=runs/cifar_quick \
      --config.data.source=npz --config.data.path=../shared/data/cifar10_train_part1.npz \
      --config.data.eval_path=../shared/data/cifar10_test.npz

Data: tfds 'cifar10' (downloads); offline, Keras-style npz files as above (the shared
training file lacks the test images, hence data.eval_path).
full:  56.9M parameters (docs/speed.md), 100k updates of 128. CPU: impractical (days); one modern GPU:
       roughly a day. Expected: recognisable objects.
quick: ~0.3M parameters, 300 steps of 64, DDIM-100 samples: several minutes on 2 CPU
       cores; colour blobs with object-like layout.
budget: the quick U-Net (attention at 8x8) trained for train.time_budget_minutes = 30,
       stochastic DDIM (eta = 1) with 100 steps: experiments/budget.py --dataset=cifar10
       (FID 92.7 of 2,000 samples on 2026-12-04, 91.3 on 12-03; docs/results.md).
seed_budget: seed 002's recipe (the full config's lr 8e-5 held constant, batch 128 in two
       micro-batches, EMA 0.995, bfloat16 compute, T = 1000 linear) on the quick U-Net,
       under the same budget and sampler: the seed's choices measured beside ours
       (experiments/budget.py --models=seed; FID 338.7, its loss still falling fast).
cond, cond_quick: class-conditional on the class, label dropout 0.1, sampled with
       classifier-free guidance at w = 2, 100 samples shown a row per class.
"""
from configs import common, default

VARIANTS = common.BUDGET_VARIANTS + ("seed_budget",)


def get_config(variant: str = ""):
  quick, conditional = common.parse_variant(variant, VARIANTS)
  config = common.cifar10_recipe(default.get_config())
  if quick:
    common.apply_quick(config)
    config.model.attention_resolutions = (8,)
    config.train.mixed_precision = False
    config.train.grad_accum_steps = 1
  if variant.endswith("budget"):
    common.budget_training(config.train)
    common.budget_sampler(config.sample, 100)   # The cascade's evaluations per image.
  if variant == "seed_budget":   # The seed's training recipe on the quick U-Net.
    config.train.update(batch_size=128, grad_accum_steps=2, mixed_precision=True,
                        learning_rate=8e-5, lr_schedule="constant", warmup_steps=0,
                        ema_decay=0.995)
  return common.class_conditional(config) if conditional else config
