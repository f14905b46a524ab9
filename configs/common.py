"""What the experiment configs share: the variant check, the `quick` recipe (a small
model and a few hundred steps, minutes on a 2-core CPU) and the published cascade recipe.
Every config imports this and `default`; configs never import each other.
"""
from configs import default

VARIANTS = ("", "quick")
# Configs of labelled data also have class-conditional variants.
LABELLED_VARIANTS = VARIANTS + ("cond", "cond_quick")
# The MNIST, Fashion-MNIST and CIFAR-10 configs also have the wall-clock budget recipe
# (experiments/budget.py), unconditional and class-conditional (experiments/guidance.py).
BUDGET_VARIANTS = LABELLED_VARIANTS + ("budget", "cond_budget")
BUDGET_MINUTES = 30.0


def check_variant(variant: str, allowed=VARIANTS) -> None:
  """Refuses a variant the config does not have (`--config=FILE:variant`)."""
  if variant not in allowed:
    raise ValueError(f"unknown variant {variant!r}; expected one of {allowed}")


def parse_variant(variant: str, allowed=VARIANTS) -> tuple[bool, bool]:
  """(small model, conditional) of a variant: 'cond_quick' is both, '' neither; the budget
  variants ('budget', 'cond_budget', ...) train the quick variant's small model."""
  check_variant(variant, allowed)
  return variant.endswith(("quick", "budget")), variant.startswith("cond")


def budget_training(train, minutes: float = BUDGET_MINUTES) -> None:
  """A model's (or stage's) training under a wall-clock budget on a 2-core CPU: the cosine
  runs over the budget, num_steps only caps it; EMA 0.995 (an average over the last ~200
  steps of a few thousand)."""
  train.update(time_budget_minutes=minutes, num_steps=10_000_000, warmup_steps=100,
               ema_decay=0.995, log_every=100, checkpoint_every=500)


def budget_sampler(sample, num_steps: int) -> None:
  """Stochastic DDIM (eta = 1: DDPM's ancestral noise on a strided chain). An undertrained
  network's errors pile up along an ODE chain, while fresh noise at every step lets the
  chain correct them (Karras et al. 2022, sec. 4): on the 30-minute MNIST stages, DDIM-50
  with eta = 1 scored FID 7.8 where DPM-Solver++(2M), converged at 20 steps, scored 15.9
  (experiments/results/mnist_budget_stages.md)."""
  sample.update(sampler="ddim", eta=1.0, num_steps=num_steps)


def class_conditional(config, num_classes: int = 10, guidance_scale: float = 2.0,
                      label_dropout: float = 0.1):
  """Conditions a single-model config (a cascade: before `default.make_cascade` copies it into every
  stage) on the class label, trained with label dropout p for classifier-free guidance and sampled
  at guidance weight w (Ho & Salimans 2022: p = 0.1-0.2; w trades diversity for fidelity, see
  experiments/guidance.py). DDIM re-derives eps from the clipped x0 (GLIDE's choice): with the
  network's amplified eps kept instead, guided chains leave the data range and class accuracy falls
  as w grows (docs/studies.md, guidance). Samples cycle through the classes, ten of each."""
  config.model.num_classes = num_classes
  config.train.label_dropout = label_dropout
  config.sample.guidance_scale = guidance_scale
  config.sample.clipped_eps = True
  config.sample.num_samples = max(config.sample.num_samples, 10 * num_classes)
  config.sample.batch_size = max(config.sample.batch_size, 10 * num_classes)
  return config


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


def anime_faces_recipe(config):
  """Anime faces (AFD) from an image folder, RGB with random flips, and the published
  budget: 50k steps of 64 for the full-resolution DDPM (a cascade splits them)."""
  config.data.source = "folder"
  config.data.path = "data/anime_faces"
  config.data.name = "anime_faces"
  config.data.channels = 3
  config.data.random_flip = True
  config.train.batch_size = 64
  config.train.num_steps = 50_000
  return config


def cifar10_recipe(config):
  """CIFAR-10 (tfds) and a recipe of the kind used for it: base width 64, multipliers
  (1,2,4,8), lr 8e-5, gradient accumulation 2, EMA 0.995, mixed precision."""
  config.data.name = "cifar10"
  config.data.image_size = 32
  config.data.channels = 3
  config.data.random_flip = True
  config.eval.classifier_recipe = "cifar10"   # the wider judge, trained with flips and shifts
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


def published_cascade(config, image_sizes, variant: str, variants=VARIANTS):
  """The published two-stage recipe (any number of sizes): T=500 per stage, the first
  stage with beta up to 0.02 from pure noise, later stages beta up to 0.01 from a
  gamma=0.3 mix; each stage trains half (two stages) or 1/n of the DDPM budget."""
  quick, conditional = parse_variant(variant, variants)
  if quick:
    apply_quick(config)
  ddpm_steps = config.train.num_steps
  config.diffusion.num_steps = 500
  config.train.num_steps = ddpm_steps // len(image_sizes)
  config.train.checkpoint_every = min(config.train.checkpoint_every, config.train.num_steps)
  if quick:
    config.sample.num_steps = 50
  if conditional:
    class_conditional(config)
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
  if variant.endswith("budget"):
    budget_cascade(config)
  return config


def stage_names(config) -> list:
  """A cascade's stages in order (stage1, stage2, ..., stage10), as `hdd.stages` orders
  them (configs import nothing from the model code)."""
  return sorted(config.stages.keys(), key=lambda name: (len(name), name))


def budget_cascade(config, minutes: float = BUDGET_MINUTES):
  """The cascade under one wall-clock budget: 35% of it for the first stage (at 14x14 it trains ~3x
  more images per second), the rest split evenly between the later stages; stochastic DDIM chains of
  50 steps (`budget_sampler`). The first stage weights its loss by Min-SNR-5 (Hang et al. 2023): at
  30 minutes on MNIST this took FID from 17.8 to 15.9, while in the 28x28 stage it cost 10.7
  (docs/results.md, which stage limits the cascade). Every U-Net has attention only at its lowest
  resolution (7x7 at 14 and 28 px): at 28 px, attention at 14x14 as well cost a quarter of stage 2's
  speed and 2.8 FID at 30 minutes (docs/results.md, ablations). A later stage is handed over by
  `truncate` at t* = 0.8 T - 1 (399 of 500: the best t* of the hand-over sweep, docs/results.md) and
  trained only on the steps its chain visits: its schedule is the published one cut at t* (T = 400,
  the same betas). Later stages are conditional (`conditional_stages`): at 30 minutes on MNIST this
  took FID from 20.9 to 17.2 (docs/results.md, ablations)."""
  config.time_budget_minutes = minutes
  names = stage_names(config)
  for index, name in enumerate(names):
    stage = config.stages[name]
    budget_training(stage.train, 0.0)   # The stages share config.time_budget_minutes.
    budget_sampler(stage.sample, 50)
    stage.model.attention_resolutions = (
        stage.image_size // 2**(len(stage.model.channel_mult) - 1),)
    stage.budget_fraction = 0.65 / (len(names) - 1) if index else (
        0.35 if len(names) > 1 else 1.0)
    if not index:
      stage.train.min_snr_gamma = 5.0
    else:
      diffusion = stage.diffusion
      start_step = int(0.8 * diffusion.num_steps) - 1
      diffusion.beta_end = diffusion.beta_start + (diffusion.beta_end - diffusion.beta_start) * (
          start_step / (diffusion.num_steps - 1))
      diffusion.num_steps = start_step + 1
      stage.sample.update(handover="truncate", start_step=start_step)
  return conditional_stages(config)


def conditional_stages(config):
  """Makes every later stage of a cascade a conditional stage (Cascaded Diffusion Models,
  Ho et al. 2022): it also sees up(x_low), noised by its forward process to a step s
  (s ~ U{0..0.5 (T-1)} in training, s = 0.1 (T-1) at sampling), as input channels. Its
  chain still starts by the stage's hand-over rule."""
  names = stage_names(config)
  for before, name in zip(names, names[1:]):
    config.stages[name].model.low_res_size = config.stages[before].image_size
  return config


def rgb64_ddpm(config, variant: str, num_steps: int = 50_000):
  """A 64x64 RGB DDPM (birds, STL-10, Flowers, butterflies): U-Net 64/(1,2,2,2) with
  attention at 16x16 (8.95M parameters), random flips, `num_steps` steps of 64, DDIM-100
  samples. quick: apply_quick's widths on the same four levels, attention at 8x8."""
  check_variant(variant)
  config.data.image_size = 64
  config.data.channels = 3
  config.data.random_flip = True
  config.model.channel_mult = (1, 2, 2, 2)
  config.model.attention_resolutions = (16,)
  config.train.batch_size = 64
  config.train.num_steps = num_steps
  config.sample.sampler = "ddim"
  config.sample.num_steps = 100
  if variant == "quick":
    apply_quick(config)
    config.model.channel_mult = (1, 2, 2, 2)
    config.model.attention_resolutions = (8,)
  return config


def published_ddpm(config, image_sizes, variant: str):
  """The full-resolution DDPM that `published_cascade(config, image_sizes, variant)` is
  measured against: the U-Net, optimizer and sampler of the cascade's last stage, with
  config.diffusion (T=1000, beta up to 0.02), trained for the cascade's total steps (equal
  epochs) and sampled with as many network evaluations as the whole cascade."""
  cascade = published_cascade(config.copy_and_resolve_references(), image_sizes, variant)
  chain = [cascade.stages[f"stage{index}"] for index in range(1, len(image_sizes) + 1)]
  config.data, config.eval = cascade.data, cascade.eval
  config.model = chain[-1].model
  config.train = chain[-1].train
  config.train.num_steps = sum(stage.train.num_steps for stage in chain)
  config.sample = cascade.sample
  for field in default.CHAIN_FIELDS:
    config.sample[field] = chain[-1].sample[field]
  config.sample.num_steps = sum(stage.sample.num_steps or stage.diffusion.num_steps
                                for stage in chain)
  return config
