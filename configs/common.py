"""What the experiment configs share: the variant check, the `quick` recipe (a small
model and a few hundred steps, minutes on a 2-core CPU) and the published cascade recipe.
Every config imports this and `default`; configs never import each other.
"""
from configs import default

VARIANTS = ("", "quick")


def check_variant(variant: str, allowed=VARIANTS) -> None:
  """Refuses a variant the config does not have (`--config=FILE:variant`)."""
  if variant not in allowed:
    raise ValueError(f"unknown variant {variant!r}; expected one of {allowed}")


def mnist_data(config):
  """MNIST from tfds (downloads); offline: --config.data.source=npz --config.data.path=..."""
  config.data.name = "mnist"
  return config


def fashion_mnist_data(config):
  """Fashion-MNIST from the idx files of Debian's dataset-fashion-mnist package."""
  config.data.source = "idx"
  config.data.path = "/usr/share/datasets/fashion-mnist"
  config.data.name = "fashion_mnist"
  config.data.random_flip = True
  return config


def cifar10_recipe(config):
  """CIFAR-10 (tfds) and a recipe of the kind used for it: base width 64, multipliers
  (1,2,4,8), lr 8e-5, gradient accumulation 2, EMA 0.995, mixed precision."""
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


def published_cascade(config, image_sizes, variant: str):
  """The published two-stage recipe (any number of sizes): T=500 per stage, the first
  stage with beta up to 0.02 from pure noise, later stages beta up to 0.01 from a
  gamma=0.3 mix; each stage trains half (two stages) or 1/n of the DDPM budget."""
  check_variant(variant)
  if variant == "quick":
    apply_quick(config)
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
