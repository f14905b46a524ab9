"""DDPM on CIFAR-10 (32x32 RGB), a recipe of the kind used for CIFAR-10: base width 64,
multipliers (1,2,4,8), lr 8e-5, gradient accumulation 2, EMA 0.995, mixed precision.

  python main.py --config=configs/ddpm_cifar10.py --workdir=runs/ddpm_cifar10
  python main.py --config=configs/ddpm_cifar10.py:quick --workdir=runs/cifar_quick \
      --config.data.source=npz --config.data.path=../shared/data/cifar10_train_part1.npz

Data: tfds 'cifar10' (downloads); offline, a Keras-style npz as above.
full:  ~35M parameters, 100k updates of 128. CPU: impractical (days); one modern GPU:
       roughly a day. Expected: recognisable objects.
quick: ~0.3M parameters, 300 steps of 64, DDIM-100 samples: several minutes on 2 CPU
       cores; colour blobs with object-like layout.
"""
from configs import default
from configs.ddpm_fashion_mnist import apply_quick


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.name = "cifar10"
  config.data.image_size = 32
  config.data.channels = 3
  config.data.random_flip = True
  config.model.channel_mult = (1, 2, 4, 8)
  config.model.attention_resolutions = (16,)
  config.train.learning_rate = 8e-5
  config.train.grad_accum_steps = 2
  config.train.ema_decay = 0.995
  config.train.mixed_precision = True
  config.train.num_steps = 100_000
  if variant == "quick":
    apply_quick(config)
    config.model.attention_resolutions = (8,)
    config.train.mixed_precision = False
    config.train.grad_accum_steps = 1
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' or 'quick'")
  return config
