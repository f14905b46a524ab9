"""Hierarchical diffusion on CIFAR-10: 16x16 -> 32x32 with the published recipe
(`configs.common.published_cascade`) on the CIFAR-10 recipe (`common.cifar10_recipe`).

  python main.py --config=configs/hdd_cifar10.py --workdir=runs/hdd_cifar10
  python main.py --config=configs/hdd_cifar10.py:quick --workdir=runs/hdd_cifar_quick \
      --config.data.source=npz --config.data.path=../shared/data/cifar10_train_part1.npz

Data: tfds 'cifar10' (downloads); offline, a Keras-style npz as above.
full:  14.7M + 56.9M parameters, 50k updates of 128 per stage. CPU: impractical; one modern
       GPU: about a day.
quick: 0.18M + 0.28M parameters, 150 steps of 64 each, DDIM-50 per stage: about 6
       minutes on 2 CPU cores; colour blobs.
cond, cond_quick: every stage class-conditional on the class, label dropout 0.1, each
       guided at w = 2 (--config.stages.stageK.sample.guidance_scale); a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  quick, _ = common.parse_variant(variant, common.LABELLED_VARIANTS)
  config = common.cifar10_recipe(default.get_config())
  if quick:
    config.train.mixed_precision = False
    config.train.grad_accum_steps = 1
  common.published_cascade(config, (16, 32), variant, common.LABELLED_VARIANTS)
  if not quick:
    config.stages.stage1.model.channel_mult = (1, 2, 4)
    config.stages.stage2.model.channel_mult = (1, 2, 4, 8)
  return config
