"""Tiny configs for tests, seconds to compile and train:

  ''          a ~20k-parameter DDPM on 8x8 grayscale images
  'cascade'   4x4 -> 8x8, each stage a ~10k-parameter U-Net
  'cascade3'  4x4 -> 8x8 -> 16x16
  'cascade_cond'  'cascade', every stage conditioned on 2 classes, guided at w = 1, 2

  python main.py --config=tests/tiny_configs.py:cascade --config.data.path=D.npz --workdir=W
"""
from configs import default


def get_config(variant: str = "", data_path: str = ""):
  config = default.get_config()
  config.data.source = "npz"
  config.data.path = data_path
  config.data.image_size = 8
  config.model.base_channels = 8
  config.model.channel_mult = (1, 2)
  config.model.num_res_blocks = 1
  config.model.attention_resolutions = (4,)
  config.model.norm_groups = 4
  config.model.dropout = 0.0
  config.diffusion.num_steps = 50
  config.train.batch_size = 16
  config.train.num_steps = 6
  config.train.learning_rate = 1e-3
  config.train.warmup_steps = 2
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.sample.sampler = "ddim"
  config.sample.num_steps = 5
  config.sample.num_samples = 8
  config.sample.batch_size = 8
  config.sample.trajectory_every = 1
  config.eval.num_examples = 16
  config.eval.batch_size = 8
  if variant:
    make_tiny_cascade(config, {"cascade": (4, 8), "cascade3": (4, 8, 16),
                               "cascade_cond": (4, 8)}[variant])
  if variant == "cascade_cond":
    for stage, weight in zip(config.stages.values(), (1.0, 2.0)):
      stage.model.num_classes = 2
      stage.sample.guidance_scale = weight
    config.sample.trajectory_every = 1
    config.pictures.update(interpolation_pairs=2, interpolation_frames=3, forward_images=2)
  return config


def make_tiny_cascade(config, sizes):
  default.make_cascade(config, sizes)
  for name, size in zip(sorted(config.stages.keys()), sizes):
    stage = config.stages[name]
    stage.model.channel_mult = (1,) if size == 4 else (1, 2)
    stage.model.attention_resolutions = ()
    stage.diffusion.num_steps = 40
    stage.train.num_steps = 4
    stage.train.checkpoint_every = 2
    stage.sample.num_steps = 5
  config.stages.stage2.diffusion.beta_end = 0.01
  config.sample.trajectory_every = 0
