"""DDPM on Fashion-MNIST (28x28, grayscale), from the idx files of Debian's
dataset-fashion-mnist package (the README's setup installs it).

  python main.py --config=configs/ddpm_fashion_mnist.py --workdir=runs/ddpm_fmnist
  python main.py --config=configs/ddpm_fashion_mnist.py:quick --workdir=runs/fmnist_quick

Elsewhere: --config.data.source=tfds --config.data.name=fashion_mnist (downloads).

full:  6.5M-parameter U-Net 64/(1,2,2), T=1000, 20k steps of 128. CPU (2 cores): about
       11 img/s, so ~65 h; one modern GPU: well under an hour. Expected: clean garments.
quick: 0.28M-parameter U-Net 16/(1,2,2), 300 steps of 64, DDIM 100-step samples.
       CPU (2 cores): measured 7.4 min end to end (train 320 s at 60 img/s, compile 40 s,
       64 samples 24 s) while a test run shared the cores; GPU: about a minute, mostly
       compilation. Expected: garment-like silhouettes on a black background, not yet
       sharp.
"""
from configs import default


def get_config(variant: str = ""):
  config = default.get_config()
  config.data.source = "idx"
  config.data.path = "/usr/share/datasets/fashion-mnist"
  config.data.name = "fashion_mnist"
  config.data.random_flip = True
  if variant == "quick":
    apply_quick(config)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' or 'quick'")
  return config


def apply_quick(config):
  """A ~0.3M-parameter model and a few hundred steps: minutes on a 2-core CPU."""
  config.model.base_channels = 16
  config.model.channel_mult = (1, 2, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = (7,)
  config.model.norm_groups = 8
  config.model.dropout = 0.0
  config.train.batch_size = 64
  config.train.num_steps = 300
  config.train.learning_rate = 2e-3
  config.train.warmup_steps = 50
  config.train.ema_decay = 0.99
  config.train.log_every = 25
  config.train.checkpoint_every = 100
  config.sample.sampler = "ddim"
  config.sample.num_steps = 100
  config.sample.num_samples = 64
  config.sample.trajectory_every = 10
  config.eval.num_examples = 1000
