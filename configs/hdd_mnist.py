"""Hierarchical diffusion on MNIST, the published setting: a 14x14 U-Net that pools once
(14 -> 7) sampled from noise, then a 28x28 U-Net whose chain starts from
x = 0.3 up(x_14) + 0.7 z. T = 500 per stage; stage 1 beta linear 1e-4..0.02, stage 2
1e-4..0.01 (its input is not pure noise); each stage half the steps of configs/ddpm_mnist.py,
so the total training equals one DDPM run.

  python main.py --config=configs/hdd_mnist.py --workdir=runs/hdd_mnist
  python main.py --config=configs/hdd_mnist.py:quick --workdir=runs/hdd_mnist_quick \
      --config.data.source=npz --config.data.path=../shared/data/mnist.npz

Data: tfds 'mnist' (downloads); offline from a Keras-style npz as above.
full:  stage 1 4.0M, stage 2 6.5M parameters, 10k steps of 128 each. CPU (2 cores): stage 1
       ~54 img/s (7 h), stage 2 ~11 img/s (32 h); one modern GPU: about an hour in all.
quick: 0.18M + 0.28M parameters, 150 steps of 64 each, DDIM-50 per stage: about 5 minutes
       on 2 CPU cores (a third of it compilation); blurry digit-like strokes.
"""
from configs import ddpm_mnist, default
from configs.ddpm_fashion_mnist import apply_quick


def get_config(variant: str = ""):
  return published_cascade(ddpm_mnist.get_config(), (14, 28), variant)


def published_cascade(config, image_sizes, variant: str):
  """The published two-stage recipe (any number of sizes): T=500 per stage, the first
  stage with beta up to 0.02 from pure noise, later stages beta up to 0.01 from a
  gamma=0.3 mix; each stage trains half (two stages) or 1/n of the DDPM budget."""
  if variant == "quick":
    apply_quick(config)
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; expected '' or 'quick'")
  ddpm_steps = config.train.num_steps
  config.diffusion.num_steps = 500
  config.train.num_steps = ddpm_steps // len(image_sizes)
  config.train.checkpoint_every = min(config.train.checkpoint_every, config.train.num_steps)
  if variant == "quick":
    config.sample.num_steps = 50
  default.make_cascade(config, image_sizes)
  for index, (name, size) in enumerate(zip(sorted(config.stages.keys()), image_sizes)):
    stage = config.stages[name]
    levels = 2 if size <= 16 else 3 if size <= 32 else 4   # 14 -> 7 pools once.
    stage.model.channel_mult = (1, 2, 2, 2)[:levels]
    stage.model.attention_resolutions = (size // 2,)
    if index:
      stage.diffusion.beta_end = 0.01
      stage.sample.handover = "mix"
      stage.sample.gamma = 0.3
  return config
