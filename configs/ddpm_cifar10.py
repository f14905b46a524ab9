"""DDPM on CIFAR-10 (32x32 RGB) with `configs.common.cifar10_recipe`: base width 64,
multipliers (1,2,4,8), lr 8e-5, gradient accumulation 2, EMA 0.995, mixed precision.

  python main.py --config=configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10
  python main.py --config=configs/ddpm_cifar10.py:quick --workdir=runs/cifar_quick \
      --config.data.source=npz --config.data.path=../shared/data/cifar10_train_part1.npz

Data: tfds 'cifar10' (downloads); offline, a Keras-style npz as above.
full:  ~35M parameters, 100k updates of 128. CPU: impractical (days); one modern GPU:
       roughly a day. Expected: recognisable objects.
quick: ~0.3M parameters, 300 steps of 64, DDIM-100 samples: several minutes on 2 CPU
       cores; colour blobs with object-like layout.
cond, cond_quick: class-conditional on the class, label dropout 0.1, sampled with
       classifier-free guidance at w = 2, 100 samples shown a row per class.
"""
from configs import common, default


def get_config(variant: str = ""):
  quick, conditional = common.parse_variant(variant, common.LABELLED_VARIANTS)
  config = common.cifar10_recipe(default.get_config())
  if quick:
    common.apply_quick(config)
    config.model.attention_resolutions = (8,)
    config.train.mixed_precision = False
    config.train.grad_accum_steps = 1
  return common.class_conditional(config) if conditional else config
